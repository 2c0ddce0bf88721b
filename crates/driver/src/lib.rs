//! Gantry's one round driver: how every controller — the server on the real clock, the
//! simulator on a virtual one, the what-if ETA — runs the engine.
//!
//! A round is: collect the inputs that arrived → one [`Engine::step_many`] → commit the records
//! that changed, the outbox of commands and their audit records in **one** [`Store::commit`]
//! → only then deliver. [`Driver::decide`] does the first two and returns a [`Decided`] round;
//! [`Driver::commit`] writes it and hands back what may now be delivered; once the transport has
//! handed commands on, [`Driver::delivered`] marks them so. [`Driver::round`] is the three in
//! one, for callers with nothing to do in between (the simulator does: it crashes there).
//!
//! Starting ([`Driver::start`]) loads the store, refuses records of another schema version,
//! begins a new fencing epoch past what is stored and what agents report, steps
//! [`Input::ControllerStarted`], and commits that round before anything else; commands committed
//! but never marked delivered come back in [`Started::undelivered`] to be sent again (agents
//! apply a command id at most once, so that is always safe).
//!
//! If a commit fails, the round is lost whole: the driver holds no engine state that the store
//! lacks, so it rebuilds the engine from the store and reports [`Error::Store`]; the caller
//! delivers nothing from that round and says so in its health until a commit succeeds again.
//!
//! Checked mode ([`Driver::checked`]) keeps a copy of what the store holds and, after every
//! commit, compares it with every record of the engine (by the engine's fingerprints every
//! [`CHECK_FINGERPRINTS_EVERY`] rounds, byte for byte every [`CHECK_BYTES_EVERY`]): a record
//! that changed without
//! being reported is a bug in the engine ([`Committed::unreported`]), and so is a round that
//! concerns one pipeline reporting another's records ([`Committed::out_of_scope`]).
//!
//! Architecture invariant: nothing a round decided is delivered before its commit returned.

pub mod eta;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet};

use gantry_engine::{Action, Engine, Input};
use gantry_store::{AuditRecord, Change, OutboxCommand, RecordKey, Round, Store};
use jiff::Timestamp;

/// Why a round or a start failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] gantry_store::Error),
    #[error("engine: {0}")]
    Engine(#[from] gantry_engine::Error),
}

/// The destination of test-gate requests in the outbox.
pub const TEST_RUNNER: &str = "test-runner";

/// A round decided and not yet committed: nothing of it may be delivered.
#[derive(Debug)]
pub struct Decided {
    pub now: Timestamp,
    /// Every action of the round, in the engine's order.
    pub actions: Vec<Action>,
    round: Round,
    /// Records changed without being reported (checked mode): an engine bug.
    pub unreported: Vec<RecordKey>,
    /// Records reported by a round that concerns one pipeline but belong to another
    /// (checked mode): an engine bug.
    pub out_of_scope: Vec<RecordKey>,
}

impl Decided {
    /// The keys of the records the round changes.
    pub fn changed(&self) -> impl Iterator<Item = &RecordKey> {
        self.round.changes.iter().map(Change::key)
    }

    /// Bytes of records the round writes.
    pub fn record_bytes(&self) -> u64 {
        self.round
            .changes
            .iter()
            .map(|change| match change {
                Change::Put { bytes, .. } => bytes.len() as u64,
                Change::Delete { .. } => 0,
            })
            .sum()
    }

    /// The round's outbox: the commands it sends.
    pub fn outbox(&self) -> &[OutboxCommand] {
        &self.round.outbox
    }
}

/// A round committed: its actions may now be performed.
#[derive(Debug)]
pub struct Committed {
    pub now: Timestamp,
    pub actions: Vec<Action>,
    /// The ids of the commands among `actions`, to pass to [`Driver::delivered`] once sent.
    pub commands: Vec<u64>,
    pub record_bytes: u64,
    pub unreported: Vec<RecordKey>,
    pub out_of_scope: Vec<RecordKey>,
}

/// Checked mode's copy of what the store holds.
struct Shadow {
    records: BTreeMap<RecordKey, Vec<u8>>,
    /// The engine's fingerprint of each record as committed.
    fingerprints: BTreeMap<RecordKey, u64>,
    rounds: u64,
}

/// Checked mode compares the fingerprints of every record with those of the records committed
/// every this many rounds, and the records' bytes every [`CHECK_BYTES_EVERY`]: hashing and
/// serializing every record every round would cost many times the simulation it checks. A
/// write never reported stays different until the record is written again, so it is caught
/// at the next check.
pub const CHECK_FINGERPRINTS_EVERY: u64 = 16;
/// See [`CHECK_FINGERPRINTS_EVERY`].
pub const CHECK_BYTES_EVERY: u64 = 256;

