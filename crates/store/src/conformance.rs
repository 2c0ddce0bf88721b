//! The store contract as a test any implementation runs against itself:
//! `gantry_store::conformance::check(new_store, reopen)`, where `reopen` closes a store and
//! opens the same data again (for the in-memory store, it hands the same value back). Panics
//! with what broke.

use crate::{AuditRecord, Change, HighWater, OutboxCommand, RecordKey, RecordKind, Round, Store};

/// A round that puts pipeline records `(key, bytes)` and sends commands `(id, epoch)`.
pub fn round(schema_version: u32, puts: &[(&str, &[u8])], commands: &[(u64, u64)]) -> Round {
    Round {
        schema_version,
        changes: puts
            .iter()
            .map(|(key, bytes)| Change::Put {
                key: RecordKey::new(RecordKind::Pipeline, *key),
                bytes: bytes.to_vec(),
            })
            .collect(),
        outbox: commands
            .iter()
            .map(|(id, epoch)| OutboxCommand {
                id: *id,
                epoch: *epoch,
                destination: format!("box-{id}"),
                bytes: format!("command {id} epoch {epoch}").into_bytes(),
            })
            .collect(),
        audit: vec![AuditRecord {
            at: "2026-11-02T09:00:00Z".parse().expect("a valid instant"),
            bytes: b"decided".to_vec(),
        }],
        high_water: HighWater {
            epoch: commands.iter().map(|(_, epoch)| *epoch).max().unwrap_or(0),
            command_id: commands.iter().map(|(id, _)| *id).max().unwrap_or(0),
        },
    }
}

/// Runs every clause of the contract on fresh stores from `new`.
pub fn check<S: Store>(new: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let pipeline = |key: &str| RecordKey::new(RecordKind::Pipeline, key);

    // A fresh store is empty and has no schema version.
    let mut store = new();
    let loaded = store.load().expect("load");
    assert_eq!(loaded.schema_version, None, "a fresh store has no schema version");
    assert!(loaded.records.is_empty() && loaded.outbox.is_empty());
    assert_eq!(loaded.high_water, HighWater::default());

    // A round survives a reopen whole.
    store.commit(round(3, &[("a", b"one"), ("b", b"two")], &[(5, 1), (6, 1)])).expect("commit");
    let mut store = reopen(store);
    let loaded = store.load().expect("load");
    assert_eq!(loaded.schema_version, Some(3));
    assert_eq!(loaded.records.get(&pipeline("a")).map(Vec::as_slice), Some(&b"one"[..]));
    assert_eq!(loaded.records.get(&pipeline("b")).map(Vec::as_slice), Some(&b"two"[..]));
    let ids: Vec<u64> = loaded.outbox.iter().map(|c| c.id).collect();
    assert_eq!(ids, [5, 6], "the undelivered outbox, in id order");
    assert_eq!(loaded.outbox[0].destination, "box-5");
    assert_eq!(loaded.audit_records, 1);
    assert_eq!(loaded.high_water, HighWater { epoch: 1, command_id: 6 });

    // Puts replace whole records, deletes remove them; a re-sent command replaces its earlier
    // copy and is undelivered again; delivered commands are not loaded.
    store.mark_delivered(&[5, 6, 99]).expect("mark delivered");
    let mut next = round(3, &[("a", b"uno")], &[(6, 2)]);
    next.changes.push(Change::Delete { key: pipeline("b") });
    next.changes.push(Change::Delete { key: pipeline("never-written") });
    next.high_water = HighWater { epoch: 2, command_id: 2 };
    store.commit(next).expect("commit");
    let mut store = reopen(store);
    let loaded = store.load().expect("load");
    assert_eq!(loaded.records.get(&pipeline("a")).map(Vec::as_slice), Some(&b"uno"[..]));
    assert!(!loaded.records.contains_key(&pipeline("b")), "deleted");
    assert_eq!(loaded.outbox.len(), 1);
    assert_eq!((loaded.outbox[0].id, loaded.outbox[0].epoch), (6, 2), "the re-send replaced it");
    assert_eq!(loaded.audit_records, 2);
    assert_eq!(
        loaded.high_water,
        HighWater { epoch: 2, command_id: 6 },
        "high-water marks never go down"
    );

    // A new epoch passes both what is stored and what agents report, durably.
    assert_eq!(store.begin_epoch(0).expect("begin"), 3);
    assert_eq!(store.begin_epoch(10).expect("begin"), 11, "an agent saw epoch 10");
    let mut store = reopen(store);
    assert_eq!(store.load().expect("load").high_water.epoch, 11);
    assert_eq!(store.begin_epoch(0).expect("begin"), 12);
}
