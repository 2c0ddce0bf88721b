//! The audit log: append-only, hash-chained, with signed checkpoints kept outside the database.
//!
//! Every audit record is a row `(seq, at, bytes, hash)` written in the same transaction as the
//! change it records. Its hash chains it to the one before:
//!
//! ```text
//! hash(n) = SHA-256("gantry-audit-v1\0" || hash(n-1) || n as u64 BE
//!                   || len(at) as u32 BE || at || len(bytes) as u64 BE || bytes)
//! hash(0) = 32 zero bytes
//! ```
//!
//! so editing, deleting or swapping a record breaks every hash after it. An attacker who can
//! write the database can also recompute the whole chain, or cut its tail: against that, the
//! server signs the chain's head (`seq`, `hash`) with its ed25519 audit key every
//! [`CHECKPOINT_INTERVAL`] and appends it to a checkpoint file outside the data directory.
//! [`verify`] recomputes the chain and checks every checkpoint against it: a recomputed chain
//! no longer matches a signed head, and a truncated one no longer reaches it.
//!
//! The database also refuses `UPDATE` and `DELETE` on the audit table with triggers, so a bug in
//! the server cannot rewrite history by accident; the chain and the checkpoints are what catch
//! it done on purpose.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, Verifier};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// How often the server signs and checkpoints the chain's head (when it moved). The records
/// since the last checkpoint are what a recomputed chain could hide: a few seconds of history.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

const CHAIN_DOMAIN: &[u8] = b"gantry-audit-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"gantry-audit-checkpoint-v1\0";

/// The hash of the chain before its first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of record `seq` following `previous`.
pub fn chain_hash(previous: &[u8; 32], seq: u64, at: &str, bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(CHAIN_DOMAIN);
    hasher.update(previous);
    hasher.update(seq.to_be_bytes());
    hasher.update((at.len() as u32).to_be_bytes());
    hasher.update(at.as_bytes());
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
    hasher.finalize().into()
}

/// A signed head of the chain: "record `seq` has hash `hash`", one JSON line in the
/// checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// Hex of the record's chain hash.
    pub hash: String,
    /// The wall clock when it was signed (informational; not signed over).
    pub at: String,
    /// Base64 of the ed25519 public key that signed it.
    pub key: String,
    /// Base64 of the signature over the domain, `seq` and `hash`.
    pub signature: String,
}

fn checkpoint_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut message = CHECKPOINT_DOMAIN.to_vec();
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(hash);
    message
}

/// The key that signs checkpoints, kept in the data directory.
pub struct AuditKey {
    signing: ed25519_dalek::SigningKey,
}

impl AuditKey {
    /// Loads the key at `path`, or creates it (0600) from the system's random source.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, Error> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        match fs::read(path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| Error::Corrupt {
                    what: path.display().to_string(),
                    reason: "an audit signing key is 32 bytes".into(),
                })?;
                Ok(AuditKey { signing: ed25519_dalek::SigningKey::from_bytes(&seed) })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let seed = crate::random_bytes()?;
                crate::data_dir::write_secret_once(path, &seed)?;
                Ok(AuditKey { signing: ed25519_dalek::SigningKey::from_bytes(&seed) })
            }
            Err(error) => Err(io(error)),
        }
    }

    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.signing.verifying_key().as_bytes())
    }

    pub fn sign(&self, seq: u64, hash: &[u8; 32], at: String) -> Checkpoint {
        let signature = self.signing.sign(&checkpoint_message(seq, hash));
        Checkpoint {
            seq,
            hash: hex::encode(hash),
            at,
            key: self.public_base64(),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// The chain's head in `connection`: the last record's number and hash (0 and [`GENESIS`] when
/// empty).
pub fn head(connection: &Connection) -> Result<(u64, [u8; 32]), Error> {
    let row = connection
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map(Some)
        .or_else(|error| match error {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })?;
    match row {
        None => Ok((0, GENESIS)),
        Some((seq, hash)) => Ok((seq as u64, to_hash(&hash, seq as u64)?)),
    }
}

fn to_hash(bytes: &[u8], seq: u64) -> Result<[u8; 32], Error> {
    bytes.try_into().map_err(|_| Error::Corrupt {
        what: format!("audit record {seq}"),
        reason: "its hash is not 32 bytes".into(),
    })
}

/// Appends a checkpoint line to `path` and syncs it.
pub fn append_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    let mut line = serde_json::to_string(checkpoint).expect("a checkpoint serializes");
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The last checkpoint in `path`, if the file exists and has one.
pub fn last_checkpoint(path: &Path) -> Result<Option<Checkpoint>, Error> {
    Ok(read_checkpoints(path)?.pop())
}

fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, Error> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| Error::Corrupt {
                what: format!("{}:{}", path.display(), index + 1),
                reason: format!("not a checkpoint: {error}"),
            })
        })
        .collect()
}

/// What [`verify`] found in a sound log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: usize,
    /// The newest checkpointed record; records after it are chained but not yet signed.
    pub checkpointed_through: u64,
}

