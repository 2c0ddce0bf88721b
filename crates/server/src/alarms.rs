//! The alarm loop: the signal that rolls a deployment back, wired into the controller.
//!
//! One thread of its own, never the round loop's: every [`SCRAPE_INTERVAL`] it scrapes the
//! `/metrics` endpoint each registered box gave at registration (at most
//! [`MAX_CONCURRENT_SCRAPES`] at a time, each bounded by [`SCRAPE_TIMEOUT`]) into one series
//! store (`gantry_alarms::series`), evaluates every pipeline's `alarms.definitions`, and hands
//! the engine what it reads through `Controller::submit`:
//!
//! - [`Input::Alarm`] per alarm and scope the engine keys readings by: each region of the
//!   pipeline (its series narrowed to the pipeline's service and the region), and
//!   organisation-wide (`region: None`) for the alarms the pipeline lists as organisation
//!   blockers. Readings are level-triggered: a change is submitted at once (that is the latency
//!   path to a rollback), and every reading again every [`REFRESH_INTERVAL`], so a lost one
//!   heals and bakes see fresh OK readings. Unchanged readings are not submitted every scrape:
//!   each submission is a round, and every round is a committed transaction even when the engine
//!   changes no record.
//! - [`Input::DataPoints`] per (pipeline, target, artifact, metric) a bake of the pipeline
//!   requires: the cumulative count of data points served by that artifact on that target,
//!   kept here across scrapes (`gantry_alarms::bake::data_points_between`), so a count never
//!   goes down when the store drops old samples. Submitted with the refresh.
//!
//! Every sample of a box is labelled with who served it, and those labels win over the box's
//! own: `box`, `service`, `target` (`prod/eu-west-1/eu-west-1a`), `environment`, `region`,
//! `zone`, `cell`, `role` (`one-box` while the box is the one box of a one-box step running
//! that step's artifact, else `fleet`; the `{role: one-box}` selector of a definition reads it),
//! and `artifact:<pipeline>` (the artifact the box last reported running for that pipeline).
//! Each scrape also records `up` (1 or 0), as Prometheus does.
//!
//! Alarm readings in the engine are keyed by alarm name and region only. When two pipelines of
//! different services define an alarm of the same name, their states in one region are merged
//! to the worse (ALARM, then INSUFFICIENT_DATA, then OK): a fault never hides behind another
//! service's health.
//!
//! What the loop last saw is published on [`Board`] for the API (`GET /api/v1/alarms`,
//! `GET /api/v1/pipelines/{pipeline}/alarms`): each alarm with its state, reason, scope and
//! recent values, and each box's last scrape. A bake's progress (time and data points against
//! required) is the engine's, in the pipeline's status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gantry_alarms::AlarmState;
use gantry_alarms::alarm_set::AlarmSet;
use gantry_alarms::exposition::ExpositionLimits;
use gantry_alarms::fetch::Client;
use gantry_alarms::metric::DataPoint;
use gantry_alarms::regional::{REGION_LABEL, RegionalAlarms};
use gantry_alarms::scrape::{self, ScrapeTarget, Scraper};
use gantry_alarms::series::{Labels, Store, StoreLimits, TimestampMs};
use gantry_engine::Input;
use gantry_model::plan::StepKind;
use gantry_model::{Digest, Plan, Target, Timestamp};
use serde::{Deserialize, Serialize};

use crate::organisation::Organisation;
use crate::server::{Controller, PipelineView};

