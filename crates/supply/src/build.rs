//! Hermetic builds: the exact commit, checked out clean, built without network.
//!
//! A build computes its commit range (every commit reachable from the built commit and not from
//! the pipeline's base: its newest deployable artifact built from an ancestor, else the
//! configured trusted base), exports the commit's tree (`git archive`) into a fresh directory,
//! lists the pinned dependencies from its lock files, then runs the pipeline's build command with
//! `sh -c` in a [`Sandbox`] (see [`crate::sandbox`]). The environment is cleared and rebuilt from
//! a short fixed list plus the pipeline's variables, and all of it is recorded.
//!
//! [`Builder::build`] then packs the declared outputs, writes the manifest with every commit's
//! authors and reviewers, signs the provenance with the active build key, and stores the
//! artifact. Its `builder.id` is earned: derived from who ran it and the sandbox it got
//! ([`builder_id`]), never named by the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::{
    self, Authorship, BuildRecord, BuilderRecord, CommitRecord, Manifest, PathDigest, SourceRecord,
};
use crate::blocks::{BlockList, Context, blockers};
use crate::keys::KeyPair;
use crate::review::ReviewBook;
use crate::source::{Commit, MAX_COMMITS_PER_ARTIFACT, Repository, normalize_repository};
use crate::store::{Store, StoredArtifact};
use crate::{Digest, Error, attestation, lockfiles};

use crate::sandbox::running_as_root;
pub use crate::sandbox::{
    BUILD_GID, BUILD_UID, BuildFailure, MAX_BUILD_LOG_BYTES, RunOutput, SANDBOX_PATH, Sandbox,
    SandboxRun, network_evidence, run_sandboxed,
};

/// The most files and directories an extra read-only path may hold: each is hashed into the
/// provenance on every build, so a whole filesystem is refused rather than read.
pub const MAX_READ_ONLY_ENTRIES: usize = 100_000;

/// Host paths an extra read-only path may neither lie in nor contain: homes (keys, agent
/// sockets, credentials), runtime sockets, shared scratch space and kernel interfaces.
pub const FORBIDDEN_READ_ONLY_ROOTS: [&str; 9] =
    ["/home", "/root", "/run", "/var/run", "/tmp", "/var/tmp", "/dev", "/proc", "/sys"];

/// Checks one extra read-only path a pipeline asks for and returns it canonical: absolute,
/// existing, not covering or inside a home, a socket directory, `forbidden` (the Gantry home and
/// its keys), and holding no socket.
pub fn check_read_only_path(path: &Path, forbidden: &[PathBuf]) -> Result<PathBuf, Error> {
    if !path.is_absolute() {
        return Err(Error::invalid(path, "an extra read-only path must be absolute"));
    }
    let canonical = std::fs::canonicalize(path).map_err(|source| Error::io(path, source))?;
    let forbidden_roots = FORBIDDEN_READ_ONLY_ROOTS.iter().map(PathBuf::from);
    for root in forbidden_roots.chain(forbidden.iter().cloned()) {
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        if canonical.starts_with(&root) || root.starts_with(&canonical) {
            return Err(Error::invalid(
                path,
                format!(
                    "a build may not read {}: it is or holds {}, where homes, keys or sockets \
                     live; copy what the build needs elsewhere (e.g. under /opt)",
                    canonical.display(),
                    root.display()
                ),
            ));
        }
    }
    Ok(canonical)
}

/// The digest of a directory tree (or one file): every entry's relative path, kind, mode and
/// content (or link target), in order. Refuses sockets and trees past
/// [`MAX_READ_ONLY_ENTRIES`].
pub fn digest_tree(root: &Path) -> Result<Digest, Error> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // One line per entry; the digest of the whole listing names the tree.
    let mut listing: Vec<u8> = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(path) = pending.pop() {
        seen += 1;
        if seen > MAX_READ_ONLY_ENTRIES {
            return Err(Error::invalid(
                root,
                format!("holds more than {MAX_READ_ONLY_ENTRIES} entries; name a smaller path"),
            ));
        }
        let metadata = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let relative = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        let kind = metadata.file_type();
        let mode = metadata.permissions().mode() & 0o7777;
        if kind.is_socket() || kind.is_fifo() || kind.is_block_device() || kind.is_char_device() {
            return Err(Error::invalid(
                &path,
                "is a socket or device; a build may not reach host sockets or devices",
            ));
        }
        listing.extend_from_slice(format!("{relative}\0{mode:o}\0").as_bytes());
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
            listing.extend_from_slice(format!("link\0{}\n", target.display()).as_bytes());
        } else if kind.is_dir() {
            listing.extend_from_slice(b"dir\n");
            let mut children = std::fs::read_dir(&path)
                .map_err(|e| Error::io(&path, e))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::io(&path, e))?;
            // Popped from the end: reverse order keeps the walk sorted.
            children.sort();
            children.reverse();
            pending.extend(children);
        } else {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let digest = Digest::of_reader(file).map_err(|e| Error::io(&path, e))?;
            listing.extend_from_slice(format!("file\0{}\n", digest.hex()).as_bytes());
        }
    }
    Ok(Digest::of(&listing))
}

