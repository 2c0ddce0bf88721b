//! The embedded store: [`gantry_store::Store`] on one SQLite file, plus the controller's own
//! tables (audit chain, tokens).
//!
//! Durability: WAL with `synchronous=FULL` (a commit survives power loss if the disk honours
//! fsync; reliability.md §2.2), one connection that is the only writer, `BEGIN IMMEDIATE` for
//! every write. The data directory's lock ([`crate::DataDir`]) keeps a second server out; a
//! backup is taken with `VACUUM INTO`, never by copying files.
//!
//! Schema: `PRAGMA user_version` holds [`SCHEMA_VERSION`]. Opening an older database runs the
//! migrations after it in one transaction; opening a newer one is refused with a clear error,
//! never half-read. The engine records' own schema version is kept apart, in `meta`, as the
//! store contract says.

use std::path::Path;

use gantry_store::{
    AuditRecord, Change, Error as StoreError, HighWater, Loaded, OutboxCommand, RecordKey,
    RecordKind, Round, Store,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::Error;
use crate::audit;

/// The version of this file's tables. Bump it with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 1;

/// How long a statement waits for a lock held by a reader's checkpoint before failing: the
/// server is the only writer, so only `gantry server backup` and `gantry audit verify` readers
/// can hold one, briefly.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE records (
         kind TEXT NOT NULL, key TEXT NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (kind, key)
     ) WITHOUT ROWID;
     CREATE TABLE outbox (
         id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, destination TEXT NOT NULL,
         bytes BLOB NOT NULL, delivered INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX outbox_undelivered ON outbox (delivered, id);
     CREATE TABLE audit (
         seq INTEGER PRIMARY KEY, at TEXT NOT NULL, bytes BLOB NOT NULL, hash BLOB NOT NULL
     );
     CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
         BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
     CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
         BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
     CREATE TABLE tokens (
         id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, principal TEXT NOT NULL,
         created_at TEXT NOT NULL, revoked_at TEXT
     );",
];

const META_EPOCH: &str = "epoch";
const META_COMMAND_ID: &str = "command_id";
const META_RECORDS_SCHEMA: &str = "records_schema_version";

