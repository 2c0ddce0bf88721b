//! The engine's state as records a store writes piece by piece.
//!
//! | kind | key | holds |
//! | --- | --- | --- |
//! | global | `""` | epoch, region time zones, content blocklist, recent operator command ids |
//! | pipeline | its name | plan version (and one pending), artifacts, stages with their lanes and bakes, holds, overrides, urgent mode |
//! | target | `service/target` | per pipeline of the service: each commanded box's outstanding and last command, known-good artifacts, rollback, back-offs |
//! | plan | `pipeline@version` | one plan version, written once |
//!
//! Observations — box reports, alarm readings, data points — are level-triggered and re-read
//! every round, so no record holds them: a round of reports rewrites nothing unless it changes a
//! decision. The command-id counter is not in a record either: the store's high-water mark
//! carries it ([`Engine::high_water`]), so issuing a command rewrites no global record.
//!
//! [`Engine::step_many`] reports exactly the records whose bytes changed: it serializes the
//! records the step could have touched (the global record when the input was organisation-wide,
//! and each decided pipeline's records) and compares them with what it reported last.
//!
//! Architecture invariant: the records of [`Engine::records`] are the whole persistent state:
//! `Engine::from_records(engine.records())` decides exactly as `engine` does once fresh
//! observations arrive. A planted bug is never part of any record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use gantry_model::{Plan, Target};
use gantry_store::{Change, HighWater, RecordKey, RecordKind};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::artifact::ContentBlocklist;
use crate::state::{Engine, Pipeline, SharedTarget, TargetState};

/// The version of the records' layout. Stored with every round; a controller refuses records
/// of another version rather than misread them.
pub const SCHEMA_VERSION: u32 = 1;

/// Command ids per epoch: a controller starting epoch `e` hands out ids from `e << 32`, so ids
/// issued under a new epoch never collide with any issued before it, even after a restore from
/// a backup that forgot the latest ids. Four billion commands per controller run is far more
/// than any run issues.
pub const COMMAND_IDS_PER_EPOCH_BITS: u32 = 32;

#[derive(Serialize, Deserialize)]
struct GlobalRecord<Zones, Content, Recent> {
    epoch: u64,
    region_zones: Zones,
    content: Content,
    recent_operator_commands: Recent,
}

#[derive(Serialize)]
struct TargetRecordOut<'a> {
    service: &'a str,
    target: &'a Target,
    pipelines: BTreeMap<&'a str, &'a TargetState>,
}

#[derive(Deserialize)]
struct TargetRecordIn {
    service: String,
    target: Target,
    pipelines: BTreeMap<String, TargetState>,
}

/// The key of a shared target's record.
pub fn target_key(service: &str, target: &Target) -> RecordKey {
    RecordKey::new(RecordKind::Target, format!("{service}/{target}"))
}

/// The key of a plan version's record.
pub fn plan_key(pipeline: &str, version: u32) -> RecordKey {
    RecordKey::new(RecordKind::Plan, format!("{pipeline}@{version}"))
}

pub fn pipeline_key(pipeline: &str) -> RecordKey {
    RecordKey::new(RecordKind::Pipeline, pipeline)
}

pub fn global_key() -> RecordKey {
    RecordKey::new(RecordKind::Global, "")
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("engine records serialize")
}

impl Engine {
    /// The highest epoch and command id this engine handed out: committed with every round.
    pub fn high_water(&self) -> HighWater {
        HighWater { epoch: self.epoch, command_id: self.next_command }
    }

    /// This engine, reporting no changed records from its steps: for what-if computations
    /// (the ETA) whose state is never stored, so no step pays for serializing it.
    pub fn without_records(mut self) -> Engine {
        self.track_records = false;
        self
    }

    /// Every record of the state, by key.
    pub fn records(&self) -> BTreeMap<RecordKey, Vec<u8>> {
        let mut keys = BTreeSet::from([global_key()]);
        for name in self.pipelines.keys() {
            keys.extend(self.keys_of(name));
        }
        keys.into_iter().filter_map(|key| Some((key.clone(), self.record(&key)?))).collect()
    }

    /// The record `key` as it would be stored now; `None` when it does not exist.
    pub fn record(&self, key: &RecordKey) -> Option<Vec<u8>> {
        match key.kind {
            RecordKind::Global => Some(json(&GlobalRecord {
                epoch: self.epoch,
                region_zones: &self.region_zones,
                content: &self.content,
                recent_operator_commands: &self.recent_operator_commands,
            })),
            RecordKind::Pipeline => self.pipelines.get(&key.key).map(json),
            RecordKind::Plan => {
                let (pipeline, version) = key.key.rsplit_once('@')?;
                let version: u32 = version.parse().ok()?;
                self.plans.get(&(pipeline.to_string(), version)).map(|plan| json(&**plan))
            }
            RecordKind::Target => {
                let ((service, target), users) = self.target_keys.get(&key.key)?;
                Some(json(&self.target_record(service, target, users)))
            }
        }
    }