/// What the toolchain is, for `builderDependencies`: the sandbox program and the shell by
/// content, and the system's installed packages by the digest of dpkg's status file.
pub fn toolchain(sandbox: Sandbox) -> Vec<PathDigest> {
    let program = match sandbox {
        Sandbox::Bubblewrap => "bwrap",
        Sandbox::Unshare => "unshare",
    };
    let found = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(format!("/usr/bin/{program}")));
    let mut paths = vec![found, PathBuf::from("/bin/sh"), PathBuf::from("/var/lib/dpkg/status")];
    paths.extend(TOOLCHAIN_SETPRIV.iter().map(PathBuf::from));
    paths
        .into_iter()
        .filter_map(|path| {
            let file = std::fs::File::open(&path).ok()?;
            let digest = Digest::of_reader(file).ok()?;
            Some(PathDigest { path: path.display().to_string(), digest })
        })
        .collect()
}

/// `setpriv` drops privileges before every build; recorded with the toolchain.
const TOOLCHAIN_SETPRIV: [&str; 1] = ["/usr/bin/setpriv"];

/// Who runs a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderRole {
    /// The controller's build service: the only builder production policy trusts by default,
    /// and only with the bubblewrap allow-list sandbox.
    Service,
    /// `gantry build` run by hand: whoever runs it holds the build key and could have changed
    /// anything, so its artifacts say so.
    Local,
}

/// The builder id of the trusted build service in the bubblewrap allow-list sandbox.
pub const SERVICE_BUBBLEWRAP_BUILDER_ID: &str = "https://gantry.dev/builders/service/bubblewrap/v1";
/// The build service when only `unshare` was available: no allow-list of host paths, so a
/// weaker isolation that policy must opt into.
pub const SERVICE_UNSHARE_BUILDER_ID: &str = "https://gantry.dev/builders/service/unshare/v1";
/// A hand-run `gantry build`, whatever its sandbox.
pub const LOCAL_BUILDER_ID: &str = "https://gantry.dev/builders/local/v1";

/// The builder id a build earns: derived from who ran it and the isolation it actually got.
pub fn builder_id(role: BuilderRole, sandbox: Sandbox) -> &'static str {
    match (role, sandbox) {
        (BuilderRole::Service, Sandbox::Bubblewrap) => SERVICE_BUBBLEWRAP_BUILDER_ID,
        (BuilderRole::Service, Sandbox::Unshare) => SERVICE_UNSHARE_BUILDER_ID,
        (BuilderRole::Local, _) => LOCAL_BUILDER_ID,
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub service: String,
    pub pipeline: String,
    pub source: gantry_model::Source,
    pub build: gantry_model::pipeline::Build,
    /// The pipeline's `code_review: required`: an artifact with unreviewed commits is not
    /// deployable, so it cannot be the base of the next one.
    pub review_required: bool,
    /// The commit to build; the mainline head when `None`.
    pub commit: Option<String>,
    /// A commit whose descendants up to the built one are added to the computed range: it can
    /// only widen the range (list more commits for review), never narrow it.
    pub since: Option<String>,
    /// The pipeline's configured trusted base: the commit the first build's range starts after
    /// when no deployable artifact of the pipeline was built from an ancestor, or
    /// [`TRUSTED_BASE_ROOT`] for the start of history (bounded by the range limit). Without
    /// one, the first build is refused rather than given all of history.
    pub trusted_base: Option<String>,
    /// Variables added to the sandbox's environment (e.g. a vendored toolchain's home); each is
    /// recorded in the provenance's external parameters.
    pub env: BTreeMap<String, String>,
    /// Extra host paths the pipeline lets its build read (e.g. a vendored toolchain outside
    /// the system directories). Refused when they cover a home, a key directory or a socket;
    /// each is digested into the provenance's resolved dependencies.
    pub read_only_paths: Vec<PathBuf>,
}

