//! The controller over HTTP: the agent endpoints of `gantry server` under `/api/v1/agent`, with
//! the box's own token as `Authorization: Bearer`. A small blocking client (ureq): the agent is
//! one thread that waits on a long-poll, and needs no async runtime.
//!
//! An artifact is fetched from the command's `download_path` (the package), with its
//! attestation and manifest beside it at `{download_path}/attestation` and
//! `{download_path}/manifest`. The signed trust list and block list are fetched from
//! `/api/v1/agent/trust-list` and `/api/v1/agent/block-list` (as DSSE envelopes the box
//! verifies with its own trust root).

use std::time::Duration;

use gantry_model::agent::{
    Acknowledge, Acknowledged, AgentCommand, BoxId, CommandBatch, ErrorBody, Register, Registered,
    Report, ReportAccepted,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::controller::{Controller, TransportError};
use crate::verify::Artifact;

/// How long a call other than the long-poll and downloads may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to the long-poll's wait before the client gives up on the answer.
pub const LONG_POLL_GRACE: Duration = Duration::from_secs(10);
/// How long a download may take: a package of the largest size over a slow link.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The largest attestation or manifest read; both are a few kilobytes.
pub const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// A controller at `base` (such as `http://127.0.0.1:7700`).
pub struct HttpController {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl HttpController {
    pub fn new(base: &str, token: &str) -> HttpController {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder().http_status_as_error(false).build(),
        );
        HttpController {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn boxes(&self, box_id: &BoxId, rest: &str) -> String {
        self.url(&format!("/api/v1/agent/boxes/{box_id}/{rest}"))
    }

    fn answer<T: DeserializeOwned>(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, TransportError> {
        let mut response = result.map_err(|e| TransportError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return response
                .body_mut()
                .read_json()
                .map_err(|e| TransportError::Unavailable(format!("an unreadable answer: {e}")));
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message =
            serde_json::from_str::<ErrorBody>(&body).map(|error| error.error).unwrap_or(body);
        let message = format!("{status}: {message}");
        Err(match status {
            401 | 404 => TransportError::Unregistered(message),
            400..=499 => TransportError::Refused(message),
            _ => TransportError::Unavailable(message),
        })
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, TransportError> {
        HttpController::answer(
            self.agent
                .post(url)
                .header("authorization", &format!("Bearer {}", self.token))
                .config()
                .timeout_global(Some(CALL_TIMEOUT))
                .build()
                .send_json(body),
        )
    }

    fn bytes(&self, path: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
        let mut response = self
            .agent
            .get(self.url(path))
            .header("authorization", &format!("Bearer {}", self.token))
            .config()
            .timeout_global(Some(DOWNLOAD_TIMEOUT))
            .build()
            .call()
            .map_err(|e| TransportError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Err(match status {
                401 => TransportError::Unregistered(format!("{status}: {body}")),
                400..=499 => TransportError::Refused(format!("{path}: {status}: {body}")),
                _ => TransportError::Unavailable(format!("{path}: {status}: {body}")),
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| TransportError::Unavailable(format!("{path}: {e}")))
    }
}

impl Controller for HttpController {
    fn register(&mut self, register: &Register) -> Result<Registered, TransportError> {
        self.post(&self.boxes(&register.box_id, "register"), register)
    }

    fn poll(&mut self, box_id: &BoxId, wait: Duration) -> Result<CommandBatch, TransportError> {
        HttpController::answer(
            self.agent
                .get(self.boxes(box_id, "commands"))
                .query("wait", format!("{}s", wait.as_secs()))
                .header("authorization", &format!("Bearer {}", self.token))
                .config()
                .timeout_global(Some(wait + LONG_POLL_GRACE))
                .build()
                .call(),
        )
    }

    fn acknowledge(
        &mut self,
        box_id: &BoxId,
        acknowledge: &Acknowledge,
    ) -> Result<Acknowledged, TransportError> {
        self.post(&self.boxes(box_id, "acknowledge"), acknowledge)
    }

    fn report(
        &mut self,
        box_id: &BoxId,
        report: &Report,
    ) -> Result<ReportAccepted, TransportError> {
        self.post(&self.boxes(box_id, "report"), report)
    }

    fn download(&mut self, command: &AgentCommand) -> Result<Artifact, TransportError> {
        let path = &command.download_path;
        Ok(Artifact {
            package: self.bytes(path, gantry_supply::artifact::MAX_PACKAGE_BYTES)?,
            attestation: self.bytes(&format!("{path}/attestation"), MAX_DOCUMENT_BYTES)?,
            manifest: self.bytes(&format!("{path}/manifest"), MAX_DOCUMENT_BYTES)?,
        })
    }

    fn trust_list(&mut self) -> Result<Vec<u8>, TransportError> {
        self.bytes("/api/v1/agent/trust-list", MAX_DOCUMENT_BYTES)
    }

    fn block_list(&mut self) -> Result<Vec<u8>, TransportError> {
        self.bytes("/api/v1/agent/block-list", MAX_DOCUMENT_BYTES)
    }
}
