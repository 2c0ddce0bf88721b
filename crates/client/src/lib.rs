//! A blocking client for the controller's HTTP API (`/api/v1`, described by the OpenAPI
//! document the server serves), for the operator's CLI, the demo and tests.
//!
//! [`Client`] makes one request at a time and turns every refusal into an [`Error`] a person can
//! act on: the controller unreachable, the token refused (401) or lacking a permission (403,
//! with the permission the route needs as the served document names it), a request field at
//! fault (4xx), the controller failing (5xx). The answers are read into [`views`]; a pipeline
//! action answers a [`views::Decision`] — accepted, rejected by the engine with its reason, or
//! queued for a later round. [`config`] resolves the server URL and token from flags, the
//! environment and the config file.

pub mod config;
pub mod views;

use std::time::Duration;

use gantry_model::agent::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use config::Settings;
use views::{
    BoxDetail, BoxList, Decision, Health, PipelineList, PipelineView, UrgentRequestList,
    UrgentRequestView,
};

/// How long one request may take, connecting included. A pipeline action waits up to five
/// seconds on the server for the round that decides it; this leaves room for a slow network
/// without hanging a person's terminal.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take: a controller that does not accept in this time is reported as
/// unreachable rather than waited for.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read: a pipeline list of a thousand pipelines is a few megabytes; more is
/// not the controller.
pub const MAX_ANSWER_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the controller at {server}: {reason}. Is `gantry server` running there? \
         Set the address with --server, GANTRY_SERVER or `server` in the config file"
    )]
    Unreachable { server: String, reason: String },
    #[error(
        "the controller refused the token: {error}. Pass a valid one with --token, GANTRY_TOKEN \
         or `token` in the config file"
    )]
    Unauthenticated { error: String },
    #[error("{error}{}", needs.as_ref().map(|p| format!(" (this needs the `{p}` permission)")).unwrap_or_default())]
    Forbidden {
        error: String,
        /// The permission the route needs, as the served OpenAPI document names it.
        needs: Option<String>,
    },
    #[error("the controller refused the request ({status}){}: {error}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    Refused { status: u16, field: Option<String>, error: String },
    #[error("the controller failed ({status}): {error}")]
    Server { status: u16, error: String },
    #[error("the controller's answer to {what} is not what this client reads: {reason}")]
    Answer { what: String, reason: String },
    #[error("{0}")]
    Config(#[from] config::Error),
}

impl Error {
    /// The permission a 403 named, if any.
    pub fn needed_permission(&self) -> Option<&str> {
        match self {
            Error::Forbidden { needs, .. } => needs.as_deref(),
            _ => None,
        }
    }
}

/// The controller at one URL, with one token.
pub struct Client {
    server: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A request's answer before it is read: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        Client {
            server: settings.server.trim_end_matches('/').to_string(),
            token: settings.token.clone(),
            agent,
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `GET /api/v1/health` (needs no token).
    pub fn health(&self) -> Result<Health, Error> {
        self.get("/api/v1/health")
    }

    /// `GET /api/v1/pipelines`: every pipeline the token may read.
    pub fn pipelines(&self) -> Result<PipelineList, Error> {
        self.get("/api/v1/pipelines")
    }

    /// `GET /api/v1/pipelines/{pipeline}`.
    pub fn pipeline(&self, pipeline: &str) -> Result<PipelineView, Error> {
        self.get(&format!("/api/v1/pipelines/{}", segment(pipeline)))
    }

    /// `GET /api/v1/boxes`.
    pub fn boxes(&self) -> Result<BoxList, Error> {
        self.get("/api/v1/boxes")
    }

    /// `GET /api/v1/boxes/{box_id}`.
    pub fn box_detail(&self, box_id: &str) -> Result<BoxDetail, Error> {
        self.get(&format!("/api/v1/boxes/{}", segment(box_id)))
    }

    /// `GET /api/v1/audit`: records numbered above `after`, at most `limit`.
    pub fn audit(&self, after: u64, limit: u32) -> Result<views::AuditPage, Error> {
        self.get(&format!("/api/v1/audit?after={after}&limit={limit}"))
    }

    /// `GET /api/v1/pipelines/{pipeline}/urgent`: urgent requests waiting for approval.
    pub fn urgent_requests(&self, pipeline: &str) -> Result<UrgentRequestList, Error> {
        self.get(&format!("/api/v1/pipelines/{}/urgent", segment(pipeline)))
    }

