//! The artifact store: a content-addressed directory on disk.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                      the package (tar + zstd), read-only
//! <root>/artifacts/<hex>/manifest.json           its manifest
//! <root>/artifacts/<hex>/attestation.dsse.json   the signed in-toto statement (DSSE envelope)
//! <root>/artifacts/<hex>/build.log               the build's captured output
//! ```
//!
//! Writing is exclusive: the package is hard-linked into place, which fails when the digest is
//! already there, so nothing is ever overwritten (a write interrupted before its metadata is
//! finished by the next one). Reading re-hashes the package and refuses it when the bytes no
//! longer match their name. [`Store::export`] writes the files hosts receive ([`Exported`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::artifact::Manifest;
use crate::dsse::Envelope;
use crate::{Digest, Error};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const ATTESTATION_FILE: &str = "attestation.dsse.json";
pub const BUILD_LOG_FILE: &str = "build.log";
/// The shortest digest prefix that names an artifact on the command line; shorter ones collide
/// as soon as a store holds a few thousand artifacts.
pub const MIN_DIGEST_PREFIX: usize = 6;
/// How far back [`Store::earlier_commits`] follows a pipeline's artifacts: years of builds, and
/// a bound on a baseline cycle that a hand-edited store could contain.
pub const MAX_ARTIFACT_CHAIN: usize = 100_000;

