//! The built-in load balancer, the embedded default: an HTTP front end that forwards each request
//! to a healthy registered box (round robin), its own health checks, per-box request metrics and
//! an event log of every register, deregister and health change; an admin API for agents in
//! other processes ([`BuiltInClient`]).
//!
//! ```text
//! front end   ANY  /...                      forwarded to a healthy box; 503 when there is none
//! admin       POST /backends                 {"name", "address"}: register
//!             DELETE /backends/{name}?drain_ms=N   deregister, answering once drained
//!             GET  /backends                 the pool with health and counters
//!             GET  /events                   the event log
//!             GET  /metrics                  per-box requests, faults, latency (Prometheus text)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::{any, delete, get, post};
use gantry_model::Timestamp;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::balancer::{Backend, Event, EventKind, LoadBalancer};
use crate::health::{HealthCounter, HealthProbe};

/// Events kept in the log; older ones are dropped (a demo's whole story is a few thousand).
pub const MAX_EVENTS: usize = 100_000;
/// Boxes one balancer takes; a target behind one balancer is at most a few hundred boxes.
pub const MAX_BACKENDS: usize = 1024;
/// The largest response forwarded; the sample service answers a few bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How often a drain checks whether the box's requests have finished.
const DRAIN_CHECK: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counters {
    requests: u64,
    faults: u64,
    latency_seconds_sum: f64,
}

struct Member {
    address: SocketAddr,
    health: HealthCounter,
    /// Deregistered and draining: takes no new requests whatever its health.
    draining: bool,
    in_flight: u64,
}

#[derive(Default)]
struct Pool {
    members: BTreeMap<String, Member>,
    counters: BTreeMap<String, Counters>,
    events: VecDeque<Event>,
    next: usize,
}

impl Pool {
    fn log(&mut self, backend: &str, kind: EventKind) {
        self.events.push_back(Event { at: Timestamp::now(), backend: backend.to_string(), kind });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    fn pick(&mut self) -> Option<(String, SocketAddr)> {
        let healthy: Vec<(&String, &Member)> =
            self.members.iter().filter(|(_, m)| m.health.healthy && !m.draining).collect();
        if healthy.is_empty() {
            return None;
        }
        let (name, member) = healthy[self.next % healthy.len()];
        let chosen = (name.clone(), member.address);
        self.next = self.next.wrapping_add(1);
        Some(chosen)
    }
}

/// One box in the pool, as `GET /backends` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: SocketAddr,
    pub healthy: bool,
    pub in_flight: u64,
    pub requests: u64,
    pub faults: u64,
}