impl Shadow {
    fn new(engine: &Engine, records: BTreeMap<RecordKey, Vec<u8>>) -> Shadow {
        let fingerprints = records
            .keys()
            .filter_map(|key| Some((key.clone(), engine.record_hash(key)?)))
            .collect();
        Shadow { records, fingerprints, rounds: 0 }
    }

    /// Applies a committed round, then returns the records whose fingerprint (or, every
    /// [`CHECK_BYTES_EVERY`] rounds, whose bytes) differ from what the store now holds.
    fn committed(&mut self, engine: &Engine, changes: Vec<Change>) -> Vec<RecordKey> {
        for change in changes {
            match change {
                Change::Put { key, bytes } => {
                    if let Some(fingerprint) = engine.record_hash(&key) {
                        self.fingerprints.insert(key.clone(), fingerprint);
                    }
                    self.records.insert(key, bytes);
                }
                Change::Delete { key } => {
                    self.fingerprints.remove(&key);
                    self.records.remove(&key);
                }
            }
        }
        self.rounds += 1;
        if !self.rounds.is_multiple_of(CHECK_FINGERPRINTS_EVERY) {
            return Vec::new();
        }
        let now_held = engine.fingerprints();
        let keys: BTreeSet<&RecordKey> = self.fingerprints.keys().chain(now_held.keys()).collect();
        let mut differ: BTreeSet<RecordKey> = keys
            .into_iter()
            .filter(|key| self.fingerprints.get(*key) != now_held.get(*key))
            .cloned()
            .collect();
        if self.rounds.is_multiple_of(CHECK_BYTES_EVERY) {
            let bytes = engine.records();
            let keys: BTreeSet<&RecordKey> = self.records.keys().chain(bytes.keys()).collect();
            differ.extend(
                keys.into_iter().filter(|key| self.records.get(*key) != bytes.get(*key)).cloned(),
            );
        }
        differ.into_iter().collect()
    }
}

/// What [`Driver::start`] found and did.
#[derive(Debug)]
pub struct Started {
    pub epoch: u64,
    /// Commands committed before the restart and never marked delivered: send them again.
    pub undelivered: Vec<OutboxCommand>,
    /// The start's own round (committed).
    pub round: Committed,
}

pub struct Driver<S: Store> {
    engine: Engine,
    store: S,
    /// Latest `now` given to the engine: rounds never go back in time.
    last_now: Option<Timestamp>,
    /// What the store holds, in checked mode.
    shadow: Option<Shadow>,
    schema_version: u32,
    #[allow(clippy::type_complexity, reason = "a hook, set only by tests and the simulator")]
    prepare: Option<fn(&mut Engine)>,
}

impl<S: Store> Driver<S> {
    /// Starts a controller on `store`: from its records, or, for a store never committed to,
    /// from the engine `fresh` builds. `seen_by_agents` is the highest epoch any agent
    /// reports. `prepare` runs on the engine after every load (the simulator plants bugs).
    pub fn start(
        mut store: S,
        fresh: impl FnOnce() -> Result<Engine, gantry_engine::Error>,
        seen_by_agents: u64,
        now: Timestamp,
        prepare: Option<fn(&mut Engine)>,
    ) -> Result<(Driver<S>, Started), Error> {
        let loaded = store.load()?;
        let mut engine = match loaded.schema_version {
            None => fresh()?,
            Some(version) => Engine::from_records(&loaded.records, version, loaded.high_water)?,
        };
        // The records are in the engine now; a thousand pipelines' are tens of megabytes.
        drop(loaded.records);
        if let Some(prepare) = prepare {
            prepare(&mut engine);
        }
        let epoch = store.begin_epoch(seen_by_agents.max(engine.epoch()))?;
        let mut driver = Driver {
            engine,
            store,
            last_now: None,
            shadow: None,
            schema_version: gantry_engine::SCHEMA_VERSION,
            prepare,
        };
        // No shadow for the start's round: it would copy and fingerprint every record (or, on
        // a fresh store, every record the round writes) only to be dropped after the commit.
        let fresh_store = loaded.schema_version.is_none();
        let mut decided = driver.decide(now, vec![Input::ControllerStarted { epoch }]);
        if fresh_store {
            // The first round writes every record, not only those the start changed.
            let changed: BTreeSet<RecordKey> = decided.changed().cloned().collect();
            for (key, bytes) in driver.engine.records() {
                if !changed.contains(&key) {
                    decided.round.changes.push(Change::Put { key, bytes });
                }
            }
        }
        let round = driver.commit(decided)?;
        Ok((driver, Started { epoch, undelivered: loaded.outbox, round }))
    }