/// How often every box is scraped and every alarm evaluated. A breach becomes a transition at
/// most this long after its period closes; half a second keeps the path from a scraped breach
/// to a rollback command well inside a second's budget on top of the alarm's own periods.
pub const SCRAPE_INTERVAL: Duration = Duration::from_millis(500);
/// The longest one scrape may take: shorter than the interval, so a box that hangs costs one
/// missing sample, never a stalled loop.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_millis(400);
/// Scrapes in flight at once: enough that a few hundred boxes fit in one interval on loopback,
/// few enough that a slow fleet cannot take every thread of a small controller.
pub const MAX_CONCURRENT_SCRAPES: usize = 16;
/// The largest exposition read from one box: a service's own metrics are kilobytes; a box
/// answering megabytes is misconfigured and must not cost the controller its memory.
pub const MAX_SCRAPE_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// How often unchanged readings and data points are submitted again. The engine holds an alarm
/// reading fresh for three minutes (`gantry_engine::limits::MAX_ALARM_AGE`); a bake ends only on
/// an OK reading newer than its start, so this is also how late a bake may end.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Distinct series kept: a fleet of 500 boxes exposing 20 series each fits with room; a label
/// with unbounded values is refused rather than grow the controller's memory.
pub const MAX_SERIES: usize = 10_000;
/// Samples kept per series: over an hour at one sample per [`SCRAPE_INTERVAL`]. With
/// [`MAX_SERIES`] this bounds the store to about 1.3 GB at worst; an alarm reading a longer
/// window sees its oldest periods as missing (its missing-data policy applies).
pub const MAX_SAMPLES_PER_SERIES: usize = 8_000;
/// The least retention, whatever the alarms read: a bake's counts and the API's recent values
/// need a few minutes of history.
pub const MIN_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Series that stopped arriving (a replaced box, an old artifact's labels) are dropped after
/// their retention; the store is swept every this many scrapes (a minute).
pub const PRUNE_EVERY: u64 = 120;
/// Artifacts whose data points are counted per (pipeline, target, metric): the one deploying,
/// the one it replaced and a rollback's, with margin. The engine keeps four too.
pub const MAX_COUNTED_ARTIFACTS: usize = 4;
/// Transitions the API shows per alarm: enough to explain the latest rollback; the whole story
/// is in the audit log.
pub const MAX_TRANSITIONS_SHOWN: usize = 10;
/// The longest metrics URL a registration may give.
pub const MAX_METRICS_URL_BYTES: usize = 2048;

/// Labels every sample of a box carries (see the module documentation).
pub const BOX_LABEL: &str = "box";
pub const SERVICE_LABEL: &str = "service";
pub const TARGET_LABEL: &str = "target";
pub const ENVIRONMENT_LABEL: &str = "environment";
pub const ZONE_LABEL: &str = "zone";
pub const CELL_LABEL: &str = "cell";
pub const ROLE_LABEL: &str = "role";
/// `role` of the box a one-box step deployed its artifact to.
pub const ONE_BOX_ROLE: &str = "one-box";
/// `role` of every other box.
pub const FLEET_ROLE: &str = "fleet";

/// The label holding the artifact a box runs for `pipeline`. The colon keeps it apart from any
/// label a box can expose (Prometheus label names have none).
pub fn artifact_label(pipeline: &str) -> String {
    format!("artifact:{pipeline}")
}

/// Why a registration's metrics URL is refused, if it is.
pub fn check_metrics_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_METRICS_URL_BYTES {
        return Err(format!("at most {MAX_METRICS_URL_BYTES} bytes"));
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "{url:?} is not an http:// or https:// URL, such as http://10.0.3.7:8080/metrics"
        )),
    }
}

/// One alarm in one scope, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AlarmView {
    pub pipeline: String,
    pub alarm: String,
    /// The region it is evaluated in; absent for an organisation-wide alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The labels every series it reads carries (besides the definition's own selectors).
    pub scope: BTreeMap<String, String>,
    pub state: AlarmState,
    pub reason: String,
    /// When it entered its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<Timestamp>,
    /// A metric alarm's data points at the last evaluation, oldest first.
    pub recent_values: Vec<RecentValue>,
    /// Its latest changes of state, oldest first (at most [`MAX_TRANSITIONS_SHOWN`]).
    pub transitions: Vec<TransitionView>,
}

/// One change of an alarm's state.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TransitionView {
    pub at: Timestamp,
    pub from: AlarmState,
    pub to: AlarmState,
    pub reason: String,
}

/// One period's data point of a metric alarm.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RecentValue {
    pub period_end: Timestamp,
    /// Absent when the period had no usable data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why there is no value (no samples, NaN, a ratio over zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// One box's latest scrape.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ScrapeView {
    pub box_id: String,
    pub url: String,
    pub scraped_at: Timestamp,
    pub samples: usize,
    /// Why it failed (the box is `up == 0` then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the alarm loop last published.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Alarms per pipeline, in evaluation order per region.
    pub alarms: BTreeMap<String, Vec<AlarmView>>,
    /// Why a pipeline's alarms could not be built, per pipeline.
    pub refused: BTreeMap<String, String>,
    pub scrapes: Vec<ScrapeView>,
}

/// What the alarm loop shows the API, refreshed after every evaluation.
#[derive(Debug, Default)]
pub struct Board {
    published: RwLock<Arc<Published>>,
}

