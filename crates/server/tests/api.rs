//! The API in process: the role matrix over every route of the served OpenAPI document, the
//! agent exchange, and malformed requests refused with the field at fault.

#[path = "support/organisation.rs"]
mod organisation;
use organisation::example_organisation;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_server::server::{self, Config, Controller};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Whom a request speaks for in the matrix.
const CALLERS: &[&str] = &[
    "anonymous",
    "viewer",
    "developer",
    "approver",
    "senior_approver",
    "operator",
    "admin",
    "agent-own-box",
    "agent-other-box",
];

/// The role matrix: for every operation of the OpenAPI document, the callers allowed through
/// authorization. Everyone else is refused (`401` without a token, `403` with one).
const MATRIX: &[(&str, &[&str])] = &[
    (
        "health",
        &[
            "anonymous",
            "viewer",
            "developer",
            "approver",
            "senior_approver",
            "operator",
            "admin",
            "agent-own-box",
            "agent-other-box",
        ],
    ),
    (
        "openapi",
        &[
            "anonymous",
            "viewer",
            "developer",
            "approver",
            "senior_approver",
            "operator",
            "admin",
            "agent-own-box",
            "agent-other-box",
        ],
    ),
    (
        "metrics",
        &[
            "anonymous",
            "viewer",
            "developer",
            "approver",
            "senior_approver",
            "operator",
            "admin",
            "agent-own-box",
            "agent-other-box",
        ],
    ),
    ("agent_register", &["agent-own-box"]),
    ("agent_commands", &["agent-own-box"]),
    ("agent_acknowledge", &["agent-own-box"]),
    ("agent_report", &["agent-own-box"]),
    // Any agent, for its own service's artifacts (checked by the handler) and the signed lists.
    ("agent_artifact_package", &["agent-own-box", "agent-other-box"]),
    ("agent_artifact_attestation", &["agent-own-box", "agent-other-box"]),
    ("agent_artifact_manifest", &["agent-own-box", "agent-other-box"]),
    ("agent_trust_list", &["agent-own-box", "agent-other-box"]),
    ("agent_block_list", &["agent-own-box", "agent-other-box"]),
    ("get_artifact", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    (
        "list_artifacts",
        &["viewer", "developer", "approver", "senior_approver", "operator", "admin"],
    ),
    ("list_builds", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    ("list_boxes", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    ("get_box", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    (
        "get_organisation",
        &["viewer", "developer", "approver", "senior_approver", "operator", "admin"],
    ),
    (
        "list_pipelines",
        &["viewer", "developer", "approver", "senior_approver", "operator", "admin"],
    ),
    ("get_pipeline", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    ("list_alarms", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    (
        "get_pipeline_alarms",
        &["viewer", "developer", "approver", "senior_approver", "operator", "admin"],
    ),
    ("hold_pipeline", &["developer", "operator"]),
    ("release_pipeline", &["operator"]),
    ("retry_stage", &["developer", "operator"]),
    ("approve_stage", &["approver", "senior_approver"]),
    ("override_blocker", &["operator"]),
    ("roll_back", &["operator"]),
    ("roll_forward", &["operator"]),
    (
        "list_urgent_requests",
        &["viewer", "developer", "approver", "senior_approver", "operator", "admin"],
    ),
    ("request_urgent", &["developer", "operator"]),
    ("approve_urgent", &["senior_approver"]),
    ("end_urgent", &["developer", "operator"]),
    ("list_audit", &["viewer", "developer", "approver", "senior_approver", "operator", "admin"]),
    ("list_tokens", &["admin"]),
    ("issue_token", &["admin"]),
    ("revoke_token", &["admin"]),
];

struct Api {
    _temp: tempfile::TempDir,
    controller: Arc<Controller>,
    _rounds: server::RoundsThread,
    tokens: std::collections::BTreeMap<&'static str, String>,
}

impl Api {
    async fn start() -> Api {
        Api::start_with(None, &[]).await
    }

    /// With the organisation in `organisation` running, and extra people `(caller, grants)`.
    async fn start_with(
        organisation: Option<std::path::PathBuf>,
        people: &[(&'static str, Value)],
    ) -> Api {
        let temp = tempfile::tempdir().unwrap();
        let config = Config::new(temp.path().join("data"), "127.0.0.1:0".parse().unwrap());
        let (controller, opened) = server::open(&config, gantry_model::Timestamp::now()).unwrap();
        let bootstrap = std::fs::read_to_string(opened.bootstrap_token.unwrap()).unwrap();
        let rounds = server::start_rounds(controller.clone(), organisation).unwrap();
        let mut api = Api { _temp: temp, controller, _rounds: rounds, tokens: Default::default() };
        api.tokens.insert("admin", bootstrap.trim().to_string());
        for role in ["viewer", "developer", "approver", "senior_approver", "operator"] {
            let body = json!({"kind": "person", "name": role, "person": format!("{role}@example.com"),
                              "grants": [{"role": role}]});
            let token = api.issue(body).await;
            api.tokens.insert(role, token);
        }
        for (caller, grants) in people {
            let body = json!({"kind": "person", "name": caller, "person": format!("{caller}@example.com"),
                              "grants": grants});
            let token = api.issue(body).await;
            api.tokens.insert(caller, token);
        }
        for (caller, box_id) in [("agent-own-box", "box-1"), ("agent-other-box", "box-2")] {
            let token = api
                .issue(json!({"kind": "agent", "box_id": box_id, "service": "checkout-api"}))
                .await;
            api.tokens.insert(caller, token);
        }
        api
    }

    async fn issue(&self, body: Value) -> String {
        let (status, answer) = self.call("admin", "POST", "/api/v1/tokens", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["token"].as_str().unwrap().to_string()
    }

    async fn call(
        &self,
        caller: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(caller, method, path, body.map(|b| ("application/json", b.to_string()))).await
    }

    async fn raw(
        &self,
        caller: &str,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = self.tokens.get(caller) {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some((content_type, text)) => {
                request.header("content-type", content_type).body(Body::from(text)).unwrap()
            }
            None => request.body(Body::empty()).unwrap(),
        };
        let response =
            gantry_server::api::router(self.controller.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }
}

fn concrete(path: &str) -> String {
    path.replace("{box}", "box-1")
        .replace("{box_id}", "box-1")
        .replace("{token_id}", "t-none")
        .replace("{pipeline}", "no-such-pipeline")
        .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
        .replace("{request}", "urgent-none")
}

#[tokio::test]
async fn every_route_of_the_document_against_every_caller() {
    let api = Api::start().await;
    let (status, document) = api.call("anonymous", "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let mut seen = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            seen.push(id.to_string());
            let allowed = MATRIX
                .iter()
                .find(|(op, _)| *op == id)
                .unwrap_or_else(|| panic!("{id} is served but missing from the role matrix"))
                .1;
            let method = method.to_uppercase();
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            for caller in CALLERS {
                let (status, answer) =
                    api.call(caller, &method, &concrete(path), body.clone()).await;
                if allowed.contains(caller) {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{caller} should pass {method} {path}, got {status}: {answer}"
                    );
                } else {
                    let expected = if *caller == "anonymous" {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(status, expected, "{caller} on {method} {path}: {answer}");
                    assert_eq!(answer["field"], "header.authorization", "{answer}");
                }
            }
        }
    }
    let mut listed: Vec<String> = MATRIX.iter().map(|(op, _)| op.to_string()).collect();
    listed.sort();
    seen.sort();
    assert_eq!(seen, listed, "the matrix lists exactly the document's operations");

    // Every refusal with a token was audited.
    let (_, audit) = api.call("viewer", "GET", "/api/v1/audit?limit=1000", None).await;
    let denied = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["record"]["kind"] == "request_denied")
        .count();
    assert!(denied > 50, "denied requests are audited ({denied})");
}

/// `(method, path, content type and body, expected status, expected field)`.
type Malformed =
    (&'static str, &'static str, Option<(&'static str, &'static str)>, u16, &'static str);

#[tokio::test]
async fn malformed_requests_name_the_field_at_fault() {
    let api = Api::start().await;
    let register = json!({"protocol_version": 1, "box_id": "box-1", "highest_epoch_seen": 0,
                          "target": {"environment": "prod", "region": "eu-west-1"}});
    let (status, answer) = api
        .call("agent-own-box", "POST", "/api/v1/agent/boxes/box-1/register", Some(register))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let cases: &[Malformed] = &[
        (
            "POST",
            "/api/v1/agent/boxes/box-1/register",
            Some((
                "application/json",
                r#"{"protocol_version": 1, "box_id": "box-1", "highest_epoch_seen": -1, "target": {"environment": "prod", "region": "r"}}"#,
            )),
            422,
            "highest_epoch_seen",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/register",
            Some((
                "application/json",
                r#"{"protocol_version": 2, "box_id": "box-1", "highest_epoch_seen": 0, "target": {"environment": "prod", "region": "r"}}"#,
            )),
            422,
            "protocol_version",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/register",
            Some((
                "application/json",
                r#"{"protocol_version": 1, "box_id": "box-9", "highest_epoch_seen": 0, "target": {"environment": "prod", "region": "r"}}"#,
            )),
            422,
            "box_id",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/register",
            Some(("text/plain", "hello")),
            415,
            "header.content-type",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/report",
            Some((
                "application/json",
                r#"{"observed_at": "2026-12-01T10:00:00Z", "highest_epoch_seen": 1, "pipelines": [{"pipeline": "p", "running": null, "health": "great"}]}"#,
            )),
            422,
            "pipelines[0].health",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/report",
            Some((
                "application/json",
                r#"{"observed_at": "yesterday", "highest_epoch_seen": 1, "pipelines": []}"#,
            )),
            422,
            "observed_at",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/report",
            Some((
                "application/json",
                r#"{"observed_at": "2026-12-01T10:00:00Z", "highest_epoch_seen": 1, "pipelines": [{"pipeline": "p", "running": null, "health": "healthy"}, {"pipeline": "p", "running": null, "health": "healthy"}]}"#,
            )),
            422,
            "pipelines[1].pipeline",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/report",
            Some(("application/json", "{not json")),
            422,
            "body",
        ),
        (
            "POST",
            "/api/v1/agent/boxes/box-1/acknowledge",
            Some(("application/json", r#"{"command": "c1", "epoch": 1}"#)),
            422,
            "command",
        ),
        ("GET", "/api/v1/agent/boxes/box-1/commands?wait=forever", None, 400, "query.wait"),
        ("GET", "/api/v1/agent/boxes/box-1/commands?wait=1h", None, 400, "query.wait"),
        ("GET", "/api/v1/agent/artifacts/not-a-digest", None, 400, "path.digest"),
        ("GET", "/api/v1/agent/artifacts/sha256:12ab/manifest", None, 400, "path.digest"),
        (
            "GET",
            "/api/v1/agent/artifacts/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            None,
            404,
            "path.digest",
        ),
        ("GET", "/api/v1/artifacts/sha256:xyz", None, 400, "path.digest"),
        ("GET", "/api/v1/pipelines/no-such-pipeline/artifacts", None, 404, "path.pipeline"),
        ("GET", "/api/v1/audit?limit=5000", None, 400, "query.limit"),
        ("GET", "/api/v1/audit?after=-3", None, 400, "query.after"),
        ("GET", "/api/v1/boxes/box-7", None, 404, "path.box_id"),
        ("DELETE", "/api/v1/tokens/t-none", None, 404, "path.token_id"),
        (
            "POST",
            "/api/v1/tokens",
            Some((
                "application/json",
                r#"{"kind": "person", "name": "x", "person": "x", "grants": [{"role": "root"}]}"#,
            )),
            422,
            "grants[0].role",
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some((
                "application/json",
                r#"{"kind": "agent", "box_id": " ", "service": "checkout-api"}"#,
            )),
            422,
            "box_id",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let caller = if path.starts_with("/api/v1/agent") {
            "agent-own-box"
        } else if path.starts_with("/api/v1/tokens") {
            "admin"
        } else {
            "viewer"
        };
        let body = body.map(|(content_type, text)| (content_type, text.to_string()));
        let (got, answer) = api.raw(caller, method, path, body).await;
        assert_eq!(
            (got.as_u16(), answer["field"].as_str()),
            (*status, Some(*field)),
            "{method} {path}: {answer}"
        );
    }

    // A body over the limit is refused before it is read whole.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(gantry_server::api::MAX_BODY_BYTES + 1));
    let (got, answer) = api
        .raw(
            "agent-own-box",
            "POST",
            "/api/v1/agent/boxes/box-1/report",
            Some(("application/json", huge)),
        )
        .await;
    assert_eq!(
        (got, answer["field"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body")),
        "{answer}"
    );
}

#[tokio::test]
async fn revoked_tokens_stop_working_at_once() {
    let mut api = Api::start().await;
    let (status, answer) = api
        .call("admin", "POST", "/api/v1/tokens", Some(json!({"kind": "person", "name": "eve", "person": "eve", "grants": [{"role": "viewer"}]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.tokens.insert("eve", answer["token"].as_str().unwrap().into());
    assert_eq!(api.call("eve", "GET", "/api/v1/boxes", None).await.0, StatusCode::OK);
    let path = format!("/api/v1/tokens/{}", answer["id"].as_str().unwrap());
    assert_eq!(api.call("admin", "DELETE", &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.call("eve", "GET", "/api/v1/boxes", None).await.0, StatusCode::UNAUTHORIZED);
    let (_, tokens) = api.call("admin", "GET", "/api/v1/tokens", None).await;
    assert!(tokens.to_string().contains("revoked_at"), "{tokens}");
    assert!(!tokens.to_string().contains("gantry_"), "no secret is ever listed: {tokens}");
}

/// Waits (bounded) until `ready` holds of the controller.
async fn until(controller: &Controller, what: &str, ready: impl Fn(&Controller) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready(controller) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn people_act_through_the_engine_within_their_team_and_never_on_their_own_commits() {
    let people = [
        ("payments-developer", json!([{"role": "developer", "team": "payments"}])),
        ("author", json!([{"role": "approver"}])),
    ];
    let organisation = tempfile::tempdir().unwrap();
    let api = Api::start_with(Some(example_organisation(organisation.path())), &people).await;
    until(&api.controller, "the organisation's pipelines", |c| {
        c.pipeline_views().contains_key("checkout-api-code")
    })
    .await;
    let (status, organisation) = api.call("viewer", "GET", "/api/v1/organisation", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(organisation["pipelines"]["checkout-api-code"], "storefront", "{organisation}");
    let payments = organisation["pipelines"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, team)| *team == "payments")
        .map(|(name, _)| name.clone())
        .expect("a payments pipeline");

    // A team grant covers that team's pipelines only.
    let hold = json!({"reason": "investigating"});
    let (status, answer) = api
        .call(
            "payments-developer",
            "POST",
            "/api/v1/pipelines/checkout-api-code/hold",
            Some(hold.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let path = format!("/api/v1/pipelines/{payments}/hold");
    let (status, answer) = api.call("payments-developer", "POST", &path, Some(hold)).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("accepted")), "{answer}");
    let (_, view) = api.call("viewer", "GET", &format!("/api/v1/pipelines/{payments}"), None).await;
    assert_eq!(view["status"]["held"], true, "{view}");

    // An artifact whose commit "author" wrote: they may not approve it; someone else may ask.
    let digest = gantry_model::Digest::of(b"checkout-api build 1");
    api.controller.submit([gantry_engine::Input::ArtifactReady {
        pipeline: "checkout-api-code".into(),
        artifact: gantry_engine::ArtifactReady {
            digest,
            sequence: 1,
            previous: None,
            commits: vec![gantry_engine::Commit {
                id: "c0ffee".into(),
                author: "author@example.com".into(),
                approvers: vec!["approver@example.com".into()],
            }],
            packages: Vec::new(),
            signature_verified: true,
        },
    }]);
    until(&api.controller, "the artifact", |c| {
        c.pipeline_views()["checkout-api-code"].artifacts.iter().any(|a| a.digest == digest)
    })
    .await;
    let approve = json!({"stage": "gamma", "artifact": digest.to_string()});
    let path = "/api/v1/pipelines/checkout-api-code/approve";
    let (status, answer) = api.call("author", "POST", path, Some(approve.clone())).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("artifact")),
        "{answer}"
    );
    assert!(answer["error"].as_str().unwrap().contains("own commit"), "{answer}");
    let (status, answer) = api.call("approver", "POST", path, Some(approve)).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::CONFLICT,
        "the engine decides: {status} {answer}"
    );
    assert!(answer["id"].as_str().unwrap().starts_with("op-"), "{answer}");

    // Every decision, and the refusals, are in the audit log; through the API it says so.
    let (_, audit) = api.call("viewer", "GET", "/api/v1/audit?limit=1000", None).await;
    let text = audit.to_string();
    assert!(
        text.contains("api:payments-developer"),
        "the hold is audited as given through the API"
    );
    assert!(text.contains("may not approve their own commit"), "the refusal is audited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_commit_stops_commands_and_shows_in_health_and_metrics() {
    let api = Api::start().await;
    let page_count: i64 = {
        let store = api.controller.store.lock().unwrap();
        let connection = store.connection();
        let pages = connection.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        // SQLite's own page limit stands in for a full disk: the same SQLITE_FULL error.
        connection.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).unwrap();
        pages
    };
    assert!(page_count > 0);
    // Rounds that write audit records until the database is full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut n = 0;
    while api.controller.store_health.healthy() {
        assert!(std::time::Instant::now() < deadline, "no commit failed");
        n += 1;
        api.controller.submit([gantry_engine::Input::Operator {
            id: format!("fill-{n}"),
            by: "test".into(),
            command: gantry_engine::OperatorCommand::Release {
                pipeline: "x".repeat(2000),
                stage: None,
            },
        }]);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, health) = api.call("anonymous", "GET", "/api/v1/health", None).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["store_error"].as_str().unwrap().contains("full"), "{health}");
    let (_, metrics) = api.call("anonymous", "GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("gantry_store_healthy 0"), "{metrics}");
    assert!(metrics.contains("gantry_store_commit_failures_total"), "{metrics}");

    // Room again: the next round commits and the controller is healthy.
    {
        let store = api.controller.store.lock().unwrap();
        store.connection().query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(())).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !api.controller.store_health.healthy() {
        assert!(std::time::Instant::now() < deadline, "never healthy again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, health) = api.call("anonymous", "GET", "/api/v1/health", None).await;
    assert_eq!(health["status"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn urgent_mode_needs_senior_approvers_other_than_the_requester_and_the_authors() {
    // The example organisation's urgent policy: two of ana.ribeiro, david.okafor,
    // hiroshi.tanaka and priya.raman.
    let senior = json!([{"role": "senior_approver"}]);
    let people = [
        ("hiroshi.tanaka", json!([{"role": "developer"}, {"role": "senior_approver"}])),
        ("ana.ribeiro", senior.clone()),
        ("david.okafor", senior.clone()),
        ("priya.raman", senior),
    ];
    let organisation = tempfile::tempdir().unwrap();
    let api = Api::start_with(Some(example_organisation(organisation.path())), &people).await;
    until(&api.controller, "the organisation's pipelines", |c| {
        c.pipeline_views().contains_key("checkout-api-code")
    })
    .await;
    let digest = gantry_model::Digest::of(b"checkout-api urgent fix");
    api.controller.submit([gantry_engine::Input::ArtifactReady {
        pipeline: "checkout-api-code".into(),
        artifact: gantry_engine::ArtifactReady {
            digest,
            sequence: 1,
            previous: None,
            commits: vec![gantry_engine::Commit {
                id: "f1x".into(),
                author: "ana.ribeiro@example.com".into(),
                approvers: vec!["bo@example.com".into(), "cy@example.com".into()],
            }],
            packages: Vec::new(),
            signature_verified: true,
        },
    }]);
    until(&api.controller, "the artifact", |c| {
        c.pipeline_views()["checkout-api-code"].artifacts.iter().any(|a| a.digest == digest)
    })
    .await;
    let base = "/api/v1/pipelines/checkout-api-code";
    let ask = json!({"artifact": digest.to_string(), "reason": "card payments fail in eu-west-1"});
    let (status, request) =
        api.call("hiroshi.tanaka", "POST", &format!("{base}/urgent"), Some(ask.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    assert_eq!(
        (request["status"].as_str(), request["required"].as_u64()),
        (Some("waiting"), Some(2))
    );
    let (status, _) =
        api.call("hiroshi.tanaka", "POST", &format!("{base}/urgent"), Some(ask)).await;
    assert_eq!(status, StatusCode::CONFLICT, "one request per artifact");
    let approve = format!("{base}/urgent/{}/approve", request["id"].as_str().unwrap());
    // (caller, status, what the answer says)
    let steps: &[(&str, StatusCode, &str)] = &[
        ("hiroshi.tanaka", StatusCode::FORBIDDEN, "may not approve their own request"),
        ("ana.ribeiro", StatusCode::FORBIDDEN, "may not approve their own commit"),
        (
            "senior_approver",
            StatusCode::FORBIDDEN,
            "is not one of checkout-api-code's urgent approvers",
        ),
        ("david.okafor", StatusCode::OK, "\"waiting\""),
        ("david.okafor", StatusCode::CONFLICT, "has approved this request already"),
        ("priya.raman", StatusCode::OK, "\"accepted\""),
    ];
    for (caller, expected, says) in steps {
        let (status, answer) = api.call(caller, "POST", &approve, None).await;
        assert_eq!(status, *expected, "{caller}: {answer}");
        assert!(answer.to_string().contains(says), "{caller}: {says:?} in {answer}");
    }
    let (_, view) = api.call("viewer", "GET", base, None).await;
    assert_eq!(view["status"]["urgent"]["artifact"], digest.to_string(), "{view}");
    assert_eq!(view["status"]["urgent"]["approvers"], json!(["david.okafor", "priya.raman"]));
    let (status, answer) =
        api.call("hiroshi.tanaka", "POST", &format!("{base}/urgent/end"), None).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("accepted")), "{answer}");

    // Roll forward names a newer artifact for a failed stage; nothing failed here, so it is
    // refused with the reason, and the request is audited.
    let roll =
        |stage: &str| json!({"stage": stage, "artifact": digest.to_string(), "reason": "fix"});
    let (status, answer) =
        api.call("operator", "POST", &format!("{base}/roll-forward"), Some(roll("nowhere"))).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("stage"))
    );
    let (status, answer) =
        api.call("operator", "POST", &format!("{base}/roll-forward"), Some(roll("gamma"))).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::CONFLICT, Some("rejected")),
        "{answer}"
    );
    assert!(
        answer["detail"].as_str().unwrap().contains("no failed artifact to replace"),
        "{answer}"
    );
    let (_, audit) = api.call("viewer", "GET", "/api/v1/audit?limit=1000", None).await;
    let text = audit.to_string();
    for kind in ["urgent_requested", "urgent_approved", "roll_forward_requested"] {
        assert!(text.contains(kind), "{kind} is audited");
    }
}