/// Why the audit log does not verify. Each names the first record or checkpoint at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Tampered {
    #[error("audit record numbers jump from {previous} to {next}: records were deleted or moved")]
    Gap { previous: u64, next: u64 },
    #[error(
        "audit record {seq} does not match its hash: it, or a record before it, was edited, \
         swapped or deleted"
    )]
    HashMismatch { seq: u64 },
    #[error(
        "checkpoint {line} signs record {seq}, but the database ends at record {last}: the log was \
         truncated"
    )]
    Truncated { line: usize, seq: u64, last: u64 },
    #[error(
        "checkpoint {line} signs record {seq} with a different hash: the chain was rewritten \
         and recomputed"
    )]
    CheckpointMismatch { line: usize, seq: u64 },
    #[error("checkpoint {line} has a bad signature or a key other than {expected}")]
    BadSignature { line: usize, expected: String },
    #[error("checkpoint {line} signs record {seq}, older than checkpoint {line_before}")]
    CheckpointsOutOfOrder { line: usize, seq: u64, line_before: usize },
}

/// Recomputes the chain in `connection` and checks every checkpoint in `checkpoints` against
/// it, with `public_key` (base64) as the only key allowed to sign them (when given).
pub fn verify(
    connection: &Connection,
    checkpoints: &Path,
    public_key: Option<&str>,
) -> Result<Result<Verified, Tampered>, Error> {
    let signed = read_checkpoints(checkpoints)?;
    let mut wanted = signed.iter().enumerate().peekable();
    let expected_key =
        public_key.map(str::to_string).or_else(|| signed.first().map(|c| c.key.clone()));
    let mut statement =
        connection.prepare("SELECT seq, at, bytes, hash FROM audit ORDER BY seq")?;
    let mut rows = statement.query([])?;
    let mut previous = GENESIS;
    let mut last = 0u64;
    let mut line_before = 0usize;
    let mut seq_before = 0u64;
    // Checkpoints are checked in order as the chain passes their record.
    let mut check_checkpoints = |seq: u64, hash: &[u8; 32]| -> Result<(), Tampered> {
        while let Some(&(index, checkpoint)) = wanted.peek() {
            if checkpoint.seq > seq {
                break;
            }
            let line = index + 1;
            if checkpoint.seq < seq_before {
                return Err(Tampered::CheckpointsOutOfOrder {
                    line,
                    seq: checkpoint.seq,
                    line_before,
                });
            }
            check_signature(checkpoint, line, expected_key.as_deref())?;
            if checkpoint.seq == seq && checkpoint.hash != hex::encode(hash) {
                return Err(Tampered::CheckpointMismatch { line, seq });
            }
            if checkpoint.seq < seq {
                // Its record was passed without a match: it was never in this chain.
                return Err(Tampered::CheckpointMismatch { line, seq: checkpoint.seq });
            }
            line_before = line;
            seq_before = checkpoint.seq;
            wanted.next();
        }
        Ok(())
    };
    // A checkpoint of the empty chain (seq 0) is checked before the first record.
    if let Err(tampered) = check_checkpoints(0, &GENESIS) {
        return Ok(Err(tampered));
    }
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let at: String = row.get(1)?;
        let bytes: Vec<u8> = row.get(2)?;
        let stored: Vec<u8> = row.get(3)?;
        if seq != last + 1 {
            return Ok(Err(Tampered::Gap { previous: last, next: seq }));
        }
        let hash = chain_hash(&previous, seq, &at, &bytes);
        if stored != hash {
            return Ok(Err(Tampered::HashMismatch { seq }));
        }
        if let Err(tampered) = check_checkpoints(seq, &hash) {
            return Ok(Err(tampered));
        }
        previous = hash;
        last = seq;
    }
    if let Some((index, checkpoint)) = wanted.next() {
        return Ok(Err(Tampered::Truncated { line: index + 1, seq: checkpoint.seq, last }));
    }
    Ok(Ok(Verified {
        records: last,
        checkpoints: signed.len(),
        checkpointed_through: signed.last().map_or(0, |c| c.seq),
    }))
}