/// The trusted base that means "the start of history": every ancestor of the first build is
/// listed for review (at most [`MAX_COMMITS_PER_ARTIFACT`]).
pub const TRUSTED_BASE_ROOT: &str = "root";

/// Where a build's range starts: the commit after which its commits are listed, and why that
/// commit may be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// The newest deployable artifact of the pipeline built from an ancestor.
    Artifact { commit: String, digest: Digest },
    /// The pipeline's configured trusted base.
    Trusted { commit: String },
    /// The configured trusted base is the start of history ([`TRUSTED_BASE_ROOT`]).
    Root,
}

impl Base {
    /// The base commit; `None` for the start of history.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Base::Artifact { commit, .. } | Base::Trusted { commit } => Some(commit),
            Base::Root => None,
        }
    }
}

/// Builds, signs and stores artifacts.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub key: &'a KeyPair,
    pub reviews: &'a ReviewBook,
    /// Content blocks in force: an artifact they block cannot be the base of the next one.
    pub blocks: &'a BlockList,
    /// Scratch space for checkouts; each build gets a fresh directory, removed afterwards.
    pub work_dir: PathBuf,
    /// Mirrors of remote repositories.
    pub cache_dir: PathBuf,
    /// Who runs the build: the controller's build service or a person at a terminal. With the
    /// sandbox it decides the `builder.id` recorded (see [`builder_id`]); no caller names it.
    pub role: BuilderRole,
    pub host: String,
    pub sandbox: Sandbox,
    /// Directories builds may not read: at least the build keys' (SLSA Build L3: signing
    /// secrets are out of reach of the build steps).
    pub hidden: Vec<PathBuf>,
}

/// A built and stored artifact, with what the build printed.
#[derive(Clone, Debug)]
pub struct Built {
    pub artifact: StoredArtifact,
    pub log: Vec<u8>,
    pub elapsed: Duration,
}

static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