    /// `POST /api/v1/pipelines/{pipeline}/urgent`: asks for urgent mode for an artifact.
    pub fn request_urgent(
        &self,
        pipeline: &str,
        artifact: &gantry_model::Digest,
        reason: &str,
    ) -> Result<UrgentRequestView, Error> {
        let path = format!("/api/v1/pipelines/{}/urgent", segment(pipeline));
        let body = json!({"artifact": artifact.to_string(), "reason": reason});
        let answer = self.send("POST", &path, Some(&body))?;
        if answer.status == 201 {
            return read(&path, &answer.body);
        }
        Err(self.refusal("POST", &path, answer))
    }

    /// `POST /api/v1/pipelines/{pipeline}/urgent/{request}/approve`: a senior approval; the
    /// request as it stands after it (with the engine's verdict once approvals sufficed).
    pub fn approve_urgent(
        &self,
        pipeline: &str,
        request: &str,
    ) -> Result<UrgentRequestView, Error> {
        let path =
            format!("/api/v1/pipelines/{}/urgent/{}/approve", segment(pipeline), segment(request));
        let answer = self.send::<Value>("POST", &path, None)?;
        if matches!(answer.status, 200 | 202 | 409) {
            return read(&path, &answer.body);
        }
        Err(self.refusal("POST", &path, answer))
    }

    /// A pipeline action (`hold`, `release`, `retry`, `approve`, `override`, `rollback`,
    /// `roll-forward`, `urgent/end`) with its body; the engine's verdict, whichever it is.
    pub fn act(&self, pipeline: &str, action: &Action) -> Result<Decision, Error> {
        let path = format!("/api/v1/pipelines/{}/{}", segment(pipeline), action.route());
        let answer = self.send("POST", &path, Some(&action.body()))?;
        // 200 accepted, 202 queued, 409 rejected by the engine: all three are decisions.
        if matches!(answer.status, 200 | 202 | 409) {
            return read(&path, &answer.body);
        }
        Err(self.refusal("POST", &path, answer))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let answer = self.send::<Value>("GET", path, None)?;
        if answer.status == 200 {
            return read(path, &answer.body);
        }
        Err(self.refusal("GET", path, answer))
    }

    fn send<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.server);
        let authorization = self.token.as_ref().map(|token| format!("Bearer {token}"));
        let result = match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                request.call()
            }
            _ => {
                let mut request = self.agent.post(&url);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                match body {
                    Some(body) => request.send_json(body),
                    None => request.send_empty(),
                }
            }
        };
        let response = result.map_err(|error| Error::Unreachable {
            server: self.server.clone(),
            reason: error.to_string(),
        })?;
        let status = response.status().as_u16();
        let body =
            response.into_body().with_config().limit(MAX_ANSWER_BYTES).read_to_vec().map_err(
                |error| Error::Unreachable {
                    server: self.server.clone(),
                    reason: format!("the answer to {method} {path} broke off: {error}"),
                },
            )?;
        Ok(Answer { status, body })
    }

    /// The error for an answer that is not a success.
    fn refusal(&self, method: &str, path: &str, answer: Answer) -> Error {
        let body: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_else(|_| ErrorBody {
            error: String::from_utf8_lossy(&answer.body).trim().to_string(),
            field: None,
        });
        match answer.status {
            401 => Error::Unauthenticated { error: body.error },
            403 => Error::Forbidden {
                needs: (body.field.as_deref() == Some("header.authorization"))
                    .then(|| self.permission_of(method, path))
                    .flatten(),
                // A refusal of the request's content (approving one's own commit) names its
                // field; keep it.
                error: match body.field {
                    Some(field) if field != "header.authorization" => {
                        format!("{} (field `{field}`)", body.error)
                    }
                    _ => body.error,
                },
            },
            status @ 400..=499 => Error::Refused { status, field: body.field, error: body.error },
            status => Error::Server { status, error: body.error },
        }
    }

    /// The permission the served OpenAPI document gives the route `method path`.
    fn permission_of(&self, method: &str, path: &str) -> Option<String> {
        let document: Value = self.get("/api/v1/openapi.json").ok()?;
        let path = path.split('?').next().unwrap_or(path);
        let (_, operations) =
            document["paths"].as_object()?.iter().find(|(template, _)| matches(template, path))?;
        operations[method.to_lowercase()]["x-gantry-permission"].as_str().map(str::to_string)
    }
}