impl Board {
    pub fn read(&self) -> Arc<Published> {
        self.published.read().expect("board lock").clone()
    }

    fn publish(&self, published: Published) {
        *self.published.write().expect("board lock") = Arc::new(published);
    }
}

/// How the alarm loop is started.
#[derive(Clone, Debug, Default)]
pub struct AlarmConfig {
    /// Scrape boxes every this often (default [`SCRAPE_INTERVAL`]).
    pub interval: Option<Duration>,
}

/// The alarm loop's thread; stopped and joined when dropped.
pub struct AlarmThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AlarmThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the alarm loop on a thread of its own.
pub fn start(
    controller: Arc<Controller>,
    config: AlarmConfig,
) -> Result<AlarmThread, crate::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("alarms".into())
            .spawn(move || {
                let interval = config.interval.unwrap_or(SCRAPE_INTERVAL);
                let mut alarms = AlarmLoop::new(controller);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    alarms.cycle();
                    while !stop.load(Ordering::SeqCst) {
                        let left = interval.saturating_sub(started.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::sleep(left.min(Duration::from_millis(50)));
                    }
                }
            })
            .map_err(|source| crate::Error::Io { path: "the alarm thread".into(), source })?
    };
    Ok(AlarmThread { stop, thread: Some(thread) })
}

/// One pipeline's alarms and what its bakes count.
struct PipelineAlarms {
    service: String,
    team: String,
    /// What the sets were built from, to rebuild only on a change.
    built_from: (gantry_model::pipeline::Alarms, Vec<String>),
    regional: RegionalAlarms,
    /// Metrics some bake of the plan requires data points of.
    requirements: BTreeSet<String>,
    /// The plan's targets by their printed form (the `target` label).
    targets: BTreeMap<String, Target>,
}

/// A box to scrape this cycle.
struct ScrapedBox {
    box_id: String,
    service: String,
    target: Target,
    url: String,
    running: BTreeMap<String, Digest>,
}

/// Key of a cumulative data-point count.
type CountKey = (String, Target, Digest, String);

/// The loop's state between cycles.
pub struct AlarmLoop {
    controller: Arc<Controller>,
    client: Client,
    store: Store,
    pipelines: BTreeMap<String, PipelineAlarms>,
    refused: BTreeMap<String, String>,
    /// The organisation the sets were built from (compared by pointer).
    organisation: Option<Arc<Organisation>>,
    /// The readings last submitted, merged per (alarm, region).
    submitted: BTreeMap<(String, Option<String>), AlarmState>,
    last_refresh: Option<Instant>,
    /// Cumulative data points and when each last grew.
    counts: BTreeMap<CountKey, (f64, TimestampMs)>,
    last_now: Option<TimestampMs>,
    cycles: u64,
}

impl AlarmLoop {
    pub fn new(controller: Arc<Controller>) -> AlarmLoop {
        AlarmLoop {
            controller,
            client: Client::new(SCRAPE_TIMEOUT, MAX_SCRAPE_BODY_BYTES),
            store: Store::new(store_limits(0)),
            pipelines: BTreeMap::new(),
            refused: BTreeMap::new(),
            organisation: None,
            submitted: BTreeMap::new(),
            last_refresh: None,
            counts: BTreeMap::new(),
            last_now: None,
            cycles: 0,
        }
    }

    /// One scrape, evaluation and submission.
    pub fn cycle(&mut self) {
        self.sync_organisation();
        let views = self.controller.pipeline_views();
        let boxes = self.boxes();
        let targets: Vec<ScrapeTarget> = boxes
            .iter()
            .map(|b| ScrapeTarget { url: b.url.clone(), labels: self.labels(b, &views) })
            .collect();
        let fetched = self.fetch_all(&targets);
        let now_at = self.controller.now();
        // Samples must be strictly newer than the last scrape's, whatever the clock does.
        let now = self
            .last_now
            .map_or(now_at.as_millisecond(), |last| now_at.as_millisecond().max(last + 1));
        let at = Timestamp::from_millisecond(now).unwrap_or(now_at);
        let mut scrapes = Vec::with_capacity(targets.len());
        for ((scraped, target), result) in boxes.iter().zip(&targets).zip(fetched) {
            let outcome = scrape::record(&mut self.store, target, result, now);
            self.controller.metrics.scrapes.inc();
            if outcome.error.is_some() {
                self.controller.metrics.scrape_failures.inc();
            }
            scrapes.push(ScrapeView {
                box_id: scraped.box_id.clone(),
                url: outcome.url,
                scraped_at: at,
                samples: outcome.samples,
                error: outcome.error,
            });
        }
        self.cycles += 1;
        if self.cycles.is_multiple_of(PRUNE_EVERY) {
            self.store.prune(now);
        }
        let changed = self.evaluate(now);
        self.count_data_points(now);
        let due = self.last_refresh.is_none_or(|last| last.elapsed() >= REFRESH_INTERVAL);
        if changed || due {
            self.submit(at);
        }
        self.last_now = Some(now);
        self.publish(scrapes, now);
    }

