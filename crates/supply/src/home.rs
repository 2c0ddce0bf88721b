//! A Gantry home: the one directory that holds a builder's or verifier's supply-chain state,
//! and the rules for reading it (the keyring a trust root signed counts, nothing else).
//!
//! ```text
//! store/               content-addressed artifacts (see crate::store)
//! keys/                build keys: trusted-keys.json (public) and <keyid>.key (private),
//!                      trust-root.key; hidden from every build
//! team-keyring.json    team members who may approve, with their public keys
//! reviews.jsonl        approvals, signed or imported from forge webhooks
//! blocks.json          content blocks in force and their audit trail
//! poller.json          the last mainline head seen per source
//! published-blocks.json the block list the controller publishes for hosts (+ .dsse, signed)
//! cache/ work/         mirrors of remote repositories; build scratch space
//! ```
//!
//! The root is made absolute when the home is opened: every path derived from it — above all
//! the key directory a build must not see — is absolute, so hiding it cannot depend on the
//! directory a sandboxed process starts in.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::blocks::BlockList;
use crate::keys::{KeyDirectory, signed_path};
use crate::review::{KEYRING_PAYLOAD_TYPE, Keyring, ReviewBook};
use crate::source::Repository;
use crate::store::Store;

/// The home's directory when none is named (relative to the working directory, made absolute
/// when opened).
pub const DEFAULT_HOME_DIR: &str = ".gantry";

/// The environment variable naming the home when no `--home` is given.
pub const HOME_ENV: &str = "GANTRY_HOME";

/// The home a command was pointed at: `flag` (its `--home`), else [`HOME_ENV`]; `None` when
/// neither names one (the CLI then takes [`DEFAULT_HOME_DIR`]; the controller builds nothing).
pub fn configured_root(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os(HOME_ENV).map(PathBuf::from))
}

/// One Gantry home directory. Cheap to clone; every read goes to the files, so no caller can
/// keep a stale copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Opens the home at `root` (created lazily by the writes that need it), made absolute.
    pub fn new(root: impl AsRef<Path>) -> Result<Home, Error> {
        let root = root.as_ref();
        let absolute = std::path::absolute(root).map_err(|source| Error::io(root, source))?;
        Ok(Home { root: absolute })
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> Store {
        Store::new(self.root.join("store"))
    }

    /// The build keys and the trust root: never visible to a build.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn keys(&self) -> KeyDirectory {
        KeyDirectory::new(self.keys_dir())
    }

    /// Mirrors of remote repositories.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Build scratch space: one fresh directory per build, removed afterwards.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The poller's memory of the last head seen per source.
    pub fn poller_path(&self) -> PathBuf {
        self.root.join("poller.json")
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.root.join("team-keyring.json")
    }

    pub fn reviews_path(&self) -> PathBuf {
        self.root.join("reviews.jsonl")
    }

    pub fn blocks_path(&self) -> PathBuf {
        self.root.join("blocks.json")
    }

    /// Where the controller publishes the block list for hosts (signed copy at `<path>.dsse`,
    /// see [`crate::operations::publish_blocks`]).
    pub fn published_blocks_path(&self) -> PathBuf {
        self.root.join("published-blocks.json")
    }

    /// Every path of this home a build may not see: the keys (build keys and trust root) and
    /// the state that decides what is trusted (keyring, reviews, blocks).
    pub fn hidden_from_builds(&self) -> Vec<PathBuf> {
        vec![self.keys_dir()]
    }

    /// The team keyring. Once the home has a trust root, only the keyring it signed counts.
    pub fn keyring(&self) -> Result<Keyring, Error> {
        let path = self.keyring_path();
        match self.keys().trust_root_key()? {
            Some(root) if path.exists() || signed_path(&path).exists() => {
                Keyring::read_signed(&path, &root).map_err(|error| {
                    Error::Review(format!(
                        "{error}; the team keyring must be signed by this home's trust root: sign \
                         it with `gantry review member sign` ({})",
                        path.display()
                    ))
                })
            }
            _ if path.exists() => Keyring::read(&path),
            _ => Ok(Keyring::default()),
        }
    }

    /// Writes the team keyring, signed by the trust root when the home has one.
    pub fn write_keyring(&self, keyring: &Keyring) -> Result<(), Error> {
        keyring.write(&self.keyring_path())?;
        if self.keys().trust_root_key()?.is_some() {
            self.keys().sign_document(
                &self.keyring_path(),
                &keyring.to_bytes(),
                KEYRING_PAYLOAD_TYPE,
            )?;
        }
        Ok(())
    }

    /// The review book, read against the keyring. Approvals that do not check out are left in
    /// [`ReviewBook::rejected`] for the caller to report.
    pub fn reviews(&self) -> Result<ReviewBook, Error> {
        ReviewBook::open(&self.reviews_path(), self.keyring()?)
    }

    pub fn blocks(&self) -> Result<BlockList, Error> {
        BlockList::open(&self.blocks_path())
    }

    /// Opens a source, mirroring a remote one under [`Home::cache_dir`].
    pub fn open_repository(&self, source: &gantry_model::Source) -> Result<Repository, Error> {
        Repository::open(source, &self.cache_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_home_is_made_absolute() {
        let home = Home::new(DEFAULT_HOME_DIR).unwrap();
        assert!(home.root().is_absolute(), "{}", home.root().display());
        for hidden in home.hidden_from_builds() {
            assert!(hidden.is_absolute(), "{}", hidden.display());
        }
        assert!(home.root().ends_with(DEFAULT_HOME_DIR));
    }
}