#[derive(Clone)]
struct Shared {
    pool: Arc<Mutex<Pool>>,
    probe: HealthProbe,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().expect("pool lock not poisoned")
    }

    fn register(&self, backend: &Backend) -> Result<(), Error> {
        let mut pool = self.lock();
        if !pool.members.contains_key(&backend.name) && pool.members.len() >= MAX_BACKENDS {
            return Err(Error::Balancer(format!("the pool already holds {MAX_BACKENDS} boxes")));
        }
        if pool.members.contains_key(&backend.name) {
            return Ok(());
        }
        pool.members.insert(
            backend.name.clone(),
            Member {
                address: backend.address,
                health: HealthCounter::default(),
                draining: false,
                in_flight: 0,
            },
        );
        pool.log(&backend.name, EventKind::Registered);
        Ok(())
    }

    /// Marks the box out of rotation at once, then waits for its requests to finish.
    fn start_deregister(&self, name: &str) -> bool {
        let mut pool = self.lock();
        let Some(member) = pool.members.get_mut(name) else { return false };
        if member.draining {
            return true;
        }
        member.draining = true;
        pool.log(name, EventKind::Deregistered);
        true
    }

    fn in_flight(&self, name: &str) -> u64 {
        self.lock().members.get(name).map(|m| m.in_flight).unwrap_or(0)
    }

    fn remove(&self, name: &str) {
        self.lock().members.remove(name);
    }

    fn status(&self) -> Vec<BackendStatus> {
        let pool = self.lock();
        pool.members
            .iter()
            .map(|(name, member)| {
                let counters = pool.counters.get(name).cloned().unwrap_or_default();
                BackendStatus {
                    name: name.clone(),
                    address: member.address,
                    healthy: member.health.healthy && !member.draining,
                    in_flight: member.in_flight,
                    requests: counters.requests,
                    faults: counters.faults,
                }
            })
            .collect()
    }

    fn metrics(&self) -> String {
        use prometheus_client::encoding::text::encode;
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        type Labels = Vec<(String, String)>;
        let requests = Family::<Labels, Counter>::default();
        let faults = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Counter<f64>>::default();
        let healthy = Family::<Labels, Gauge>::default();
        {
            let pool = self.lock();
            for (name, counters) in &pool.counters {
                let labels = vec![("backend".to_string(), name.clone())];
                requests.get_or_create(&labels).inc_by(counters.requests);
                faults.get_or_create(&labels).inc_by(counters.faults);
                latency.get_or_create(&labels).inc_by(counters.latency_seconds_sum);
            }
            for (name, member) in &pool.members {
                let labels = vec![("backend".to_string(), name.clone())];
                let takes_traffic = member.health.healthy && !member.draining;
                healthy.get_or_create(&labels).set(i64::from(takes_traffic));
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("gantry_lb_requests", "Requests forwarded to the box", requests);
        registry.register(
            "gantry_lb_faults",
            "Requests the box answered 5xx or not at all",
            faults,
        );
        registry.register(
            "gantry_lb_latency_seconds",
            "Total time the box took to answer forwarded requests",
            latency,
        );
        registry.register("gantry_lb_healthy", "1 when the box takes traffic", healthy);
        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

/// A running built-in balancer. Dropping it stops it.
pub struct BuiltInLoadBalancer {
    shared: Shared,
    frontend: SocketAddr,
    admin: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BuiltInLoadBalancer {
    /// Starts the front end and the admin API (port 0 picks free ports) and the health checks.
    pub fn start(
        frontend: SocketAddr,
        admin: SocketAddr,
        probe: HealthProbe,
    ) -> Result<BuiltInLoadBalancer, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Balancer(format!("cannot start its runtime: {e}")))?;
        let shared = Shared { pool: Arc::default(), probe };
        let (frontend_listener, admin_listener) = runtime
            .block_on(async {
                let frontend = tokio::net::TcpListener::bind(frontend).await?;
                let admin = tokio::net::TcpListener::bind(admin).await?;
                Ok::<_, std::io::Error>((frontend, admin))
            })
            .map_err(|e| Error::Balancer(format!("cannot listen: {e}")))?;
        let frontend = frontend_listener.local_addr().expect("bound");
        let admin = admin_listener.local_addr().expect("bound");
        let front_router = Router::new().fallback(any(forward)).with_state(shared.clone());
        let admin_router = Router::new()
            .route("/backends", post(admin_register).get(admin_status))
            .route("/backends/{name}", delete(admin_deregister))
            .route("/events", get(admin_events))
            .route("/metrics", get(admin_metrics))
            .with_state(shared.clone());
        runtime.spawn(async move { axum::serve(frontend_listener, front_router).await });
        runtime.spawn(async move { axum::serve(admin_listener, admin_router).await });
        runtime.spawn(health_checks(shared.clone()));
        Ok(BuiltInLoadBalancer { shared, frontend, admin, runtime: Some(runtime) })
    }

    /// Where clients send requests.
    pub fn frontend(&self) -> SocketAddr {
        self.frontend
    }

    /// The admin API, for [`BuiltInClient`].
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Every register, deregister and health change so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.iter().cloned().collect()
    }

    pub fn status(&self) -> Vec<BackendStatus> {
        self.shared.status()
    }

    /// Per-box metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        self.shared.metrics()
    }
}

impl Drop for BuiltInLoadBalancer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl LoadBalancer for BuiltInLoadBalancer {
    fn register(&mut self, backend: &Backend) -> Result<(), Error> {
        self.shared.register(backend)
    }

    fn deregister(&mut self, name: &str, drain: Duration) -> Result<(), Error> {
        if !self.shared.start_deregister(name) {
            return Ok(());
        }
        let until = Instant::now() + drain;
        while self.shared.in_flight(name) > 0 && Instant::now() < until {
            std::thread::sleep(DRAIN_CHECK);
        }
        self.shared.remove(name);
        Ok(())
    }

    fn healthy(&mut self) -> Result<Vec<String>, Error> {
        Ok(self.shared.status().into_iter().filter(|b| b.healthy).map(|b| b.name).collect())
    }
}

async fn forward(State(shared): State<Shared>, request: Request<Body>) -> Response<Body> {
    let Some((name, address)) = shared.lock().pick() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no healthy box behind this load balancer\n");
    };
    if let Some(member) = shared.lock().members.get_mut(&name) {
        member.in_flight += 1;
    }
    let started = Instant::now();
    let result = send(address, request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut pool = shared.lock();
    if let Some(member) = pool.members.get_mut(&name) {
        member.in_flight -= 1;
    }
    let fault = !matches!(&result, Ok(response) if !response.status().is_server_error());
    let counters = pool.counters.entry(name).or_default();
    counters.requests += 1;
    counters.faults += u64::from(fault);
    counters.latency_seconds_sum += elapsed;
    drop(pool);
    result.unwrap_or_else(|error| text(StatusCode::BAD_GATEWAY, &format!("{error}\n")))
}

