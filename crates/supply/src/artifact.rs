//! Artifacts: the declared build outputs packed as tar + zstd, and the [`Manifest`] that says
//! where they came from.
//!
//! Packing is deterministic: entries sorted by path, owner 0, modes reduced to 0644/0755, and every
//! timestamp set to the commit's time, so the same tree packs to the same bytes and the same
//! sha256. The manifest lists service, pipeline, source commit, every commit since the last
//! artifact with its authors and reviewers, the build command, the builder and the dependencies
//! from the lock files; its own digest is signed into the provenance.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path};

use gantry_model::Duration;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::lockfiles::Dependency;
use crate::source::Commit;
use crate::{Digest, Error};

/// Identifies this manifest format.
pub const MANIFEST_SCHEMA: &str = "https://gantry.dev/manifest/v1";
/// Media type of packages.
pub const PACKAGE_MEDIA_TYPE: &str = "application/vnd.gantry.artifact.v1.tar+zstd";
/// Media type of manifests, as named in the provenance's byproducts.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.gantry.manifest.v1+json";
/// zstd level: 12 compresses well at build-farm speed; decompression speed on hosts does not
/// depend on the level.
pub const ZSTD_LEVEL: i32 = 12;
/// The most files one artifact may hold; more means a whole tree was declared as output.
pub const MAX_PACKAGE_FILES: usize = 100_000;
/// The largest artifact accepted: 2 GiB keeps host downloads and the store's disk bounded.
pub const MAX_PACKAGE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Where an artifact came from and what is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub service: String,
    pub pipeline: String,
    pub source: SourceRecord,
    /// Every commit since the previous artifact of this pipeline (newest first), each with who
    /// reviewed it when the artifact was built.
    pub commits: Vec<CommitRecord>,
    pub build: BuildRecord,
    pub builder: BuilderRecord,
    pub dependencies: Vec<Dependency>,
    pub package: PackageRecord,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl Manifest {
    /// The manifest's canonical bytes: what is stored and what its digest covers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Commits without the approvals they need, as recorded at build time.
    pub fn unreviewed(&self) -> impl Iterator<Item = &CommitRecord> {
        self.commits.iter().filter(|commit| !commit.is_reviewed(None))
    }
}

/// The source of the build: repository, branch and the exact commit built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub repository: String,
    pub branch: String,
    pub commit: String,
    /// The base commit: `commits` are those reachable from `commit` and not from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The digest of the base artifact (the pipeline's newest deployable artifact built from an
    /// ancestor); `None` when the base is the pipeline's configured trusted base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_artifact: Option<Digest>,
}

/// A commit with its reviewers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    #[serde(flatten)]
    pub commit: Commit,
    /// Team members who approved this exact commit, none of them its author.
    pub reviewers: Vec<String>,
    /// How the commit's author was established.
    #[serde(default)]
    pub authorship: Authorship,
}

/// Approvals an unauthenticated author's commit needs, from distinct members: anyone can put a
/// stranger's email on a commit and approve it themselves, so one approval proves nothing.
pub const UNAUTHENTICATED_AUTHOR_APPROVALS: usize = 2;

/// How a commit's author was established.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Authorship {
    /// A good git SSH signature (`gpg.format=ssh`) by one of the member's keyring keys.
    SshSignature { member: String, key: String },
    /// A verified forge delivery named the member as the pull/merge request's author.
    ForgeLogin { member: String, forge: crate::webhook::Forge, login: String },
    /// Neither: the git author fields are a claim anyone can make.
    #[default]
    Unauthenticated,
}

impl Authorship {
    /// The keyring member proven to have written the commit.
    pub fn member(&self) -> Option<&str> {
        match self {
            Authorship::SshSignature { member, .. } | Authorship::ForgeLogin { member, .. } => {
                Some(member)
            }
            Authorship::Unauthenticated => None,
        }
    }