/// The SQLite store. Not `Sync`: the server keeps it behind one mutex, so it is the only writer.
pub struct SqliteStore {
    connection: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrating an older schema or refusing
    /// a newer one.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt {
                what: path.display().to_string(),
                reason: format!(
                    "SQLite refused WAL mode (got {mode}); is it on a network file system?"
                ),
            });
        }
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut connection, path)?;
        Ok(SqliteStore { connection })
    }

    /// Opens the database for reading only, beside a running server (WAL lets readers in):
    /// for `gantry audit verify` and backups. Refuses a schema this gantry does not know.
    pub fn open_read_only(path: &Path) -> Result<Connection, Error> {
        if !path.exists() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no database here"),
            });
        }
        let connection =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        let found: u32 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(Error::Corrupt {
                what: path.display().to_string(),
                reason: format!(
                    "it has schema version {found}, older than this gantry's {SCHEMA_VERSION}; \
                     start `gantry server` on it once to migrate it"
                ),
            });
        }
        Ok(connection)
    }

    /// The connection, for the audit verifier and tests reading raw rows.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Appends audit records that go with no engine round (a denied request, a token issued),
    /// in their own transaction; returns the number of the last one.
    pub fn append_audit(&mut self, records: &[AuditRecord]) -> Result<u64, Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last = insert_audit(&transaction, records)?;
        transaction.commit()?;
        Ok(last)
    }

    /// Durably raises the command-id high-water mark to at least `seen` (an agent saw ids a
    /// restored database does not know), so no id is ever reused.
    pub fn raise_command_id(&mut self, seen: u64) -> Result<(), Error> {
        if self.meta(META_COMMAND_ID)?.unwrap_or(0) >= seen {
            return Ok(());
        }
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        set_meta(&transaction, META_COMMAND_ID, seen)?;
        transaction.commit()?;
        Ok(())
    }

    /// The chain's head: the last audit record's number and hash.
    pub fn audit_head(&self) -> Result<(u64, [u8; 32]), Error> {
        audit::head(&self.connection)
    }

    /// Audit records `after < seq <= after + limit`, oldest first.
    pub fn audit_page(&self, after: u64, limit: u32) -> Result<Vec<(u64, AuditRecord)>, Error> {
        let mut statement = self.connection.prepare_cached(
            "SELECT seq, at, bytes FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after as i64, limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, Vec<u8>>(2)?))
        })?;
        let mut page = Vec::new();
        for row in rows {
            let (seq, at, bytes) = row?;
            let at = at.parse().map_err(|error| Error::Corrupt {
                what: format!("audit record {seq}"),
                reason: format!("its time {at:?} does not parse: {error}"),
            })?;
            page.push((seq as u64, AuditRecord { at, bytes }));
        }
        Ok(page)
    }

    /// Writes a consistent copy of the whole database to `to` (which must not exist).
    pub fn backup_to(&self, to: &Path) -> Result<(), Error> {
        backup(&self.connection, to)
    }

    /// Stores a token's hash and principal (JSON); fails if the id or hash exists.
    pub fn insert_token(
        &mut self,
        id: &str,
        hash: &str,
        principal: &str,
        created_at: &str,
        audit: &AuditRecord,
    ) -> Result<(), Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute(
            "INSERT INTO tokens (id, hash, principal, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, hash, principal, created_at],
        )?;
        insert_audit(&transaction, std::slice::from_ref(audit))?;
        transaction.commit()?;
        Ok(())
    }

    /// Revokes a token; returns false if no live token has that id.
    pub fn revoke_token(&mut self, id: &str, at: &str, audit: &AuditRecord) -> Result<bool, Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = transaction.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
        )?;
        if changed > 0 {
            insert_audit(&transaction, std::slice::from_ref(audit))?;
        }
        transaction.commit()?;
        Ok(changed > 0)
    }

    /// Every token: `(id, hash, principal, created_at, revoked_at)`.
    #[allow(clippy::type_complexity, reason = "a row, read once by the token table")]
    pub fn tokens(&self) -> Result<Vec<(String, String, String, String, Option<String>)>, Error> {
        let mut statement = self.connection.prepare(
            "SELECT id, hash, principal, created_at, revoked_at FROM tokens ORDER BY created_at, id",
        )?;
        let rows = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Undelivered outbox commands (the server's queue after a restart).
    pub fn undelivered(&self) -> Result<Vec<OutboxCommand>, Error> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, epoch, destination, bytes FROM outbox WHERE delivered = 0 ORDER BY id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(OutboxCommand {
                id: r.get::<_, i64>(0)? as u64,
                epoch: r.get::<_, i64>(1)? as u64,
                destination: r.get(2)?,
                bytes: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, rusqlite::Error> {
        self.connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get::<_, i64>(0))
            .optional()
            .map(|value| value.map(|v| v as u64))
    }

    fn high_water(&self) -> Result<HighWater, rusqlite::Error> {
        Ok(HighWater {
            epoch: self.meta(META_EPOCH)?.unwrap_or(0),
            command_id: self.meta(META_COMMAND_ID)?.unwrap_or(0),
        })
    }
}

/// A plain SQLite connection, for tools and tests that read rows the store does not expose.
pub type RawConnection = Connection;

/// Opens `path` with no checks and no lock: for tests that play an attacker editing rows.
pub fn raw_connection(path: &Path) -> Result<Connection, Error> {
    Ok(Connection::open(path)?)
}

/// Writes a consistent copy of the database behind `connection` to `to` (which must not
/// exist), with `VACUUM INTO`: safe while a server writes, unlike copying the files.
pub fn backup(connection: &Connection, to: &Path) -> Result<(), Error> {
    if to.exists() {
        return Err(Error::Io {
            path: to.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite"),
        });
    }
    let text = to.to_str().ok_or_else(|| Error::Corrupt {
        what: to.display().to_string(),
        reason: "a backup path must be valid UTF-8".into(),
    })?;
    connection.execute("VACUUM INTO ?1", [text])?;
    Ok(())
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), Error> {
    let found: u32 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        transaction.execute_batch(migration).map_err(|error| Error::Migration {
            path: path.to_path_buf(),
            from: from as u32,
            reason: error.to_string(),
        })?;
    }
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    transaction.commit()?;
    Ok(())
}

fn set_meta(connection: &Connection, key: &str, value: u64) -> Result<(), rusqlite::Error> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        params![key, value as i64],
    )?;
    Ok(())
}

/// Appends records to the chain inside `connection`'s open transaction.
fn insert_audit(connection: &Connection, records: &[AuditRecord]) -> Result<u64, Error> {
    let (mut seq, mut previous) = audit::head(connection)?;
    let mut statement = connection
        .prepare_cached("INSERT INTO audit (seq, at, bytes, hash) VALUES (?1, ?2, ?3, ?4)")?;
    for record in records {
        seq += 1;
        let at = record.at.to_string();
        let hash = audit::chain_hash(&previous, seq, &at, &record.bytes);
        statement.execute(params![seq as i64, at, record.bytes, hash.as_slice()])?;
        previous = hash;
    }
    Ok(seq)
}