    /// Rebuilds the alarm sets of pipelines whose definitions, regions or service changed.
    fn sync_organisation(&mut self) {
        let Some(organisation) = self.controller.loaded_organisation() else { return };
        if self.organisation.as_ref().is_some_and(|known| Arc::ptr_eq(known, &organisation)) {
            return;
        }
        let mut pipelines = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for (name, plan) in &organisation.plans {
            let spec =
                organisation.specs.get(name).map(|spec| spec.alarms.clone()).unwrap_or_default();
            let regions: Vec<String> = plan
                .stages
                .iter()
                .flat_map(|stage| &stage.steps)
                .flat_map(|step| &step.targets)
                .map(|target| target.region.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let built_from = (spec, regions);
            if let Some(mut known) = self.pipelines.remove(name)
                && known.built_from == built_from
                && known.service == plan.service
            {
                known.team = plan.team.clone();
                known.requirements = requirements(plan);
                known.targets = targets(plan);
                pipelines.insert(name.clone(), known);
                continue;
            }
            let base = Labels::from([(SERVICE_LABEL.to_string(), plan.service.clone())]);
            match RegionalAlarms::within(
                &built_from.0.definitions,
                built_from.1.iter().cloned(),
                &plan.alarm_blockers.organisation,
                &base,
            ) {
                Ok(regional) => {
                    pipelines.insert(
                        name.clone(),
                        PipelineAlarms {
                            service: plan.service.clone(),
                            team: plan.team.clone(),
                            built_from,
                            regional,
                            requirements: requirements(plan),
                            targets: targets(plan),
                        },
                    );
                }
                Err(error) => {
                    tracing::error!(pipeline = %name, %error, "the pipeline's alarms are refused");
                    refused.insert(name.clone(), error.to_string());
                }
            }
        }
        self.pipelines = pipelines;
        self.refused = refused;
        self.counts.retain(|(pipeline, ..), _| self.pipelines.contains_key(pipeline));
        let longest = self
            .pipelines
            .values()
            .map(|p| p.regional.organisation().longest_window_ms())
            .max()
            .unwrap_or(0);
        let limits = store_limits(longest);
        if limits != self.store.limits() {
            self.store = Store::new(limits);
        }
        self.organisation = Some(organisation);
    }

    /// Every registered box that gave a metrics URL.
    fn boxes(&self) -> Vec<ScrapedBox> {
        let agents = self.controller.agents.lock().expect("agents lock");
        agents
            .boxes()
            .filter_map(|record| {
                Some(ScrapedBox {
                    box_id: record.box_id.0.clone(),
                    service: record.service.clone(),
                    target: record.target.clone(),
                    url: record.metrics_url.clone()?,
                    running: record
                        .report
                        .iter()
                        .flat_map(|report| &report.pipelines)
                        .filter_map(|p| Some((p.pipeline.clone(), p.running?)))
                        .collect(),
                })
            })
            .collect()
    }

    /// The labels that place a box's samples (see the module documentation).
    fn labels(&self, scraped: &ScrapedBox, views: &BTreeMap<String, PipelineView>) -> Labels {
        let target = &scraped.target;
        let mut labels = Labels::from([
            (BOX_LABEL.to_string(), scraped.box_id.clone()),
            (SERVICE_LABEL.to_string(), scraped.service.clone()),
            (TARGET_LABEL.to_string(), target.to_string()),
            (ENVIRONMENT_LABEL.to_string(), target.environment.clone()),
            (REGION_LABEL.to_string(), target.region.clone()),
        ]);
        if let Some(zone) = &target.zone {
            labels.insert(ZONE_LABEL.to_string(), zone.clone());
        }
        if let Some(cell) = &target.cell {
            labels.insert(CELL_LABEL.to_string(), cell.clone());
        }
        let mut one_box = false;
        for (pipeline, digest) in &scraped.running {
            labels.insert(artifact_label(pipeline), digest.to_string());
            let plan = self.organisation.as_ref().and_then(|o| o.plans.get(pipeline));
            if let (Some(view), Some(plan)) = (views.get(pipeline), plan) {
                one_box |= one_box_steps(view, plan).contains(&(target.clone(), *digest));
            }
        }
        let role = if one_box { ONE_BOX_ROLE } else { FLEET_ROLE };
        labels.insert(ROLE_LABEL.to_string(), role.to_string());
        labels
    }

    /// Fetches every target, at most [`MAX_CONCURRENT_SCRAPES`] at a time.
    fn fetch_all(
        &self,
        targets: &[ScrapeTarget],
    ) -> Vec<Result<Vec<gantry_alarms::exposition::Sample>, gantry_alarms::Error>> {
        if targets.is_empty() {
            return Vec::new();
        }
        let scraper = match Scraper::new(
            self.client.clone(),
            targets.to_vec(),
            ExpositionLimits::default(),
        ) {
            Ok(scraper) => scraper,
            Err(error) => {
                // Two boxes with one identity cannot happen (box ids are unique); say so.
                tracing::error!(%error, "refusing to scrape");
                let reason = error.to_string();
                return targets
                    .iter()
                    .map(|target| {
                        Err(gantry_alarms::Error::Fetch {
                            url: target.url.clone(),
                            reason: reason.clone(),
                        })
                    })
                    .collect();
            }
        };
        let next = AtomicUsize::new(0);
        let results: Vec<RwLock<Option<_>>> = targets.iter().map(|_| RwLock::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..MAX_CONCURRENT_SCRAPES.min(targets.len()) {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(target) = targets.get(index) else { break };
                        let result = scraper.fetch(target);
                        *results[index].write().expect("result lock") = Some(result);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|slot| slot.into_inner().expect("result lock").expect("every target fetched"))
            .collect()
    }

    /// Evaluates every set at `now`; whether any merged reading changed since last submitted.
    fn evaluate(&mut self, now: TimestampMs) -> bool {
        for pipeline in self.pipelines.values_mut() {
            let transitions = pipeline.regional.evaluate(&self.store, now);
            self.controller.metrics.alarm_evaluations.inc();
            for (region, transition) in transitions {
                tracing::info!(
                    alarm = %transition.alarm,
                    region = region.as_deref().unwrap_or("organisation"),
                    from = %transition.from,
                    to = %transition.to,
                    reason = %transition.reason,
                    "alarm changed state"
                );
            }
        }
        self.merged() != self.submitted
    }

    /// Every reading, merged per (alarm, region) to the worse state.
    fn merged(&self) -> BTreeMap<(String, Option<String>), AlarmState> {
        let mut merged: BTreeMap<(String, Option<String>), AlarmState> = BTreeMap::new();
        for pipeline in self.pipelines.values() {
            for reading in pipeline.regional.readings() {
                let slot = merged.entry((reading.alarm, reading.region)).or_insert(reading.state);
                if severity(reading.state) > severity(*slot) {
                    *slot = reading.state;
                }
            }
        }
        merged
    }

    /// Adds the data points every requirement gathered since the last cycle.
    fn count_data_points(&mut self, now: TimestampMs) {
        let Some(after) = self.last_now else { return };
        for (name, pipeline) in &self.pipelines {
            let scope = Labels::from([(SERVICE_LABEL.to_string(), pipeline.service.clone())]);
            let label = artifact_label(name);
            for metric in &pipeline.requirements {
                for series in self.store.select(metric, &scope) {
                    let (Some(target), Some(artifact)) = (
                        series.labels.get(TARGET_LABEL).and_then(|t| pipeline.targets.get(t)),
                        series.labels.get(&label).and_then(|d| d.parse::<Digest>().ok()),
                    ) else {
                        continue;
                    };
                    let points = gantry_alarms::bake::data_points_between(series, after, now);
                    let key = (name.clone(), target.clone(), artifact, metric.clone());
                    let entry = self.counts.entry(key).or_insert((0.0, now));
                    entry.0 += points;
                    entry.1 = now;
                }
            }
        }
        // Only the newest artifacts of each (pipeline, target, metric) stay counted.
        let mut per_place: BTreeMap<(String, Target, String), Vec<(TimestampMs, Digest)>> =
            BTreeMap::new();
        for ((pipeline, target, artifact, metric), (_, at)) in &self.counts {
            per_place
                .entry((pipeline.clone(), target.clone(), metric.clone()))
                .or_default()
                .push((*at, *artifact));
        }
        for ((pipeline, target, metric), mut artifacts) in per_place {
            if artifacts.len() <= MAX_COUNTED_ARTIFACTS {
                continue;
            }
            artifacts.sort();
            for (_, artifact) in &artifacts[..artifacts.len() - MAX_COUNTED_ARTIFACTS] {
                self.counts.remove(&(pipeline.clone(), target.clone(), *artifact, metric.clone()));
            }
        }
    }

    /// Hands every reading and count to the round loop, in one batch (one round).
    fn submit(&mut self, at: Timestamp) {
        let merged = self.merged();
        let mut inputs: Vec<Input> = merged
            .iter()
            .map(|((alarm, region), state)| Input::Alarm {
                alarm: alarm.clone(),
                region: region.clone(),
                state: *state,
                observed_at: at,
            })
            .collect();
        inputs.extend(self.counts.iter().map(
            |((pipeline, target, artifact, metric), (count, _))| Input::DataPoints {
                pipeline: pipeline.clone(),
                target: target.clone(),
                artifact: *artifact,
                metric: metric.clone(),
                count: count.max(0.0).floor() as u64,
                observed_at: at,
            },
        ));
        self.submitted = merged;
        self.last_refresh = Some(Instant::now());
        if !inputs.is_empty() {
            self.controller.submit(inputs);
        }
    }

    /// Publishes what the API shows.
    fn publish(&self, scrapes: Vec<ScrapeView>, now: TimestampMs) {
        let mut published =
            Published { refused: self.refused.clone(), scrapes, ..Published::default() };
        for (name, pipeline) in &self.pipelines {
            let mut alarms = Vec::new();
            let regions = pipeline.built_from.1.iter().filter_map(|region| {
                Some((Some(region.clone()), pipeline.regional.region(region)?))
            });
            let organisation = (None, pipeline.regional.organisation());
            for (region, set) in regions.chain([organisation]) {
                let names: Vec<&str> = match &region {
                    Some(_) => set.names().collect(),
                    None => self
                        .organisation
                        .as_ref()
                        .and_then(|o| o.plans.get(name))
                        .map(|plan| {
                            plan.alarm_blockers.organisation.iter().map(String::as_str).collect()
                        })
                        .unwrap_or_default(),
                };
                for alarm in names {
                    if let Some(view) =
                        alarm_view(name, alarm, region.clone(), set, &self.store, now)
                    {
                        alarms.push(view);
                    }
                }
            }
            published.alarms.insert(name.clone(), alarms);
        }
        self.controller.alarms.publish(published);
    }
}

/// One alarm of one set as the API shows it.
fn alarm_view(
    pipeline: &str,
    alarm: &str,
    region: Option<String>,
    set: &AlarmSet,
    store: &Store,
    now: TimestampMs,
) -> Option<AlarmView> {
    let status = set.status(alarm)?;
    let time = |ms: TimestampMs| Timestamp::from_millisecond(ms).ok();
    let recent_values = set
        .recent_values(alarm, store, now)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(end, point)| {
            let (value, missing) = match point {
                DataPoint::Value(value) => (Some(value), None),
                DataPoint::Missing => (None, Some("no samples in the period".to_string())),
                DataPoint::Invalid(why) => (None, Some(why.to_string())),
            };
            Some(RecentValue { period_end: time(end)?, value, missing })
        })
        .collect();
    let history: Vec<_> = set.history(alarm).collect();
    let transitions = history[history.len().saturating_sub(MAX_TRANSITIONS_SHOWN)..]
        .iter()
        .filter_map(|transition| {
            Some(TransitionView {
                at: time(transition.at)?,
                from: transition.from,
                to: transition.to,
                reason: transition.reason.clone(),
            })
        })
        .collect();
    Some(AlarmView {
        transitions,
        pipeline: pipeline.to_string(),
        alarm: alarm.to_string(),
        region,
        scope: set.scope().clone(),
        state: status.state,
        reason: status.reason.clone(),
        since: status.since.and_then(time),
        evaluated_at: status.evaluated_at.and_then(time),
        recent_values,
    })
}

/// How bad a state is for a merge: ALARM, then missing data, then OK.
fn severity(state: AlarmState) -> u8 {
    match state {
        AlarmState::Ok => 0,
        AlarmState::InsufficientData => 1,
        AlarmState::Alarm => 2,
    }
}

/// The store's limits for alarms reading at most `longest_window_ms` back.
fn store_limits(longest_window_ms: i64) -> StoreLimits {
    let retention = (2 * longest_window_ms).max(MIN_RETENTION.as_millis() as i64);
    let per_series = retention / SCRAPE_INTERVAL.as_millis() as i64 + 16;
    StoreLimits {
        max_series: MAX_SERIES,
        max_samples_per_series: (per_series as usize).min(MAX_SAMPLES_PER_SERIES),
        retention_ms: retention,
    }
}

/// Metrics any bake of `plan` requires data points of.
fn requirements(plan: &Plan) -> BTreeSet<String> {
    plan.stages
        .iter()
        .flat_map(|stage| {
            (0..stage.steps.len()).flat_map(move |index| {
                stage.steps[index].targets.iter().flat_map(move |target| {
                    stage.bake_in_region(index, &target.region).data_points.keys().cloned()
                })
            })
        })
        .collect()
}

fn targets(plan: &Plan) -> BTreeMap<String, Target> {
    plan.stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .flat_map(|step| &step.targets)
        .map(|target| (target.to_string(), target.clone()))
        .collect()
}

/// The part of the engine's pipeline status the alarm loop reads.
#[derive(Deserialize)]
struct StatusView {
    stages: Vec<StageView>,
}

#[derive(Deserialize)]
struct StageView {
    stage: String,
    #[serde(default)]
    artifact: Option<Digest>,
    #[serde(default)]
    lanes: Vec<LaneView>,
}

#[derive(Deserialize)]
struct LaneView {
    step: String,
    target: Target,
    phase: String,
}

/// (target, artifact) of every lane of `plan` in a one-box step, deploying or baking.
fn one_box_steps(view: &PipelineView, plan: &Plan) -> BTreeSet<(Target, Digest)> {
    // Read through its serialized form, the contract the API serves.
    let status = serde_json::to_value(&view.status)
        .and_then(serde_json::from_value::<StatusView>)
        .unwrap_or(StatusView { stages: Vec::new() });
    let mut found = BTreeSet::new();
    for stage in &status.stages {
        let (Some(artifact), Some(planned)) =
            (stage.artifact, plan.stages.iter().find(|s| s.name == stage.stage))
        else {
            continue;
        };
        for lane in &stage.lanes {
            let one_box = planned
                .steps
                .iter()
                .any(|step| step.name == lane.step && step.kind == StepKind::OneBox);
            if one_box && matches!(lane.phase.as_str(), "deploying" | "deployed" | "stuck") {
                found.insert((lane.target.clone(), artifact));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_urls_are_checked() {
        let check = |url: &str, expected: Result<(), &str>| {
            assert_eq!(check_metrics_url(url), expected.map_err(str::to_string), "{url}");
        };
        check("http://127.0.0.1:8080/metrics", Ok(()));
        check("https://box-7.internal/metrics", Ok(()));
        check(
            "ftp://box/metrics",
            Err(
                "\"ftp://box/metrics\" is not an http:// or https:// URL, such as http://10.0.3.7:8080/metrics",
            ),
        );
        check(
            "http://",
            Err(
                "\"http://\" is not an http:// or https:// URL, such as http://10.0.3.7:8080/metrics",
            ),
        );
        check(&format!("http://{}", "a".repeat(MAX_METRICS_URL_BYTES)), Err("at most 2048 bytes"));
    }

    #[test]
    fn merged_states_are_the_worse() {
        assert!(severity(AlarmState::Alarm) > severity(AlarmState::InsufficientData));
        assert!(severity(AlarmState::InsufficientData) > severity(AlarmState::Ok));
    }

    #[test]
    fn the_store_keeps_what_the_longest_alarm_reads() {
        let short = store_limits(60_000);
        assert_eq!(short.retention_ms, MIN_RETENTION.as_millis() as i64);
        let long = store_limits(3 * 3600 * 1000);
        assert_eq!(long.retention_ms, 6 * 3600 * 1000);
        assert_eq!(long.max_samples_per_series, MAX_SAMPLES_PER_SERIES);
    }
}
