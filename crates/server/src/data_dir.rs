//! The controller's data directory: where its database, its audit signing key and its lock live,
//! and the lock that keeps a second server out.
//!
//! ```text
//! <data>/gantry.lock           held (flock, exclusive) for as long as a server runs
//! <data>/gantry.db             SQLite: records, outbox, audit chain, tokens (+ -wal, -shm)
//! <data>/audit-signing.key     ed25519 seed that signs audit checkpoints (0600)
//! <data>/bootstrap-admin.token the first admin token, written once (0600)
//! ```
//!
//! Audit checkpoints go to a file *outside* the data directory (by default its sibling
//! `<data>.audit-checkpoints`), so whoever can rewrite the database does not also rewrite the
//! record of what it held.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// An open data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Held open: the flock lives as long as this file handle.
    _lock: fs::File,
}

impl DataDir {
    /// Creates the directory if needed (mode 0700) and takes its lock, or fails at once if
    /// another process holds it.
    pub fn open(root: &Path) -> Result<DataDir, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(root).map_err(io(root))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        let lock_path = root.join("gantry.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(Error::Io { path: lock_path, source });
            }
        }
        let root = fs::canonicalize(root).map_err(io(root))?;
        Ok(DataDir { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("gantry.db")
    }

    pub fn audit_key(&self) -> PathBuf {
        self.root.join("audit-signing.key")
    }

    pub fn bootstrap_token(&self) -> PathBuf {
        self.root.join("bootstrap-admin.token")
    }

    /// The default checkpoint file: beside the data directory, not in it.
    pub fn default_checkpoints(root: &Path) -> PathBuf {
        let mut name = root.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "data".into());
        name.push(".audit-checkpoints");
        root.with_file_name(name)
    }
}

/// Writes `bytes` to a new file only its owner can read; fails if the file exists, so a secret
/// is written once and never replaced behind its owner's back.
pub fn write_secret_once(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_cannot_open_the_same_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let first = DataDir::open(&dir).unwrap();
        let error = DataDir::open(&dir).unwrap_err();
        assert!(matches!(error, Error::Locked { .. }), "{error}");
        assert!(error.to_string().contains("another gantry server"), "{error}");
        drop(first);
        DataDir::open(&dir).expect("the lock goes with the process that held it");
    }

    #[test]
    fn secrets_are_written_once_and_private() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("secret");
        write_secret_once(&path, b"one").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(write_secret_once(&path, b"two").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn checkpoints_live_outside_the_data_directory() {
        let path = DataDir::default_checkpoints(Path::new("/var/lib/gantry"));
        assert_eq!(path, Path::new("/var/lib/gantry.audit-checkpoints"));
    }
}