    /// Compares the engine's records with what the store holds after every commit (see the
    /// module documentation). Costs a full serialization per round: for tests and simulation.
    pub fn checked(mut self) -> Driver<S> {
        self.shadow = Some(Shadow::new(&self.engine, self.engine.records()));
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for what the driver does not do (a test making it fail, a server reading
    /// the outbox for an agent).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (the controller stops; a simulated crash).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Steps the engine with a round of inputs at `now` (never earlier than the last round's)
    /// and builds what the round commits. Nothing may be delivered yet.
    pub fn decide(&mut self, now: Timestamp, inputs: Vec<Input>) -> Decided {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        let single = single_pipeline(&inputs);
        // A pipeline's records before the round count as its own too: removing it deletes them.
        let before: Vec<RecordKey> = match (&single, &self.shadow) {
            (Some(pipeline), Some(_)) => self.engine.records_of(pipeline),
            _ => Vec::new(),
        };
        let outcome = self.engine.step_many(now, inputs);
        let mut outbox = Vec::new();
        let mut audit = Vec::new();
        for action in &outcome.actions {
            if let Action::WakeAt(_) = action {
                continue;
            }
            let bytes = serde_json::to_vec(action).expect("actions serialize");
            let command = match action {
                Action::Deploy(command) | Action::RollBack(command) => {
                    Some((command.id.0, command.epoch, command.box_id.0.clone()))
                }
                Action::RunTestGate { id, epoch, .. } => Some((id.0, *epoch, TEST_RUNNER.into())),
                Action::Notify(_) | Action::Page { .. } | Action::WakeAt(_) => None,
            };
            if let Some((id, epoch, destination)) = command {
                outbox.push(OutboxCommand { id, epoch, destination, bytes: bytes.clone() });
            }
            audit.push(AuditRecord { at: now, bytes });
        }
        let mut out_of_scope = Vec::new();
        if let (Some(pipeline), Some(_)) = (&single, &self.shadow) {
            let own: BTreeSet<RecordKey> =
                self.engine.records_of(pipeline).into_iter().chain(before).collect();
            out_of_scope = outcome
                .changed
                .iter()
                .map(Change::key)
                .filter(|key| !own.contains(key))
                .cloned()
                .collect();
        }
        let round = Round {
            schema_version: self.schema_version,
            changes: outcome.changed,
            outbox,
            audit,
            high_water: self.engine.high_water(),
        };
        Decided { now, actions: outcome.actions, round, unreported: Vec::new(), out_of_scope }
    }

    /// Commits a decided round in one transaction. On failure the round is lost whole: the
    /// engine is rebuilt from the store, and nothing of the round may be delivered.
    pub fn commit(&mut self, decided: Decided) -> Result<Committed, Error> {
        let Decided { now, actions, round, out_of_scope, .. } = decided;
        let record_bytes = round
            .changes
            .iter()
            .map(|change| match change {
                Change::Put { bytes, .. } => bytes.len() as u64,
                Change::Delete { .. } => 0,
            })
            .sum();
        let commands = round.outbox.iter().map(|command| command.id).collect();
        let changes = self.shadow.is_some().then(|| round.changes.clone());
        if let Err(error) = self.store.commit(round) {
            self.reload()?;
            return Err(error.into());
        }
        let mut unreported = Vec::new();
        if let (Some(shadow), Some(changes)) = (&mut self.shadow, changes) {
            unreported = shadow.committed(&self.engine, changes);
        }
        Ok(Committed { now, actions, commands, record_bytes, unreported, out_of_scope })
    }

    /// Marks commands delivered: they are not sent again after a restart.
    pub fn delivered(&mut self, ids: &[u64]) -> Result<(), Error> {
        Ok(self.store.mark_delivered(ids)?)
    }

    /// Decides and commits a round; the caller then performs its actions and marks the
    /// delivered commands with [`Driver::delivered`].
    pub fn round(&mut self, now: Timestamp, inputs: Vec<Input>) -> Result<Committed, Error> {
        let decided = self.decide(now, inputs);
        self.commit(decided)
    }

    /// Rebuilds the engine from what the store holds (after a failed commit).
    fn reload(&mut self) -> Result<(), Error> {
        let loaded = self.store.load()?;
        let version = loaded.schema_version.unwrap_or(self.schema_version);
        self.engine = Engine::from_records(&loaded.records, version, loaded.high_water)?;
        if let Some(prepare) = self.prepare {
            prepare(&mut self.engine);
        }
        if self.shadow.is_some() {
            self.shadow = Some(Shadow::new(&self.engine, loaded.records));
        }
        Ok(())
    }
}

/// The one pipeline a round's inputs concern, when they all name the same one.
fn single_pipeline(inputs: &[Input]) -> Option<String> {
    let mut names = inputs.iter().map(Input::pipeline);
    let first = names.next()??;
    names.all(|name| name == Some(first)).then(|| first.to_string())
}
