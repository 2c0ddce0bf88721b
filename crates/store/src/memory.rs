//! The in-memory store: the contract of [`Store`] over maps of *serialized bytes*, so whatever
//! a round did not commit is really lost when the controller that held the engine goes away.
//! The simulator and the tests keep one across simulated crashes and hand it to the restarted
//! controller; it also counts what it writes, for the benchmarks.

use std::collections::BTreeMap;

use crate::{Change, Error, HighWater, Loaded, OutboxCommand, RecordKey, Round, Store};

#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    schema_version: Option<u32>,
    records: BTreeMap<RecordKey, Vec<u8>>,
    /// Undelivered commands by id.
    outbox: BTreeMap<u64, OutboxCommand>,
    high_water: HighWater,
    audit: Vec<crate::AuditRecord>,
    /// Commits still to refuse, as a full disk would.
    failing_commits: u32,
    stats: Stats,
}

/// What a [`MemoryStore`] has been asked to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub commits: u64,
    /// Bytes of records put, summed over every commit.
    pub record_bytes: u64,
    /// Records put or deleted.
    pub record_writes: u64,
    /// Bytes of outbox commands and audit records.
    pub outbox_bytes: u64,
    pub audit_bytes: u64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Refuses the next `count` commits with [`Error::Unavailable`], changing nothing.
    pub fn fail_commits(&mut self, count: u32) {
        self.failing_commits = count;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The stored bytes of one record.
    pub fn record(&self, key: &RecordKey) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    /// Every stored record.
    pub fn records(&self) -> &BTreeMap<RecordKey, Vec<u8>> {
        &self.records
    }

    /// Every audit record, oldest first.
    pub fn audit(&self) -> &[crate::AuditRecord] {
        &self.audit
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Loaded, Error> {
        Ok(Loaded {
            schema_version: self.schema_version,
            records: self.records.clone(),
            outbox: self.outbox.values().cloned().collect(),
            high_water: self.high_water,
            audit_records: self.audit.len() as u64,
        })
    }

    fn begin_epoch(&mut self, seen_by_agents: u64) -> Result<u64, Error> {
        let epoch = self.high_water.epoch.max(seen_by_agents) + 1;
        self.high_water.epoch = epoch;
        Ok(epoch)
    }

    fn commit(&mut self, round: Round) -> Result<(), Error> {
        if self.failing_commits > 0 {
            self.failing_commits -= 1;
            return Err(Error::Unavailable { reason: "no space left on device".into() });
        }
        // Nothing below can fail, so the round applies whole.
        self.stats.commits += 1;
        self.schema_version = Some(round.schema_version);
        for change in round.changes {
            self.stats.record_writes += 1;
            match change {
                Change::Put { key, bytes } => {
                    self.stats.record_bytes += bytes.len() as u64;
                    self.records.insert(key, bytes);
                }
                Change::Delete { key } => {
                    self.records.remove(&key);
                }
            }
        }
        for command in round.outbox {
            self.stats.outbox_bytes += command.bytes.len() as u64;
            self.outbox.insert(command.id, command);
        }
        for record in round.audit {
            self.stats.audit_bytes += record.bytes.len() as u64;
            self.audit.push(record);
        }
        self.high_water = self.high_water.max(round.high_water);
        Ok(())
    }

    fn mark_delivered(&mut self, ids: &[u64]) -> Result<(), Error> {
        for id in ids {
            self.outbox.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_store_contract() {
        crate::conformance::check(MemoryStore::new, |store| store);
    }

    #[test]
    fn a_failed_commit_changes_nothing() {
        let mut store = MemoryStore::new();
        store.fail_commits(1);
        let round = crate::conformance::round(1, &[("a", b"1")], &[(7, 1)]);
        assert!(matches!(store.commit(round.clone()), Err(Error::Unavailable { .. })));
        assert_eq!(store.load().unwrap(), Loaded::default());
        store.commit(round).unwrap();
        assert_eq!(store.load().unwrap().outbox.len(), 1);
    }
}