    /// How it was established, for people.
    pub fn describe(&self) -> String {
        match self {
            Authorship::SshSignature { member, key } => format!("{member} (SSH signature {key})"),
            Authorship::ForgeLogin { member, forge, login } => {
                format!("{member} ({forge} pull request author {login})")
            }
            Authorship::Unauthenticated => "unauthenticated".into(),
        }
    }
}

impl CommitRecord {
    /// The members whose approvals count: those recorded at build time and, with `book`, those
    /// recorded since; never the proven author.
    pub fn counted_reviewers(&self, book: Option<&crate::review::ReviewBook>) -> Vec<String> {
        let mut reviewers = self.reviewers.clone();
        if let Some(book) = book {
            reviewers.extend(book.reviewers_of(&self.commit));
        }
        reviewers.retain(|reviewer| Some(reviewer.as_str()) != self.authorship.member());
        reviewers.sort();
        reviewers.dedup();
        reviewers
    }

    /// Approvals needed: one when the author is authenticated, else
    /// [`UNAUTHENTICATED_AUTHOR_APPROVALS`] from distinct members.
    pub fn approvals_needed(&self) -> usize {
        match self.authorship {
            Authorship::Unauthenticated => UNAUTHENTICATED_AUTHOR_APPROVALS,
            _ => 1,
        }
    }

    /// Whether it has the approvals it needs.
    pub fn is_reviewed(&self, book: Option<&crate::review::ReviewBook>) -> bool {
        self.counted_reviewers(book).len() >= self.approvals_needed()
    }
}

/// The build as the pipeline declared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub command: String,
    pub outputs: Vec<String>,
    pub network: bool,
    pub timeout: Duration,
    /// The sandbox's whole environment: the fixed variables and the pipeline's.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The extra host paths the build could read, each with the digest of its tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_paths: Vec<PathDigest>,
    /// The `--since` commit that widened the range, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The pipeline's configured trusted base, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_base: Option<String>,
}

/// A host path with the digest of its content (see [`crate::build::digest_tree`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathDigest {
    pub path: String,
    pub digest: Digest,
}

impl From<&gantry_model::pipeline::Build> for BuildRecord {
    fn from(build: &gantry_model::pipeline::Build) -> BuildRecord {
        BuildRecord {
            command: build.command.clone(),
            outputs: build.outputs.clone(),
            network: build.network,
            timeout: build.timeout,
            environment: BTreeMap::new(),
            read_only_paths: Vec::new(),
            since: None,
            trusted_base: None,
        }
    }
}

/// Who built it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderRecord {
    /// The builder's identity URI, matched by verification policy.
    pub id: String,
    /// The machine the build ran on.
    pub host: String,
    /// Gantry's version.
    pub version: String,
    /// How the build was isolated, e.g. `unshare --net --pid --mount`.
    pub sandbox: String,
    /// The toolchain the build ran with (see [`crate::build::toolchain`]).
    #[serde(default)]
    pub toolchain: Vec<PathDigest>,
}

/// The package: its digest, size and files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub files: Vec<FileRecord>,
}

/// One file in the package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// sha256 of the content; for a symbolic link, of its target's text.
    pub digest: Digest,
    pub mode: u32,
}

/// Checks an output path the pipeline declared: relative, inside the checkout, no `..`.
fn check_output_path(output: &str) -> Result<(), String> {
    let path = Path::new(output);
    if output.is_empty() || path.is_absolute() {
        return Err(format!("output {output:?} must be a path relative to the checkout"));
    }
    if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!("output {output:?} may not leave the checkout (no `..`)"));
    }
    Ok(())
}

/// The file every package carries first, naming where it came from. It makes the package of each
/// commit (and pipeline) distinct even when the build outputs are byte-identical, so every
/// commit's artifact has its own digest and provenance; rebuilding the same commit still
/// reproduces the same bytes.
pub const ORIGIN_FILE: &str = ".gantry/origin.json";

