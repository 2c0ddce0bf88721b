//! "Sometimes" coverage: counters proving a batch of seeds really reached each interesting
//! branch (rollback executed, blocker hit, override expired, capacity floor reached exactly,
//! restart mid-deployment, ...), in the spirit of Antithesis' `assert_sometimes!`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// What a default batch must reach at least once; `gantry simulate` reports any it missed.
pub const REQUIRED: [&str; 15] = [
    "rollback executed",
    "blocker hit",
    "override lifted a blocker",
    "override expired",
    "capacity floor reached exactly",
    "restart mid-deployment",
    "restart with commanded boxes unknown until they report",
    "stale-epoch command rejected",
    "aggregate rollback across pipelines",
    "roll back everywhere",
    "crash before commit",
    "crash after commit, before delivery",
    "crash in the middle of delivery",
    "outbox re-sent after a restart",
    "command to a box shared by pipelines",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub counts: BTreeMap<String, u64>,
}

impl Coverage {
    pub fn hit(&mut self, what: &str) {
        *self.counts.entry(what.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Coverage) {
        for (what, count) in &other.counts {
            *self.counts.entry(what.clone()).or_default() += count;
        }
    }

    /// The required counters never hit.
    pub fn missing(&self) -> Vec<&'static str> {
        REQUIRED.iter().copied().filter(|what| !self.counts.contains_key(*what)).collect()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, count) in &self.counts {
            writeln!(f, "  {count:>8}  {what}")?;
        }
        Ok(())
    }
}