/// A content-addressed artifact store rooted in a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// An artifact's stored metadata.
#[derive(Clone, Debug)]
pub struct StoredArtifact {
    pub digest: Digest,
    pub manifest: Manifest,
    /// The manifest exactly as stored, whose digest the provenance names.
    pub manifest_bytes: Vec<u8>,
    pub envelope: Envelope,
    pub package_path: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn package_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn metadata_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("artifacts").join(digest.hex())
    }

    /// Stores a package file (moved in) with its manifest, attestation and build log. Refuses a
    /// digest that is already stored, and a package whose bytes do not match the manifest.
    pub fn put(
        &self,
        package: &Path,
        manifest: &Manifest,
        envelope: &Envelope,
        log: &[u8],
    ) -> Result<StoredArtifact, Error> {
        let digest = manifest.package.digest;
        let blobs = self.root.join("blobs/sha256");
        let staging = self.root.join("staging");
        for dir in [&blobs, &staging, &self.root.join("artifacts")] {
            fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        }
        // Move the package into the store first and hash it there, so the bytes checked are the
        // bytes stored, whatever happens to the build directory meanwhile.
        let staged = staging.join(format!("{}.{}.package", digest.hex(), std::process::id()));
        move_file(package, &staged)?;
        let result = self.link_package(&staged, package, digest);
        let _ = fs::remove_file(&staged);
        result?;
        let destination = self.metadata_dir(&digest);

        let manifest_bytes = manifest.to_bytes();
        let envelope_bytes = serde_json::to_vec_pretty(envelope).expect("envelope serializes");
        let temporary = staging.join(format!("{}.{}", digest.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&temporary);
        fs::create_dir_all(&temporary).map_err(|source| Error::io(&temporary, source))?;
        for (name, bytes) in [
            (MANIFEST_FILE, &manifest_bytes),
            (ATTESTATION_FILE, &envelope_bytes),
            (BUILD_LOG_FILE, &log.to_vec()),
        ] {
            let path = temporary.join(name);
            fs::write(&path, bytes).map_err(|source| Error::io(&path, source))?;
            set_read_only(&path)?;
        }
        if let Err(source) = fs::rename(&temporary, &destination) {
            let _ = fs::remove_dir_all(&temporary);
            return Err(if destination.exists() {
                Error::AlreadyStored { digest }
            } else {
                Error::io(&destination, source)
            });
        }
        Ok(StoredArtifact {
            digest,
            manifest: manifest.clone(),
            manifest_bytes,
            envelope: envelope.clone(),
            package_path: self.package_path(&digest),
        })
    }

    /// Links a staged package to its content address. Refuses bytes that do not match `digest`
    /// and a digest already stored; finishes a write that stopped before its metadata.
    fn link_package(&self, staged: &Path, original: &Path, digest: Digest) -> Result<(), Error> {
        let actual = hash_file(staged)?;
        if actual != digest {
            return Err(Error::Corrupt {
                path: original.display().to_string(),
                expected: digest,
                actual,
            });
        }
        set_read_only(staged)?;
        let final_path = self.package_path(&digest);
        match fs::hard_link(staged, &final_path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if self.metadata_dir(&digest).exists() {
                    return Err(Error::AlreadyStored { digest });
                }
                // An earlier write stopped between the package and its metadata: the package is
                // there (and must be intact), so finish the write.
                let stored = hash_file(&final_path)?;
                if stored != digest {
                    return Err(Error::Corrupt {
                        path: final_path.display().to_string(),
                        expected: digest,
                        actual: stored,
                    });
                }
                Ok(())
            }
            Err(source) => Err(Error::io(&final_path, source)),
        }
    }

    /// The artifact's metadata. Accepts a full digest or a unique prefix of its hex.
    pub fn get(&self, digest_or_prefix: &str) -> Result<StoredArtifact, Error> {
        let digest = self.resolve(digest_or_prefix)?;
        let dir = self.metadata_dir(&digest);
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes =
            fs::read(&manifest_path).map_err(|source| Error::io(&manifest_path, source))?;
        let manifest = serde_json::from_slice(&manifest_bytes).map_err(|error| {
            Error::invalid(&manifest_path, format!("not a Gantry manifest: {error}"))
        })?;
        let envelope_path = dir.join(ATTESTATION_FILE);
        let envelope_bytes =
            fs::read(&envelope_path).map_err(|source| Error::io(&envelope_path, source))?;
        let envelope = serde_json::from_slice(&envelope_bytes).map_err(|error| {
            Error::invalid(&envelope_path, format!("not a DSSE envelope: {error}"))
        })?;
        Ok(StoredArtifact {
            digest,
            manifest,
            manifest_bytes,
            envelope,
            package_path: self.package_path(&digest),
        })
    }

    /// The package's bytes, re-hashed: corrupt bytes are refused, never returned.
    pub fn read_package(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.package_path(digest);
        let bytes = fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                digest: digest.to_string(),
                store: self.root.display().to_string(),
            },
            _ => Error::io(&path, source),
        })?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::Corrupt {
                path: path.display().to_string(),
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// The attestation (DSSE envelope) exactly as stored: verification checks these bytes.
    pub fn read_attestation(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.metadata_dir(digest).join(ATTESTATION_FILE);
        fs::read(&path).map_err(|source| Error::io(&path, source))
    }

    /// The build log.
    pub fn read_log(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.metadata_dir(digest).join(BUILD_LOG_FILE);
        fs::read(&path).map_err(|source| Error::io(&path, source))
    }

    /// Every artifact's digest, in no particular order.
    pub fn digests(&self) -> Result<Vec<Digest>, Error> {
        let dir = self.root.join("artifacts");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut digests = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|source| Error::io(&dir, source))? {
            let entry = entry.map_err(|source| Error::io(&dir, source))?;
            if let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) {
                digests.push(digest);
            }
        }
        Ok(digests)
    }

    /// Every artifact, oldest build first.
    pub fn list(&self) -> Result<Vec<StoredArtifact>, Error> {
        let mut artifacts = self
            .digests()?
            .iter()
            .map(|digest| self.get(&digest.hex()))
            .collect::<Result<Vec<_>, _>>()?;
        artifacts.sort_by_key(|a| (a.manifest.finished_at, a.digest));
        Ok(artifacts)
    }

    /// The commits `manifest`'s artifact contains from the earlier artifacts of its pipeline;
    /// see [`earlier_commits`].
    pub fn earlier_commits(&self, manifest: &Manifest) -> Result<Vec<String>, Error> {
        Ok(earlier_commits(&self.list()?, manifest))
    }

    fn resolve(&self, digest_or_prefix: &str) -> Result<Digest, Error> {
        if let Ok(digest) = digest_or_prefix.parse::<Digest>() {
            return Ok(digest);
        }
        let prefix = digest_or_prefix.strip_prefix("sha256:").unwrap_or(digest_or_prefix);
        let not_found = || Error::NotFound {
            digest: digest_or_prefix.to_string(),
            store: self.root.display().to_string(),
        };
        if prefix.len() < MIN_DIGEST_PREFIX {
            return Err(Error::Source(format!(
                "{digest_or_prefix:?} is too short to name an artifact: give at least \
                 {MIN_DIGEST_PREFIX} hex digits of its digest"
            )));
        }
        let matches: Vec<Digest> =
            self.digests()?.into_iter().filter(|d| d.hex().starts_with(prefix)).collect();
        match matches[..] {
            [digest] => Ok(digest),
            [] => Err(not_found()),
            _ => Err(Error::Source(format!(
                "{digest_or_prefix} names {} artifacts; give more digits",
                matches.len()
            ))),
        }
    }
}