fn check_signature(
    checkpoint: &Checkpoint,
    line: usize,
    expected_key: Option<&str>,
) -> Result<(), Tampered> {
    let bad = || Tampered::BadSignature {
        line,
        expected: expected_key.unwrap_or("the first checkpoint's key").to_string(),
    };
    if expected_key.is_some_and(|key| key != checkpoint.key) {
        return Err(bad());
    }
    let key: [u8; 32] = STANDARD
        .decode(&checkpoint.key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad())?;
    let signature: [u8; 64] = STANDARD
        .decode(&checkpoint.signature)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    let hash: [u8; 32] = hex::decode(&checkpoint.hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    key.verify(
        &checkpoint_message(checkpoint.seq, &hash),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| bad())
}

/// Verifies the audit log of the data directory `data` against `checkpoints` (default: the
/// data directory's sibling), reading beside a running server.
pub fn verify_data_dir(
    data: &Path,
    checkpoints: Option<&Path>,
    public_key: Option<&str>,
) -> Result<Result<Verified, Tampered>, Error> {
    let connection = crate::SqliteStore::open_read_only(&data.join("gantry.db"))?;
    let default = default_checkpoints(data);
    verify(&connection, checkpoints.unwrap_or(&default), public_key)
}

/// The checkpoint file a data directory uses unless told otherwise.
pub fn default_checkpoints(data: &Path) -> PathBuf {
    crate::data_dir::DataDir::default_checkpoints(data)
}

#[cfg(test)]
mod tests {
    use gantry_store::{AuditRecord, Round, Store};

    use super::*;
    use crate::SqliteStore;

    /// What an attacker with write access to the database does, with the append-only triggers
    /// dropped first.
    #[derive(Clone, Copy, Debug)]
    enum Tamper {
        Nothing,
        Edit,
        Delete,
        Swap,
        Truncate,
        RecomputeChain,
        ForgeCheckpoint,
    }

    fn tamper(connection: &Connection, checkpoints: &Path, how: Tamper) {
        connection
            .execute_batch(
                "DROP TRIGGER audit_is_append_only_update; DROP TRIGGER audit_is_append_only_delete;",
            )
            .unwrap();
        match how {
            Tamper::Nothing => {}
            Tamper::Edit => {
                connection.execute("UPDATE audit SET bytes = x'7b7d' WHERE seq = 3", []).unwrap();
            }
            Tamper::Delete => {
                connection.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
            }
            Tamper::Swap => {
                connection
                    .execute_batch(
                        "UPDATE audit SET seq = -2 WHERE seq = 2;
                         UPDATE audit SET seq = 2 WHERE seq = 3;
                         UPDATE audit SET seq = 3 WHERE seq = -2;",
                    )
                    .unwrap();
            }
            Tamper::Truncate => {
                connection.execute("DELETE FROM audit WHERE seq >= 4", []).unwrap();
            }
            Tamper::RecomputeChain => {
                connection.execute("UPDATE audit SET bytes = x'7b7d' WHERE seq = 2", []).unwrap();
                let mut previous = GENESIS;
                for seq in 1..=5u64 {
                    let (at, bytes): (String, Vec<u8>) = connection
                        .query_row(
                            "SELECT at, bytes FROM audit WHERE seq = ?1",
                            [seq as i64],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .unwrap();
                    let hash = chain_hash(&previous, seq, &at, &bytes);
                    connection
                        .execute(
                            "UPDATE audit SET hash = ?2 WHERE seq = ?1",
                            rusqlite::params![seq as i64, hash.as_slice()],
                        )
                        .unwrap();
                    previous = hash;
                }
            }
            Tamper::ForgeCheckpoint => {
                // A checkpoint signed by a key of the attacker's, over a head they made up.
                let forger = AuditKey { signing: ed25519_dalek::SigningKey::from_bytes(&[9; 32]) };
                append_checkpoint(checkpoints, &forger.sign(5, &[1; 32], "now".into())).unwrap();
            }
        }
    }

    fn check(how: Tamper, expected: Result<u64, Tampered>) {
        let temp = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&temp.path().join("gantry.db")).unwrap();
        let at = "2026-12-01T10:00:00Z".parse().unwrap();
        let audit = (1..=5)
            .map(|n| AuditRecord { at, bytes: format!("{{\"decision\":{n}}}").into_bytes() })
            .collect();
        store.commit(Round { schema_version: 1, audit, ..Round::default() }).unwrap();
        let checkpoints = temp.path().join("checkpoints");
        let key = AuditKey { signing: ed25519_dalek::SigningKey::from_bytes(&[3; 32]) };
        let (seq, hash) = store.audit_head().unwrap();
        append_checkpoint(&checkpoints, &key.sign(seq, &hash, "then".into())).unwrap();

        tamper(store.connection(), &checkpoints, how);
        let got = verify(store.connection(), &checkpoints, Some(&key.public_base64()))
            .unwrap()
            .map(|verified| verified.records);
        assert_eq!(got, expected, "{how:?}");
    }

    #[test]
    fn verify_catches_every_kind_of_tampering() {
        check(Tamper::Nothing, Ok(5));
        check(Tamper::Edit, Err(Tampered::HashMismatch { seq: 3 }));
        check(Tamper::Delete, Err(Tampered::Gap { previous: 2, next: 4 }));
        check(Tamper::Swap, Err(Tampered::HashMismatch { seq: 2 }));
        check(Tamper::Truncate, Err(Tampered::Truncated { line: 1, seq: 5, last: 3 }));
        check(Tamper::RecomputeChain, Err(Tampered::CheckpointMismatch { line: 1, seq: 5 }));
        check(
            Tamper::ForgeCheckpoint,
            Err(Tampered::BadSignature { line: 2, expected: key_of(3) }),
        );
    }

    fn key_of(seed: u8) -> String {
        AuditKey { signing: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]) }.public_base64()
    }
}
