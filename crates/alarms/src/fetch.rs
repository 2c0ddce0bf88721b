//! Bounded HTTP GETs for the edge: the scraper, canaries and the Prometheus source all fetch
//! through here, so every request has a deadline and every body a size limit.

use std::time::{Duration, Instant};

use crate::Error;

/// A request that takes longer than this fails: a scrape or probe that hangs must become a
/// missing data point, not a stuck evaluation. Prometheus's default scrape timeout is 10 s too.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body read. Prometheus has no default limit; 32 MiB holds the largest
/// expositions seen from real exporters many times over and bounds memory per request.
pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Redirects followed; a metrics endpoint or health check has no reason for more.
pub const MAX_REDIRECTS: u32 = 3;

/// An HTTP response as the edge needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// An HTTP client with the deadline and limits above.
#[derive(Clone, Debug)]
pub struct Client {
    agent: ureq::Agent,
    max_body_bytes: u64,
}

impl Client {
    pub fn new(timeout: Duration, max_body_bytes: u64) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .user_agent("gantry-alarms")
            .build()
            .new_agent();
        Client { agent, max_body_bytes }
    }

    /// GETs `url` with `query` parameters. Any status is returned; transport failures, timeouts
    /// and oversized bodies are errors naming the URL.
    pub fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<Fetched, Error> {
        let started = Instant::now();
        let fail = |reason: String| Error::Fetch { url: url.to_string(), reason };
        let mut request = self.agent.get(url);
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let mut response = request.call().map_err(|error| fail(error.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_body_bytes)
            .read_to_string()
            .map_err(|error| fail(format!("reading the body: {error}")))?;
        Ok(Fetched { status, body, elapsed: started.elapsed() })
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new(DEFAULT_TIMEOUT, MAX_BODY_BYTES)
    }
}