/// Moves a file, copying when it crosses filesystems.
fn move_file(from: &Path, to: &Path) -> Result<(), Error> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(|source| Error::io(from, source))?;
    fs::remove_file(from).map_err(|source| Error::io(from, source))
}

fn hash_file(path: &Path) -> Result<Digest, Error> {
    let file = fs::File::open(path).map_err(|source| Error::io(path, source))?;
    Digest::of_reader(file).map_err(|source| Error::io(path, source))
}

fn set_read_only(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o444))
        .map_err(|source| Error::io(path, source))
}

/// The commits `manifest`'s artifact contains from the earlier artifacts of its pipeline among
/// `artifacts`: the commits of the artifact built from its baseline, of that one's baseline, and
/// so on. An artifact contains its predecessors' code, so a commit blocked in one of them blocks
/// it too.
pub fn earlier_commits(artifacts: &[StoredArtifact], manifest: &Manifest) -> Vec<String> {
    let by_commit: std::collections::HashMap<&str, &Manifest> = artifacts
        .iter()
        .filter(|a| a.manifest.pipeline == manifest.pipeline)
        .map(|a| (a.manifest.source.commit.as_str(), &a.manifest))
        .collect();
    let by_digest: std::collections::HashMap<Digest, &Manifest> =
        artifacts.iter().map(|a| (a.digest, &a.manifest)).collect();
    // The base artifact by digest when the provenance names it, else by its commit.
    let base_of = |m: &Manifest| match m.source.base_artifact {
        Some(digest) => by_digest.get(&digest).copied(),
        None => m.source.baseline.as_deref().and_then(|commit| by_commit.get(commit).copied()),
    };
    let mut commits = Vec::new();
    let mut next = base_of(manifest);
    for _ in 0..MAX_ARTIFACT_CHAIN {
        let Some(earlier) = next else { break };
        commits.extend(earlier.commits.iter().map(|record| record.commit.id.clone()));
        next = base_of(earlier);
    }
    commits
}

/// Runs `change` holding an exclusive lock on `<path>.lock`, so read-modify-write updates of a
/// shared file (the block list, the trust list) from several processes never lose one another.
pub(crate) fn with_lock<T>(
    path: &Path,
    change: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
    }
    let lock_path = path.with_extension("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::io(&lock_path, source))?;
    lock.lock().map_err(|source| Error::io(&lock_path, source))?;
    let result = change();
    drop(lock);
    result
}

/// An artifact exported from the store, as hosts and tools receive it: the package and, beside
/// it, its attestation and manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub package: PathBuf,
    pub attestation: PathBuf,
    pub manifest: PathBuf,
}