/// What [`ORIGIN_FILE`] says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub service: String,
    pub pipeline: String,
    pub repository: String,
    pub branch: String,
    pub commit: String,
}

/// Packs [`ORIGIN_FILE`] and the `outputs` of `checkout` into `destination` (tar + zstd) with
/// every timestamp set to `mtime` (seconds since the epoch). Returns the package's record.
pub fn pack(
    checkout: &Path,
    outputs: &[String],
    origin: &Origin,
    mtime: u64,
    destination: &Path,
) -> Result<PackageRecord, Error> {
    let mut entries = Vec::new();
    for output in outputs {
        check_output_path(output).map_err(Error::Source)?;
        let path = checkout.join(output);
        let metadata = std::fs::symlink_metadata(&path).map_err(|_| {
            Error::Source(format!(
                "declared output {output} was not produced by the build (looked for {})",
                path.display()
            ))
        })?;
        walk(checkout, &path, &metadata, &mut entries)?;
    }
    entries.sort();
    entries.dedup();
    if entries.len() > MAX_PACKAGE_FILES {
        return Err(Error::Source(format!("the outputs hold more than {MAX_PACKAGE_FILES} files")));
    }

    let file =
        std::fs::File::create(destination).map_err(|source| Error::io(destination, source))?;
    let io = |source| Error::io(destination, source);
    let encoder = zstd::Encoder::new(file, ZSTD_LEVEL).map_err(io)?;
    let mut builder = tar::Builder::new(encoder);
    let mut files = Vec::new();
    let mut origin_bytes = serde_json::to_vec_pretty(origin).expect("origin serializes");
    origin_bytes.push(b'\n');
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_mode(0o644);
    header.set_size(origin_bytes.len() as u64);
    builder.append_data(&mut header, ORIGIN_FILE, &origin_bytes[..]).map_err(io)?;
    files.push(FileRecord {
        path: ORIGIN_FILE.into(),
        size: origin_bytes.len() as u64,
        digest: Digest::of(&origin_bytes),
        mode: 0o644,
    });
    for relative in &entries {
        let path = checkout.join(relative);
        let metadata =
            std::fs::symlink_metadata(&path).map_err(|source| Error::io(&path, source))?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        if metadata.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|source| Error::io(&path, source))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, relative, &target).map_err(io)?;
            let text = target.display().to_string();
            files.push(FileRecord {
                path: relative.clone(),
                size: 0,
                digest: Digest::of(text.as_bytes()),
                mode: 0o777,
            });
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if metadata.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            let content = std::fs::read(&path).map_err(|source| Error::io(&path, source))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, relative, &content[..]).map_err(io)?;
            files.push(FileRecord {
                path: relative.clone(),
                size: content.len() as u64,
                digest: Digest::of(&content),
                mode,
            });
        }
    }
    let encoder = builder.into_inner().map_err(io)?;
    let mut file = encoder.finish().map_err(io)?;
    file.flush().map_err(io)?;
    drop(file);

    let size = std::fs::metadata(destination).map_err(io)?.len();
    if size > MAX_PACKAGE_BYTES {
        return Err(Error::Source(format!(
            "the package is {size} bytes, more than the limit of {MAX_PACKAGE_BYTES}"
        )));
    }
    let digest = Digest::of_reader(std::fs::File::open(destination).map_err(io)?).map_err(io)?;
    Ok(PackageRecord { digest, size, media_type: PACKAGE_MEDIA_TYPE.to_string(), files })
}

fn walk(
    root: &Path,
    path: &Path,
    metadata: &std::fs::Metadata,
    entries: &mut Vec<String>,
) -> Result<(), Error> {
    if metadata.is_dir() {
        let listing = std::fs::read_dir(path).map_err(|source| Error::io(path, source))?;
        for entry in listing {
            let entry = entry.map_err(|source| Error::io(path, source))?;
            let child = entry.path();
            let child_metadata =
                std::fs::symlink_metadata(&child).map_err(|source| Error::io(&child, source))?;
            walk(root, &child, &child_metadata, entries)?;
            if entries.len() > MAX_PACKAGE_FILES {
                return Ok(());
            }
        }
    } else {
        entries.push(path.strip_prefix(root).expect("under the checkout").display().to_string());
    }
    Ok(())
}