/// Whether the concrete `path` is an instance of the route `template` (`{name}` matches one
/// segment).
fn matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// A path segment, percent-encoded so a name cannot reach another route.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn read<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|error| Error::Answer { what: what.to_string(), reason: error.to_string() })
}

/// What to roll back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackScope {
    Target(gantry_model::Target),
    Stage(String),
    /// Every target running this artifact or anything built on it.
    Everywhere(gantry_model::Digest),
}

/// A pipeline action, as the API's request bodies carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Hold {
        stage: Option<String>,
        reason: String,
    },
    Release {
        stage: Option<String>,
    },
    Retry {
        stage: String,
    },
    Approve {
        stage: String,
        artifact: gantry_model::Digest,
    },
    Override {
        /// The blocker kind, as the API names it (`team_alarm`, `time_window`, ...).
        blocker: String,
        stage: Option<String>,
        region: Option<String>,
        reason: String,
        expires_at: gantry_model::Timestamp,
    },
    Rollback {
        scope: RollbackScope,
        reason: String,
    },
    /// A newer artifact to replace one that failed in `stage`, through every gate.
    RollForward {
        stage: String,
        artifact: gantry_model::Digest,
        reason: String,
    },
    EndUrgent,
}

impl Action {
    /// The last segment of the action's route.
    pub fn route(&self) -> &'static str {
        match self {
            Action::Hold { .. } => "hold",
            Action::Release { .. } => "release",
            Action::Retry { .. } => "retry",
            Action::Approve { .. } => "approve",
            Action::Override { .. } => "override",
            Action::Rollback { .. } => "rollback",
            Action::RollForward { .. } => "roll-forward",
            Action::EndUrgent => "urgent/end",
        }
    }

    /// The request body. Absent options are left out, as the API's schemas make them optional.
    pub fn body(&self) -> Value {
        let mut body = match self {
            Action::Hold { stage, reason } => json!({"stage": stage, "reason": reason}),
            Action::Release { stage } => json!({"stage": stage}),
            Action::Retry { stage } => json!({"stage": stage}),
            Action::Approve { stage, artifact } => {
                json!({"stage": stage, "artifact": artifact.to_string()})
            }
            Action::Override { blocker, stage, region, reason, expires_at } => json!({
                "blocker": blocker, "stage": stage, "region": region, "reason": reason,
                "expires_at": expires_at.to_string(),
            }),
            Action::Rollback { scope, reason } => match scope {
                RollbackScope::Target(target) => {
                    json!({"scope": "target", "target": target, "reason": reason})
                }
                RollbackScope::Stage(stage) => {
                    json!({"scope": "stage", "stage": stage, "reason": reason})
                }
                RollbackScope::Everywhere(artifact) => json!({
                    "scope": "everywhere", "artifact": artifact.to_string(), "reason": reason,
                }),
            },
            Action::RollForward { stage, artifact, reason } => {
                json!({"stage": stage, "artifact": artifact.to_string(), "reason": reason})
            }
            Action::EndUrgent => json!({}),
        };
        if let Some(fields) = body.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_match_one_segment_per_parameter() {
        let check = |template: &str, path: &str, expected: bool| {
            assert_eq!(matches(template, path), expected, "{template} vs {path}");
        };
        check("/api/v1/pipelines/{pipeline}/hold", "/api/v1/pipelines/web/hold", true);
        check("/api/v1/pipelines/{pipeline}", "/api/v1/pipelines/web/hold", false);
        check("/api/v1/pipelines/{pipeline}/hold", "/api/v1/pipelines//hold", false);
        check("/api/v1/pipelines", "/api/v1/pipelines", true);
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(segment("checkout-api_code.v2"), "checkout-api_code.v2");
        assert_eq!(segment("../tokens"), "..%2Ftokens");
        assert_eq!(segment("a b?c"), "a%20b%3Fc");
    }

    #[test]
    fn bodies_leave_out_what_is_not_given() {
        let check = |action: Action, expected: Value| assert_eq!(action.body(), expected);
        check(
            Action::Hold { stage: None, reason: "incident 42".into() },
            json!({"reason": "incident 42"}),
        );
        check(Action::Release { stage: Some("gamma".into()) }, json!({"stage": "gamma"}));
        check(
            Action::Rollback {
                scope: RollbackScope::Stage("wave-1".into()),
                reason: "errors".into(),
            },
            json!({"scope": "stage", "stage": "wave-1", "reason": "errors"}),
        );
    }
}