/// Sends one request to `address` over a fresh connection and reads the whole answer.
async fn send(address: SocketAddr, request: Request<Body>) -> Result<Response<Body>, String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("the box at {address} refused the connection: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("the box at {address}: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the box at {address} did not answer: {e}"))?;
    let (parts, body) = response.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| format!("the box at {address} sent a broken body: {e}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// Probes every member each interval and logs health changes.
async fn health_checks(shared: Shared) {
    let client_timeout = shared.probe.timeout;
    loop {
        let members: Vec<(String, SocketAddr)> =
            shared.lock().members.iter().map(|(n, m)| (n.clone(), m.address)).collect();
        for (name, address) in members {
            let probe_address =
                SocketAddr::new(address.ip(), probe_port(&shared.probe, address.port()));
            let ok = tokio::time::timeout(client_timeout, probe(probe_address, &shared.probe.path))
                .await
                .unwrap_or(false);
            let mut pool = shared.lock();
            let probe = shared.probe.clone();
            let Some(member) = pool.members.get_mut(&name) else { continue };
            if member.draining {
                continue;
            }
            if let Some(verdict) = member.health.record(ok, &probe) {
                pool.log(&name, if verdict { EventKind::Healthy } else { EventKind::Unhealthy });
            }
        }
        tokio::time::sleep(shared.probe.interval).await;
    }
}

async fn probe(address: SocketAddr, path: &str) -> bool {
    let request = Request::get(path).header("host", address.to_string()).body(Body::empty());
    let Ok(request) = request else { return false };
    matches!(send(address, request).await, Ok(response) if response.status().is_success())
}

/// The probe's port, or the box's serving port when the probe names port 0.
fn probe_port(probe: &HealthProbe, serving: u16) -> u16 {
    if probe.port == 0 { serving } else { probe.port }
}

async fn admin_register(
    State(shared): State<Shared>,
    axum::Json(backend): axum::Json<Backend>,
) -> Response<Body> {
    match shared.register(&backend) {
        Ok(()) => text(StatusCode::OK, "registered\n"),
        Err(error) => text(StatusCode::CONFLICT, &format!("{error}\n")),
    }
}

#[derive(Deserialize)]
struct DrainQuery {
    #[serde(default)]
    drain_ms: u64,
}

async fn admin_deregister(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<DrainQuery>,
) -> Response<Body> {
    if shared.start_deregister(&name) {
        let until = Instant::now() + Duration::from_millis(query.drain_ms);
        while shared.in_flight(&name) > 0 && Instant::now() < until {
            tokio::time::sleep(DRAIN_CHECK).await;
        }
        shared.remove(&name);
    }
    text(StatusCode::OK, "deregistered\n")
}

async fn admin_status(State(shared): State<Shared>) -> axum::Json<Vec<BackendStatus>> {
    axum::Json(shared.status())
}

async fn admin_events(State(shared): State<Shared>) -> axum::Json<Vec<Event>> {
    axum::Json(shared.lock().events.iter().cloned().collect())
}

async fn admin_metrics(State(shared): State<Shared>) -> String {
    shared.metrics()
}

/// The built-in balancer's admin API from another process (an agent).
pub struct BuiltInClient {
    base: String,
    agent: ureq::Agent,
}

/// How long an admin call may take beyond its drain.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

impl BuiltInClient {
    pub fn new(admin: SocketAddr) -> BuiltInClient {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder().http_status_as_error(false).build(),
        );
        BuiltInClient { base: format!("http://{admin}"), agent }
    }

    fn check(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(), Error> {
        let mut response =
            response.map_err(|e| Error::Balancer(format!("the load balancer: {e}")))?;
        if response.status().is_success() {
            return Ok(());
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Err(Error::Balancer(format!("the load balancer answered {}: {body}", response.status())))
    }

    /// The balancer's event log.
    pub fn events(&mut self) -> Result<Vec<Event>, Error> {
        let mut response = self
            .agent
            .get(format!("{}/events", self.base))
            .config()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .build()
            .call()
            .map_err(|e| Error::Balancer(format!("the load balancer: {e}")))?;
        response.body_mut().read_json().map_err(|e| Error::Balancer(e.to_string()))
    }
}

impl LoadBalancer for BuiltInClient {
    fn register(&mut self, backend: &Backend) -> Result<(), Error> {
        let response = self
            .agent
            .post(format!("{}/backends", self.base))
            .config()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .build()
            .send_json(backend);
        BuiltInClient::check(response)
    }

    fn deregister(&mut self, name: &str, drain: Duration) -> Result<(), Error> {
        let response = self
            .agent
            .delete(format!("{}/backends/{name}?drain_ms={}", self.base, drain.as_millis()))
            .config()
            .timeout_global(Some(drain + ADMIN_TIMEOUT))
            .build()
            .call();
        BuiltInClient::check(response)
    }

    fn healthy(&mut self) -> Result<Vec<String>, Error> {
        let mut response = self
            .agent
            .get(format!("{}/backends", self.base))
            .config()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .build()
            .call()
            .map_err(|e| Error::Balancer(format!("the load balancer: {e}")))?;
        let pool: Vec<BackendStatus> =
            response.body_mut().read_json().map_err(|e| Error::Balancer(e.to_string()))?;
        Ok(pool.into_iter().filter(|b| b.healthy).map(|b| b.name).collect())
    }
}