impl Builder<'_> {
    /// Builds `request` into a signed artifact in the store. A failed build stores nothing and
    /// returns [`Error::Build`] with its log's end, its whole log left in `work_dir/logs/`.
    pub fn build(&self, request: &BuildRequest) -> Result<Built, Error> {
        let started_at = Timestamp::now();
        let repository = Repository::open(&request.source, &self.cache_dir)?;
        let commit_id = match &request.commit {
            Some(revision) => repository.resolve(revision)?,
            None => repository.head()?,
        };
        if !repository.is_on_mainline(&commit_id)? {
            return Err(Error::Source(format!(
                "commit {commit_id} is not on {}'s mainline branch {}; only mainline commits are built",
                repository.name, repository.branch
            )));
        }
        let base = self.base(&repository, request, &commit_id)?;
        let mut commits = repository.commits_between(base.commit(), &commit_id)?;
        if let Some(since) = &request.since {
            // Only widens: the commits after `since` are added to the computed ones.
            let since = repository.resolve(since)?;
            for commit in repository.commits_between(Some(&since), &commit_id)? {
                if !commits.iter().any(|known| known.id == commit.id) {
                    commits.push(commit);
                }
            }
            if commits.len() > MAX_COMMITS_PER_ARTIFACT {
                return Err(Error::Source(format!(
                    "--since {since} adds more than {MAX_COMMITS_PER_ARTIFACT} commits to the \
                     range of {commit_id}; name a later commit"
                )));
            }
        }
        let head = repository.commit(&commit_id)?;

        // Unique across builds in this process (the counter) and across processes (the pid),
        // so concurrent builds never share a scratch directory.
        let invocation = format!(
            "{}-{}-{}-{}-{}",
            request.pipeline,
            &commit_id[..12],
            started_at.as_second(),
            std::process::id(),
            INVOCATIONS.fetch_add(1, Ordering::Relaxed)
        );
        // Run by root, the build user must reach its directory, and the work directory may sit
        // under a home it cannot enter: build under the system's temporary directory then.
        let scratch = if running_as_root() {
            std::env::temp_dir().join(format!("gantry-build-{invocation}"))
        } else {
            self.work_dir.join(&invocation)
        };
        let result = self.build_in(
            &scratch,
            request,
            &repository,
            &head,
            base,
            commits,
            started_at,
            &invocation,
        );
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    /// How `commit`'s author is established: a good SSH signature by a keyring member's key
    /// (`signers`, from [`Repository::ssh_signers`]), else a verified forge delivery naming the
    /// pull request's author, else not at all.
    fn authorship(
        &self,
        commit: &Commit,
        signers: &BTreeMap<String, (String, String)>,
    ) -> Authorship {
        if let Some((principal, key)) = signers.get(&commit.id)
            && self.reviews.keyring().by_name(principal).is_some()
        {
            return Authorship::SshSignature { member: principal.clone(), key: key.clone() };
        }
        match self.reviews.forge_author_of(commit) {
            Some(author) => Authorship::ForgeLogin {
                member: author.member,
                forge: author.forge,
                login: author.login,
            },
            None => Authorship::Unauthenticated,
        }
    }

    /// The base of a build of `commit`: the pipeline's newest deployable artifact built from a
    /// strict ancestor of it by the same builder id, else the configured trusted base (which must be an ancestor).
    /// Building an older commit, or the same one again, does not take a later artifact as its
    /// base (that would list no commits, and so none to review).
    pub fn base(
        &self,
        repository: &Repository,
        request: &BuildRequest,
        commit: &str,
    ) -> Result<Base, Error> {
        let history = self.store.list()?;
        // Only this builder's own kind of artifact: one built by hand in the same home had its
        // range start wherever its caller said (`trusted_base`), so it proves nothing.
        let builder = builder_id(self.role, self.sandbox);
        for artifact in history.iter().rev() {
            let manifest = &artifact.manifest;
            let built = &manifest.source.commit;
            if manifest.builder.id != builder
                || manifest.pipeline != request.pipeline
                || normalize_repository(&manifest.source.repository)
                    != normalize_repository(&repository.name)
                || manifest.source.branch != repository.branch
                || built == commit
                || !repository.is_ancestor(built, commit)?
            {
                continue;
            }
            let context = Context {
                pipeline: &request.pipeline,
                list: self.blocks,
                reviews: request.review_required.then_some(self.reviews),
                history: &history,
            };
            if blockers(manifest, &context).is_empty() {
                return Ok(Base::Artifact { commit: built.clone(), digest: artifact.digest });
            }
        }
        let Some(trusted) = &request.trusted_base else {
            return Err(Error::Source(format!(
                "pipeline {} has no deployable artifact built from an ancestor of {commit} and no \
                 trusted base: configure the last commit known good as the pipeline's trusted \
                 base (`--trusted-base COMMIT`, or `--trusted-base root` to review all of its \
                 history); a range is never all of history by default",
                request.pipeline
            )));
        };
        if trusted == TRUSTED_BASE_ROOT {
            return Ok(Base::Root);
        }
        let trusted = repository.resolve(trusted)?;
        if trusted != commit && !repository.is_ancestor(&trusted, commit)? {
            return Err(Error::Source(format!(
                "the trusted base {trusted} is not an ancestor of {commit} in {}; a range can only \
                 start on the commit's own history",
                repository.name
            )));
        }
        Ok(Base::Trusted { commit: trusted })
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of `build`, named at its only call"
    )]
    fn build_in(
        &self,
        scratch: &Path,
        request: &BuildRequest,
        repository: &Repository,
        head: &Commit,
        base: Base,
        commits: Vec<Commit>,
        started_at: Timestamp,
        invocation: &str,
    ) -> Result<Built, Error> {
        let mut forbidden = self.hidden.clone();
        forbidden.push(self.work_dir.clone());
        forbidden.push(self.store.root().to_path_buf());
        let mut read_only = Vec::new();
        let mut read_only_records = Vec::new();
        for path in &request.read_only_paths {
            let canonical = check_read_only_path(path, &forbidden)?;
            let digest = digest_tree(&canonical)?;
            read_only_records.push(PathDigest { path: canonical.display().to_string(), digest });
            read_only.push(canonical);
        }
        // The scratch directory stays the builder's; only `build/` is the build's own.
        std::fs::create_dir_all(scratch).map_err(|source| Error::io(scratch, source))?;
        let workspace = scratch.join("build");
        // Who wrote each commit, as far as it can be proven: SSH signatures by keyring keys.
        let allowed = self.reviews.keyring().allowed_signers();
        let signers = if allowed.is_empty() {
            BTreeMap::new()
        } else {
            let path = scratch.join("allowed-signers");
            std::fs::write(&path, allowed).map_err(|source| Error::io(&path, source))?;
            let ids: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
            repository.ssh_signers(&ids, &path)?
        };
        let checkout = workspace.join("src");
        repository.export(&head.id, &checkout)?;
        let dependencies = lockfiles::find(&checkout)?;
        let home = workspace.join("home");
        let tmp = workspace.join("tmp");
        for dir in [&home, &tmp] {
            std::fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        }
        let view = |path: &Path| self.sandbox.view(&workspace, path).display().to_string();
        let tmp_view = match self.sandbox {
            Sandbox::Bubblewrap => "/tmp".to_string(),
            Sandbox::Unshare => view(&tmp),
        };
        let epoch = head.authored_at.as_second().max(0);
        let mut env = BTreeMap::from([
            ("PATH".to_string(), SANDBOX_PATH.to_string()),
            ("HOME".to_string(), view(&home)),
            ("TMPDIR".to_string(), tmp_view),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
            ("CI".to_string(), "true".to_string()),
            ("SOURCE_DATE_EPOCH".to_string(), epoch.to_string()),
            ("GANTRY_COMMIT".to_string(), head.id.clone()),
            ("GANTRY_SERVICE".to_string(), request.service.clone()),
            ("GANTRY_PIPELINE".to_string(), request.pipeline.clone()),
        ]);
        env.extend(request.env.clone());
        let timeout = Duration::from_secs(request.build.timeout.as_seconds());
        let log_file = self.work_dir.join("logs").join(format!("{invocation}.log"));
        let run = run_sandboxed(&SandboxRun {
            sandbox: self.sandbox,
            workspace: &workspace,
            dir: &checkout,
            command: &request.build.command,
            env: &env,
            timeout,
            network: request.build.network,
            log_file: Some(&log_file),
            hidden: &self.hidden,
            read_only: &read_only,
        })?
        .map_err(|failure| Error::Build { failure, log: log_file.display().to_string() })?;
        // Kept only for failed builds; a stored artifact keeps its log beside it.
        let _ = std::fs::remove_file(&log_file);

        let package_path = scratch.join("package.tar.zst");
        let origin = artifact::Origin {
            service: request.service.clone(),
            pipeline: request.pipeline.clone(),
            repository: repository.name.clone(),
            branch: repository.branch.clone(),
            commit: head.id.clone(),
        };
        let package = artifact::pack(
            &checkout,
            &request.build.outputs,
            &origin,
            epoch as u64,
            &package_path,
        )?;
        let commits = commits
            .into_iter()
            .map(|commit| {
                let authorship = self.authorship(&commit, &signers);
                let mut reviewers = self.reviews.reviewers_of(&commit);
                reviewers.retain(|reviewer| Some(reviewer.as_str()) != authorship.member());
                CommitRecord { reviewers, commit, authorship }
            })
            .collect();
        let manifest = Manifest {
            schema: artifact::MANIFEST_SCHEMA.into(),
            service: request.service.clone(),
            pipeline: request.pipeline.clone(),
            source: SourceRecord {
                repository: repository.name.clone(),
                branch: repository.branch.clone(),
                commit: head.id.clone(),
                baseline: base.commit().map(str::to_string),
                base_artifact: match &base {
                    Base::Artifact { digest, .. } => Some(*digest),
                    Base::Trusted { .. } | Base::Root => None,
                },
            },
            commits,
            build: BuildRecord {
                environment: env,
                read_only_paths: read_only_records,
                since: request.since.clone(),
                trusted_base: request.trusted_base.clone(),
                ..BuildRecord::from(&request.build)
            },
            builder: BuilderRecord {
                id: builder_id(self.role, self.sandbox).to_string(),
                host: self.host.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                sandbox: self.sandbox.describe(request.build.network),
                toolchain: toolchain(self.sandbox),
            },
            dependencies,
            package,
            started_at,
            finished_at: Timestamp::now(),
        };
        let statement =
            attestation::statement(&manifest, Digest::of(&manifest.to_bytes()), invocation);
        let envelope = attestation::sign(&statement, self.key);
        let mut log = run.log;
        if run.log_dropped > 0 {
            log.extend_from_slice(
                format!("\n[gantry: {} more bytes of output dropped]\n", run.log_dropped)
                    .as_bytes(),
            );
        }
        let artifact = self.store.put(&package_path, &manifest, &envelope, &log)?;
        Ok(Built { artifact, log, elapsed: run.elapsed })
    }
}