/// Lists a package's files with their digests by reading it, for showing and checking.
pub fn read_files(package: &[u8]) -> Result<Vec<FileRecord>, std::io::Error> {
    let decoder = zstd::Decoder::new(package)?;
    let mut archive = tar::Archive::new(decoder);
    let mut files = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        let mode = entry.header().mode()?;
        if entry.header().entry_type() == tar::EntryType::Symlink {
            let target = entry.link_name()?.map(|t| t.display().to_string()).unwrap_or_default();
            files.push(FileRecord { path, size: 0, digest: Digest::of(target.as_bytes()), mode });
        } else {
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content)?;
            files.push(FileRecord {
                path,
                size: content.len() as u64,
                digest: Digest::of(&content),
                mode,
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out/lib")).unwrap();
        std::fs::write(dir.path().join("out/service"), "#!/bin/sh\necho hi\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("out/service"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(dir.path().join("out/lib/data.txt"), "data").unwrap();
        std::os::unix::fs::symlink("data.txt", dir.path().join("out/lib/current")).unwrap();
        std::fs::write(dir.path().join("README"), "not an output").unwrap();
        dir
    }

    fn origin(commit: &str) -> Origin {
        Origin {
            service: "s".into(),
            pipeline: "p".into(),
            repository: "r".into(),
            branch: "main".into(),
            commit: commit.into(),
        }
    }

    fn pack_into(
        source: &Path,
        outputs: &[String],
        commit: &str,
        mtime: u64,
        file: &Path,
    ) -> Result<PackageRecord, Error> {
        pack(source, outputs, &origin(commit), mtime, file)
    }

    #[test]
    fn packs_deterministically() {
        let source = tree();
        let out = tempfile::tempdir().unwrap();
        let outputs = vec!["out".to_string()];
        let path = |name: &str| out.path().join(name);
        let first = pack_into(source.path(), &outputs, "a", 1_700_000_000, &path("a")).unwrap();
        let second = pack_into(source.path(), &outputs, "a", 1_700_000_000, &path("b")).unwrap();
        assert_eq!(first, second);
        let listed: Vec<(String, u32)> =
            first.files.iter().map(|f| (f.path.clone(), f.mode)).collect();
        assert_eq!(
            listed,
            [
                (ORIGIN_FILE.into(), 0o644),
                ("out/lib/current".into(), 0o777),
                ("out/lib/data.txt".into(), 0o644),
                ("out/service".into(), 0o755)
            ]
        );
        let bytes = std::fs::read(path("a")).unwrap();
        assert_eq!(read_files(&bytes).unwrap(), first.files);
        assert_eq!(Digest::of(&bytes), first.digest);
        let later = pack_into(source.path(), &outputs, "a", 1_700_000_001, &path("c")).unwrap();
        assert_ne!(later.digest, first.digest, "timestamps are part of the content");
        let other_commit =
            pack_into(source.path(), &outputs, "b", 1_700_000_000, &path("d")).unwrap();
        assert_ne!(other_commit.digest, first.digest, "each commit's package is distinct");
    }

    #[test]
    fn refuses_bad_outputs() {
        let source = tree();
        let out = tempfile::tempdir().unwrap();
        for (output, expected) in [
            ("../etc", "may not leave the checkout"),
            ("/etc/passwd", "relative to the checkout"),
            ("missing", "was not produced by the build"),
        ] {
            let error =
                pack_into(source.path(), &[output.to_string()], "a", 0, &out.path().join("x"))
                    .unwrap_err();
            assert!(error.to_string().contains(expected), "{output}: {error}");
        }
    }
}