impl Exported {
    /// The files that go with a package file: `<package>.intoto.json` (the DSSE envelope, the
    /// name in-toto tools look for) and `<package>.manifest.json`.
    pub fn beside(package: &Path) -> Exported {
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", package.display()));
        Exported {
            package: package.to_path_buf(),
            attestation: with(".intoto.json"),
            manifest: with(".manifest.json"),
        }
    }
}

impl Store {
    /// Writes an artifact's package, attestation and manifest into `directory`, named after the
    /// provenance subject; the package is re-hashed on the way out.
    pub fn export(&self, digest_or_prefix: &str, directory: &Path) -> Result<Exported, Error> {
        let stored = self.get(digest_or_prefix)?;
        let package = self.read_package(&stored.digest)?;
        fs::create_dir_all(directory).map_err(|source| Error::io(directory, source))?;
        let exported =
            Exported::beside(&directory.join(crate::attestation::subject_name(&stored.manifest)));
        let envelope = serde_json::to_vec_pretty(&stored.envelope).expect("envelope serializes");
        for (path, bytes) in [
            (&exported.package, &package),
            (&exported.attestation, &envelope),
            (&exported.manifest, &stored.manifest_bytes),
        ] {
            fs::write(path, bytes).map_err(|source| Error::io(path, source))?;
        }
        Ok(exported)
    }
}

/// Replaces a small mutable file (trust list, block list) atomically: a reader sees the old
/// content or the new, never half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
    }
    let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&temporary, bytes).map_err(|source| Error::io(&temporary, source))?;
    fs::rename(&temporary, path).map_err(|source| Error::io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::tests::sample_manifest;

    fn package(dir: &Path, content: &[u8]) -> (PathBuf, Manifest) {
        let path = dir.join(format!("package-{}", Digest::of(content).short()));
        fs::write(&path, content).unwrap();
        let mut manifest = sample_manifest();
        manifest.package.digest = Digest::of(content);
        (path, manifest)
    }

    fn envelope() -> Envelope {
        Envelope { payload: String::new(), payload_type: "t".into(), signatures: vec![] }
    }

    #[test]
    fn stores_once_verifies_on_read_and_finishes_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        let (path, manifest) = package(dir.path(), b"one");
        let stored = store.put(&path, &manifest, &envelope(), b"log").unwrap();
        assert_eq!(store.read_package(&stored.digest).unwrap(), b"one");
        assert_eq!(store.get(&stored.digest.hex()[..8]).unwrap().manifest, manifest);
        assert_eq!(store.read_log(&stored.digest).unwrap(), b"log");

        let (again, _) = package(dir.path(), b"one");
        assert!(matches!(
            store.put(&again, &manifest, &envelope(), b""),
            Err(Error::AlreadyStored { .. })
        ));

        let (wrong, mut mismatched) = package(dir.path(), b"two");
        mismatched.package.digest = Digest::of(b"three");
        assert!(matches!(
            store.put(&wrong, &mismatched, &envelope(), b""),
            Err(Error::Corrupt { .. })
        ));

        // A crash after the package was linked but before its metadata: the next put finishes.
        let (interrupted, manifest) = package(dir.path(), b"four");
        fs::hard_link(&interrupted, store.package_path(&manifest.package.digest)).unwrap();
        store.put(&interrupted, &manifest, &envelope(), b"").unwrap();
        assert_eq!(store.list().unwrap().len(), 2);

        let blob = store.package_path(&stored.digest);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&blob).unwrap().permissions().mode() & 0o777, 0o444);
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&blob, b"One").unwrap();
        assert!(matches!(store.read_package(&stored.digest), Err(Error::Corrupt { .. })));
        assert!(matches!(store.get("ffffffffff"), Err(Error::NotFound { .. })));
        assert!(
            store
                .get(&stored.digest.hex()[..4])
                .unwrap_err()
                .to_string()
                .contains("at least 6 hex digits")
        );
    }
}