    fn target_record<'a>(
        &'a self,
        service: &'a str,
        target: &'a Target,
        users: &'a BTreeSet<String>,
    ) -> TargetRecordOut<'a> {
        let pipelines = users
            .iter()
            .filter_map(|name| {
                let state = self.pipelines.get(name)?.targets.get(target)?;
                Some((name.as_str(), state))
            })
            .collect();
        TargetRecordOut { service, target, pipelines }
    }

    /// The keys of the records of one pipeline: its own, its targets' and its plan versions'.
    pub(crate) fn keys_of(&self, name: &str) -> Vec<RecordKey> {
        let Some(pipeline) = self.pipelines.get(name) else {
            return vec![pipeline_key(name)];
        };
        let mut keys = vec![pipeline_key(name), plan_key(name, pipeline.plan_version)];
        if let Some(pending) = pipeline.pending_plan {
            keys.push(plan_key(name, pending));
        }
        match self.target_record_keys.get(name) {
            Some(targets) => keys.extend(targets.iter().cloned()),
            None => {
                let service = &pipeline.plan.service;
                keys.extend(pipeline.targets.keys().map(|target| target_key(service, target)));
            }
        }
        keys
    }

    /// A fingerprint of every record: a hash of exactly what each stores, computed without
    /// serializing it. Checked mode compares these after every round with those of the records
    /// committed, and the bytes themselves now and then.
    pub fn fingerprints(&self) -> BTreeMap<RecordKey, u64> {
        let mut keys = BTreeSet::from([global_key()]);
        for name in self.pipelines.keys() {
            keys.extend(self.keys_of(name));
        }
        keys.into_iter().filter_map(|key| Some((key.clone(), self.record_hash(&key)?))).collect()
    }

    /// A hash of what record `key` stores, computed without serializing it (the pipeline and
    /// target records are hashed field by field, exactly the fields they store); `None` when
    /// it does not exist.
    pub fn record_hash(&self, key: &RecordKey) -> Option<u64> {
        let mut hasher = Fingerprint::default();
        match key.kind {
            RecordKind::Pipeline => self.pipelines.get(&key.key)?.hash(&mut hasher),
            RecordKind::Target => {
                let ((_, target), users) = self.target_keys.get(&key.key)?;
                for name in users {
                    if let Some(state) =
                        self.pipelines.get(name).and_then(|p| p.targets.get(target))
                    {
                        name.hash(&mut hasher);
                        state.hash(&mut hasher);
                    }
                }
            }
            // A plan version never changes once written: its key is its identity.
            RecordKind::Plan => {
                let (pipeline, version) = key.key.rsplit_once('@')?;
                let version: u32 = version.parse().ok()?;
                self.plans.contains_key(&(pipeline.to_string(), version)).then_some(())?;
                key.key.hash(&mut hasher);
            }
            RecordKind::Global => self.record(key)?.hash(&mut hasher),
        }
        Some(hasher.finish())
    }

    /// The records among `candidates` that changed since they were last reported, as
    /// changes, and remembers them as reported. A record is serialized only when its hash
    /// moved; checked mode (the round driver's) compares the bytes of every record.
    pub(crate) fn changes(&mut self, candidates: BTreeSet<RecordKey>) -> Vec<Change> {
        let mut changes = Vec::new();
        if !self.track_records {
            return changes;
        }
        for key in candidates {
            match self.record_hash(&key) {
                Some(digest) => {
                    if self.reported.get(&key) != Some(&digest) {
                        self.reported.insert(key.clone(), digest);
                        let bytes = self.record(&key).expect("it exists: it hashed");
                        changes.push(Change::Put { key, bytes });
                    }
                }
                None => {
                    if self.reported.remove(&key).is_some() {
                        changes.push(Change::Delete { key });
                    }
                }
            }
        }
        changes
    }

    /// Rebuilds an engine from its stored records and the store's high-water marks. The
    /// records must be of [`SCHEMA_VERSION`]. Observations start empty; the first step decides
    /// every pipeline.
    pub fn from_records(
        records: &BTreeMap<RecordKey, Vec<u8>>,
        schema_version: u32,
        high_water: HighWater,
    ) -> Result<Engine, Error> {
        if schema_version != SCHEMA_VERSION {
            return Err(Error::SchemaVersion { found: schema_version, expected: SCHEMA_VERSION });
        }
        let corrupt = |key: &RecordKey, error: serde_json::Error| Error::CorruptRecord {
            key: key.to_string(),
            reason: error.to_string(),
        };
        type Global = GlobalRecord<BTreeMap<String, String>, ContentBlocklist, VecDeque<String>>;
        let global_key = global_key();
        let global: Global = match records.get(&global_key) {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| corrupt(&global_key, e))?,
            None => {
                return Err(Error::CorruptRecord {
                    key: global_key.to_string(),
                    reason: "missing".into(),
                });
            }
        };
        let mut plans = BTreeMap::new();
        let mut pipelines = BTreeMap::new();
        let mut targets: Vec<TargetRecordIn> = Vec::new();
        for (key, bytes) in records {
            match key.kind {
                RecordKind::Global => {}
                RecordKind::Plan => {
                    let plan: Plan = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
                    let version = key
                        .key
                        .rsplit_once('@')
                        .and_then(|(_, version)| version.parse::<u32>().ok())
                        .ok_or_else(|| Error::CorruptRecord {
                            key: key.to_string(),
                            reason: "the key names no version".into(),
                        })?;
                    plans.insert((plan.pipeline.clone(), version), Arc::new(plan));
                }
                RecordKind::Pipeline => {
                    let pipeline: Pipeline =
                        serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
                    pipelines.insert(key.key.clone(), pipeline);
                }
                RecordKind::Target => {
                    targets.push(serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?);
                }
            }
        }
        for (name, pipeline) in &mut pipelines {
            let plan = plans.get(&(name.clone(), pipeline.plan_version)).ok_or_else(|| {
                Error::CorruptRecord {
                    key: pipeline_key(name).to_string(),
                    reason: format!("its plan version {} is not stored", pipeline.plan_version),
                }
            })?;
            pipeline.plan = Arc::clone(plan);
            pipeline.targets = plan_targets(plan).map(|t| (t, TargetState::default())).collect();
        }
        for record in targets {
            for (name, state) in record.pipelines {
                if let Some(slot) = pipelines
                    .get_mut(&name)
                    .filter(|pipeline| pipeline.plan.service == record.service)
                    .and_then(|pipeline| pipeline.targets.get_mut(&record.target))
                {
                    *slot = state;
                }
            }
        }
        let mut engine = Engine::empty(global.region_zones);
        engine.epoch = global.epoch.max(high_water.epoch);
        engine.next_command = high_water.command_id;
        engine.content = global.content;
        engine.recent_operator_commands = global.recent_operator_commands;
        engine.plans = plans;
        engine.pipelines = pipelines;
        engine.index();
        // What was loaded is what is stored: report only what changes from here.
        for key in records.keys() {
            if let Some(digest) = engine.record_hash(key) {
                engine.reported.insert(key.clone(), digest);
            }
        }
        Ok(engine)
    }

    /// Rebuilds the indexes derived from the plans: the users of each shared target and the
    /// readers of each alarm.
    pub(crate) fn index(&mut self) {
        self.users.clear();
        self.alarm_readers.clear();
        self.shared_targets.clear();
        self.target_keys.clear();
        self.target_record_keys.clear();
        for (name, pipeline) in &self.pipelines {
            let mut keys = Vec::with_capacity(pipeline.targets.len());
            for target in pipeline.targets.keys() {
                let shared: SharedTarget = (pipeline.plan.service.clone(), target.clone());
                let key = target_key(&shared.0, &shared.1);
                self.target_keys
                    .entry(key.key.clone())
                    .or_insert_with(|| (shared.clone(), BTreeSet::new()))
                    .1
                    .insert(name.clone());
                keys.push(key);
                self.users.entry(shared).or_default().insert(name.clone());
            }
            self.target_record_keys.insert(name.clone(), keys);
            let plans = std::iter::once(&pipeline.plan)
                .chain(pipeline.pending_plan.and_then(|v| self.plans.get(&(name.clone(), v))));
            for plan in plans {
                for alarm in plan_alarms(plan) {
                    self.alarm_readers.entry(alarm.clone()).or_default().insert(name.clone());
                }
            }
        }
        for ((_, target), users) in self.users.iter().filter(|(_, users)| users.len() > 1) {
            for name in users {
                self.shared_targets.entry(name.clone()).or_default().push(target.clone());
            }
        }
        // A target no longer shared (its other pipeline removed) has no box taken elsewhere.
        for (name, pipeline) in &mut self.pipelines {
            let shared = self.shared_targets.get(name);
            for (target, state) in &mut pipeline.targets {
                if shared.is_none_or(|targets| !targets.contains(target)) {
                    for box_state in state.fleet.boxes.values_mut() {
                        box_state.taken_elsewhere = false;
                        box_state.unsettled_elsewhere = false;
                    }
                }
            }
        }
    }
}

/// A fast 64-bit hash for telling a changed record from an unchanged one: eight bytes at a
/// time, multiply-and-rotate, with a final avalanche (MurmurHash3's `fmix64`). Not a defence
/// against anyone crafting collisions — records are the engine's own state — and checked mode
/// compares the bytes themselves too.
#[derive(Default)]
struct Fingerprint {
    state: u64,
}

impl Fingerprint {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(Self::MULTIPLIER).rotate_left(29);
    }
}

impl std::hash::Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        let mut hash = self.state;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
    }
}

/// Every target a plan deploys to.
pub(crate) fn plan_targets(plan: &Plan) -> impl Iterator<Item = Target> + '_ {
    plan.stages.iter().flat_map(|stage| &stage.steps).flat_map(|step| step.targets.iter().cloned())
}

/// Every alarm a plan reads: its steps' rollback alarms and its alarm blockers.
pub(crate) fn plan_alarms(plan: &Plan) -> impl Iterator<Item = &String> {
    plan.stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .flat_map(|step| &step.rollback_alarms)
        .chain(&plan.alarm_blockers.team)
        .chain(&plan.alarm_blockers.organisation)
}