impl SqliteStore {
    fn load_inner(&mut self) -> Result<Loaded, Error> {
        let schema_version = self.meta(META_RECORDS_SCHEMA)?.map(|v| v as u32);
        let mut records = std::collections::BTreeMap::new();
        let mut statement = self.connection.prepare("SELECT kind, key, bytes FROM records")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let key: String = row.get(1)?;
            let kind = RecordKind::parse(&kind).ok_or_else(|| Error::Corrupt {
                what: format!("record {kind}:{key}"),
                reason: format!("unknown record kind {kind:?}"),
            })?;
            records.insert(RecordKey::new(kind, key), row.get::<_, Vec<u8>>(2)?);
        }
        drop(rows);
        drop(statement);
        let outbox = self.undelivered()?;
        let high_water = self.high_water()?;
        let (audit_records, _) = self.audit_head()?;
        Ok(Loaded { schema_version, records, outbox, high_water, audit_records })
    }

    fn begin_epoch_inner(&mut self, seen_by_agents: u64) -> Result<u64, Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: u64 = transaction
            .query_row("SELECT value FROM meta WHERE key = ?1", [META_EPOCH], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64;
        let epoch = stored.max(seen_by_agents) + 1;
        set_meta(&transaction, META_EPOCH, epoch)?;
        transaction.commit()?;
        Ok(epoch)
    }

    fn commit_inner(&mut self, round: Round) -> Result<(), Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = transaction.prepare_cached(
                "INSERT INTO records (kind, key, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, key) DO UPDATE SET bytes = excluded.bytes",
            )?;
            let mut delete =
                transaction.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?;
            for change in &round.changes {
                match change {
                    Change::Put { key, bytes } => {
                        put.execute(params![key.kind.as_str(), key.key, bytes])?;
                    }
                    Change::Delete { key } => {
                        delete.execute(params![key.kind.as_str(), key.key])?;
                    }
                }
            }
            let mut outbox = transaction.prepare_cached(
                "INSERT INTO outbox (id, epoch, destination, bytes, delivered)
                 VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch,
                     destination = excluded.destination, bytes = excluded.bytes, delivered = 0",
            )?;
            for command in &round.outbox {
                outbox.execute(params![
                    command.id as i64,
                    command.epoch as i64,
                    command.destination,
                    command.bytes
                ])?;
            }
        }
        insert_audit(&transaction, &round.audit)?;
        set_meta(&transaction, META_EPOCH, round.high_water.epoch)?;
        let highest_sent = round.outbox.iter().map(|c| c.id).max().unwrap_or(0);
        set_meta(&transaction, META_COMMAND_ID, round.high_water.command_id.max(highest_sent))?;
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![META_RECORDS_SCHEMA, round.schema_version as i64],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn mark_delivered_inner(&mut self, ids: &[u64]) -> Result<(), Error> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            // Delivered commands are forgotten: the engine's records say what is outstanding.
            let mut statement = transaction.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                statement.execute([*id as i64])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.load_inner().map_err(Error::into_store)
    }

    fn begin_epoch(&mut self, seen_by_agents: u64) -> Result<u64, StoreError> {
        self.begin_epoch_inner(seen_by_agents).map_err(Error::into_store)
    }

    fn commit(&mut self, round: Round) -> Result<(), StoreError> {
        self.commit_inner(round).map_err(Error::into_store)
    }

    fn mark_delivered(&mut self, ids: &[u64]) -> Result<(), StoreError> {
        self.mark_delivered_inner(ids).map_err(Error::into_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_store_contract_across_reopens() {
        let temp = tempfile::tempdir().unwrap();
        let counter = std::cell::Cell::new(0);
        let path_of = |n: u32| temp.path().join(format!("store-{n}.db"));
        gantry_store::conformance::check(
            || {
                counter.set(counter.get() + 1);
                SqliteStore::open(&path_of(counter.get())).unwrap()
            },
            |store| {
                drop(store);
                SqliteStore::open(&path_of(counter.get())).unwrap()
            },
        );
    }

    #[test]
    fn refuses_a_database_from_a_newer_server() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("gantry.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let error = SqliteStore::open(&path).err().expect("refused");
        let text = error.to_string();
        assert!(text.contains("schema version 99") && text.contains("up to 1"), "{text}");
    }

    #[test]
    fn a_full_disk_fails_the_commit_and_changes_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&temp.path().join("gantry.db")).unwrap();
        store.commit(gantry_store::conformance::round(1, &[("a", b"one")], &[(1, 1)])).unwrap();
        let before = store.load().unwrap();
        // SQLite's own page limit stands in for a full disk: the same SQLITE_FULL error.
        let pages: i64 = store.connection.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        store.connection.pragma_update(None, "max_page_count", pages).unwrap();
        let big = vec![7u8; 1 << 20];
        let error = store
            .commit(gantry_store::conformance::round(1, &[("b", &big)], &[(2, 1)]))
            .unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
        assert!(error.to_string().contains("full"), "{error}");
        assert_eq!(store.load().unwrap(), before, "nothing of the failed round was kept");
    }

    #[test]
    fn audit_rows_cannot_be_updated_or_deleted() {
        let temp = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&temp.path().join("gantry.db")).unwrap();
        store.commit(gantry_store::conformance::round(1, &[], &[])).unwrap();
        for sql in ["UPDATE audit SET bytes = x'00'", "DELETE FROM audit"] {
            let error = store.connection.execute(sql, []).unwrap_err();
            assert!(error.to_string().contains("append-only"), "{sql}: {error}");
        }
    }
}
