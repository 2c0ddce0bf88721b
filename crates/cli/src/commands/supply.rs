//! `gantry build | artifact | review | block`: the supply chain, routed to
//! `gantry_supply::operations` and presented. Every command works on one Gantry home
//! (`--home`, else `$GANTRY_HOME`, else `.gantry`), laid out as `gantry_supply::home` says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gantry_model::pipeline::Build;
use gantry_model::{Duration, Source};
use gantry_supply::blocks::{AuditEntry, BlockScope, BlockTarget, Context, blockers};
use gantry_supply::build::{BuildRequest, BuilderRole, Sandbox};
use gantry_supply::home::{DEFAULT_HOME_DIR, Home};
use gantry_supply::keys::{KeyPair, KeyStatus, local_builder_ids, service_builder_ids};
use gantry_supply::lockfiles::Ecosystem;
use gantry_supply::operations::{
    BuildJob, Checked, Received, Trust, Verification, affected_by_block, approve, build_and_check,
    poll_and_build, publish_blocks, receive_webhook, stored_digest,
};
use gantry_supply::published_blocks::DEFAULT_MAX_AGE_SECONDS;
use gantry_supply::review::{Keyring, Member, ReviewBook};
use gantry_supply::source::{Commit, Repository};
use gantry_supply::store::{Exported, StoredArtifact};
use gantry_supply::verify::Policy;
use gantry_supply::webhook::{Delivery, Forge};
use gantry_supply::{Digest, attestation};
use jiff::Timestamp;

/// Where Gantry keeps its supply-chain state.
#[derive(Args, Clone)]
pub struct HomeArgs {
    /// Gantry's state directory [default: $GANTRY_HOME, else .gantry]
    #[arg(long, global = true)]
    home: Option<PathBuf>,
}

impl HomeArgs {
    fn open(&self) -> anyhow::Result<Home> {
        let root = gantry_supply::home::configured_root(self.home.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME_DIR));
        Ok(Home::new(root)?)
    }
}

/// The home's review book, with a warning for each approval that did not check out.
fn reviews(home: &Home) -> anyhow::Result<ReviewBook> {
    let book = home.reviews()?;
    for rejected in &book.rejected {
        eprintln!("warning: approval ignored: {rejected}");
    }
    Ok(book)
}

fn print_json(value: serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// gantry build

#[derive(Args)]
pub struct BuildArgs {
    /// Pipeline definition whose service, source and build settings to use.
    pipeline_file: Option<PathBuf>,
    /// Service name (without a pipeline file).
    #[arg(long, required_unless_present = "pipeline_file", conflicts_with = "pipeline_file")]
    service: Option<String>,
    /// Pipeline name (without a pipeline file).
    #[arg(long, required_unless_present = "pipeline_file", conflicts_with = "pipeline_file")]
    pipeline: Option<String>,
    /// Source repository: a local path or URL. With a pipeline file, picks one of its sources
    /// or replaces its only one (e.g. with a local mirror).
    #[arg(long, required_unless_present = "pipeline_file")]
    repository: Option<String>,
    /// Mainline branch (without a pipeline file).
    #[arg(long, default_value = "main")]
    branch: String,
    /// Build command, run with `sh -c` in the checkout (without a pipeline file).
    #[arg(
        long = "command",
        required_unless_present = "pipeline_file",
        conflicts_with = "pipeline_file"
    )]
    build_command: Option<String>,
    /// Path the build produces, packed into the artifact; repeat for several.
    #[arg(long = "output", conflicts_with = "pipeline_file")]
    outputs: Vec<String>,
    /// Time limit, e.g. `20m` (without a pipeline file).
    #[arg(long, default_value = "1h")]
    timeout: Duration,
    /// Let the build reach the network (recorded in the provenance; policy refuses such builds).
    #[arg(long, conflicts_with = "pipeline_file")]
    network: bool,
    /// Commit to build; the mainline head by default.
    #[arg(long)]
    commit: Option<String>,
    /// Also list the commits after this one (it only widens the range, which always starts at
    /// the pipeline's newest deployable artifact built from an ancestor, or its trusted base).
    #[arg(long)]
    since: Option<String>,
    /// The pipeline's trusted base: the commit its first build's range starts after when no
    /// deployable artifact was built from an ancestor. Without one the first build is refused.
    #[arg(long)]
    trusted_base: Option<String>,
    /// An extra host path the build may read (e.g. a vendored toolchain), digested into the
    /// provenance; repeat for several. Homes, key directories and sockets are refused.
    #[arg(long = "read-only", value_name = "PATH")]
    read_only_paths: Vec<PathBuf>,
    /// Extra environment variable for the build, `NAME=VALUE`; repeat for several.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Keep watching the source: poll every INTERVAL (e.g. `1m`) and build each new mainline head.
    #[arg(long, value_name = "INTERVAL")]
    watch: Option<Duration>,
    /// With --watch: stop after this many builds; by default run until interrupted.
    #[arg(long, requires = "watch")]
    max_builds: Option<u32>,
    /// How to isolate the build: bubblewrap (read-only filesystem) when installed, else unshare.
    #[arg(long, value_enum, default_value_t = SandboxChoice::Auto)]
    sandbox: SandboxChoice,
    /// Print the stored artifact's manifest as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SandboxChoice {
    Auto,
    Bubblewrap,
    Unshare,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("write NAME=VALUE")?;
    Ok((name.to_string(), value.to_string()))
}

fn build_request(args: &BuildArgs) -> anyhow::Result<BuildRequest> {
    let env: BTreeMap<String, String> = args.env.iter().cloned().collect();
    let Some(file) = &args.pipeline_file else {
        if args.outputs.is_empty() {
            bail!("name at least one --output: the paths the build produces");
        }
        return Ok(BuildRequest {
            service: args.service.clone().expect("required by clap"),
            pipeline: args.pipeline.clone().expect("required by clap"),
            source: Source {
                repository: args.repository.clone().expect("required by clap"),
                branch: args.branch.clone(),
            },
            build: Build {
                command: args.build_command.clone().expect("required by clap"),
                outputs: args.outputs.clone(),
                network: args.network,
                timeout: args.timeout,
            },
            review_required: true,
            commit: args.commit.clone(),
            since: args.since.clone(),
            trusted_base: args.trusted_base.clone(),
            env,
            read_only_paths: args.read_only_paths.clone(),
        });
    };
    let loaded = gantry_spec::load(file).map_err(|diagnostics| anyhow::anyhow!("{diagnostics}"))?;
    let spec = loaded.spec;
    let source = match (&args.repository, spec.sources.as_slice()) {
        (None, [first, ..]) => first.clone(),
        (Some(chosen), sources) => match sources.iter().find(|s| s.repository == *chosen) {
            Some(source) => source.clone(),
            None if sources.len() == 1 => {
                Source { repository: chosen.clone(), branch: sources[0].branch.clone() }
            }
            None => bail!(
                "{}: no source {chosen}; the pipeline's sources are {:?}",
                file.display(),
                sources.iter().map(|s| &s.repository).collect::<Vec<_>>()
            ),
        },
        (None, []) => bail!("{}: the pipeline has no `sources`", file.display()),
    };
    let mut request = BuildJob::for_pipeline(&spec, &source, BuilderRole::Local).request;
    request.commit = args.commit.clone();
    request.since = args.since.clone();
    request.trusted_base = args.trusted_base.clone();
    request.env = env;
    request.read_only_paths = args.read_only_paths.clone();
    Ok(request)
}

/// The shortest `--watch` interval: polling a remote more often only loads the forge; push
/// webhooks are the way to react faster.
const MIN_WATCH_INTERVAL_SECONDS: u64 = 5;

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let request = build_request(&args)?;
    let home = args.home.open()?;
    let sandbox = match args.sandbox {
        SandboxChoice::Auto => Sandbox::detect(),
        SandboxChoice::Bubblewrap => Sandbox::Bubblewrap,
        SandboxChoice::Unshare => Sandbox::Unshare,
    };
    if sandbox == Sandbox::Unshare {
        eprintln!(
            "warning: building in the weaker unshare sandbox (no allow-list of host paths); \
             install bubblewrap"
        );
    }
    // A build run by hand signs as the local builder, which production policy does not trust.
    let job = BuildJob { request, sandbox, role: BuilderRole::Local };
    let Some(interval) = args.watch else {
        present_build(&args, &job, build_and_check(&home, &job)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    if interval.as_seconds() < MIN_WATCH_INTERVAL_SECONDS {
        bail!(
            "--watch {interval} is too often; poll at most every {MIN_WATCH_INTERVAL_SECONDS}s, or use push webhooks"
        );
    }
    if job.request.commit.is_some() {
        bail!("--watch builds each new mainline head; it cannot be combined with --commit");
    }
    let mut builds = 0;
    eprintln!(
        "watching {} ({}) every {interval}",
        job.request.source.repository, job.request.source.branch
    );
    loop {
        if let Some(polled) = poll_and_build(&home, &job)? {
            match polled.outcome {
                Ok(checked) => present_build(&args, &job, checked)?,
                Err(error) => {
                    eprintln!("error: building {}: {error:#}", &polled.trigger.commit[..12])
                }
            }
            builds += 1;
            if args.max_builds.is_some_and(|max| builds >= max) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(interval.as_seconds()));
    }
}

fn present_build(args: &BuildArgs, job: &BuildJob, checked: Checked) -> anyhow::Result<()> {
    for rejected in &checked.ignored_approvals {
        eprintln!("warning: approval ignored: {rejected}");
    }
    let manifest = &checked.built.artifact.manifest;
    if args.json {
        print_json(serde_json::to_value(manifest)?)?;
    } else {
        println!("{}", checked.digest());
        eprintln!(
            "built {} from {} in {:?} in {:.1}s: {} file(s), {} bytes, {} dependencies, signed \
             by key {} as {}",
            attestation::subject_name(manifest),
            job.request.source.repository,
            job.sandbox,
            checked.built.elapsed.as_secs_f64(),
            manifest.package.files.len(),
            manifest.package.size,
            manifest.dependencies.len(),
            &checked.signed_by[..16],
            manifest.builder.id,
        );
        for record in &manifest.commits {
            eprintln!(
                "  {} (author {})",
                commit_line(&record.commit, &record.reviewers),
                record.authorship.describe()
            );
        }
    }
    for blocker in &checked.blockers {
        eprintln!("blocked: {blocker}");
    }
    Ok(())
}

fn commit_line(commit: &Commit, reviewers: &[String]) -> String {
    let authors: Vec<String> = commit.authors().map(|p| p.to_string()).collect();
    let reviewed = if reviewers.is_empty() {
        "UNREVIEWED".to_string()
    } else {
        format!("reviewed by {}", reviewers.join(", "))
    };
    format!("{} {} — {}; {}", commit.short_id(), commit.subject, authors.join(", "), reviewed)
}

// ---------------------------------------------------------------------------------------------
// gantry artifact

#[derive(Args)]
pub struct ArtifactArgs {
    #[command(subcommand)]
    command: ArtifactCommand,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process, never stored")]
enum ArtifactCommand {
    /// List stored artifacts, oldest first.
    List {
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an artifact's manifest, blockers and signer.
    Show {
        /// Digest or unique prefix.
        artifact: String,
        /// Print the build log instead.
        #[arg(long)]
        log: bool,
        /// Print digest, manifest, blockers and signing keys as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check an artifact's digest, signature, signer and policy.
    Verify(VerifyArgs),
    /// Copy an artifact, its attestation and manifest out of the store, for hosts and tools.
    Export {
        artifact: String,
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage build keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// A stored artifact's digest (or prefix), or an exported package file.
    #[arg(required_unless_present = "all")]
    artifact: Option<String>,
    /// Verify every stored artifact, one line each (e.g. after revoking a key or adding a block).
    #[arg(long, conflicts_with_all = ["artifact", "attestation", "manifest", "json"])]
    all: bool,
    /// The DSSE envelope [default: the store's, or FILE.intoto.json].
    #[arg(long)]
    attestation: Option<PathBuf>,
    /// The manifest [default: the store's, or FILE.manifest.json].
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Trusted build keys [default: the home's keys/trusted-keys.json].
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
    /// The trust root (base64 public key, from `gantry artifact key root`). Without it, the root
    /// pinned in this home is used, or on first use the one the signed trust list names, which
    /// is then pinned. The trust list is only ever read from its signed copy, and never at a
    /// version older than one this home accepted.
    #[arg(long)]
    trust_root: Option<String>,
    /// Also refuse a trust list older than this version.
    #[arg(long, default_value_t = 0)]
    trust_list_version: u64,
    /// A signed block list the builder published (`gantry block publish`); refused when stale.
    /// Without it, this home's own block list is used.
    #[arg(long)]
    block_list: Option<PathBuf>,
    /// Trusted builder id; repeat for several.
    #[arg(long = "builder-id", default_value = attestation::DEFAULT_BUILDER_ID)]
    builder_ids: Vec<String>,
    /// Allowed source repository; repeat for several. Any when none is given.
    #[arg(long = "repository")]
    repositories: Vec<String>,
    /// The pipeline's mainline branch: refuse artifacts built from any other.
    #[arg(long)]
    branch: Option<String>,
    /// Check for this pipeline: scopes content blocks and must match the provenance.
    #[arg(long)]
    pipeline: Option<String>,
    /// Accept builds that had network access.
    #[arg(long)]
    allow_network_builds: bool,
    /// Do not require every commit to be reviewed (pipelines with `code_review: optional`).
    #[arg(long)]
    no_review_required: bool,
    /// Refuse commits whose author is not authenticated (an SSH signature by a keyring key,
    /// or a verified forge pull request), however many approvals they have.
    #[arg(long)]
    require_authenticated_authors: bool,
    /// A configured trusted base commit (full id): a first artifact's commit range may start
    /// after it; repeat for several. Other ranges must start at an artifact in this home.
    #[arg(long = "trusted-base")]
    trusted_bases: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyUse {
    Service,
    Local,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make the first build key.
    Generate {
        /// Who the key signs for: `service` (the controller's build service) or `local`
        /// (hand-run `gantry build`); recorded in the signed trust list.
        #[arg(long = "for", value_enum, default_value_t = KeyUse::Local)]
        for_builder: KeyUse,
    },
    /// Make a new active key; the old one keeps verifying what it signed until revoked.
    Rotate,
    /// Revoke a key: nothing it signed verifies any more.
    Revoke {
        keyid: String,
        /// Who does it (recorded in the audit trail).
        #[arg(long)]
        by: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// List build keys and their status.
    List,
    /// Print the trust root's public key, for hosts to pin with `artifact verify --trust-root`.
    Root,
}

pub fn artifact(args: ArtifactArgs) -> anyhow::Result<ExitCode> {
    let home = &args.home.open()?;
    match args.command {
        ArtifactCommand::List { pipeline, json } => {
            let all = home.store().list()?;
            let artifacts: Vec<&StoredArtifact> = all
                .iter()
                .filter(|a| pipeline.as_ref().is_none_or(|p| *p == a.manifest.pipeline))
                .collect();
            if json {
                return print_json(serde_json::to_value(
                    artifacts.iter().map(|a| &a.manifest).collect::<Vec<_>>(),
                )?)
                .map(|()| ExitCode::SUCCESS);
            }
            let reviews = reviews(home)?;
            let blocks = home.blocks()?;
            for artifact in artifacts {
                let m = &artifact.manifest;
                let context = Context {
                    pipeline: &m.pipeline,
                    list: &blocks,
                    reviews: Some(&reviews),
                    history: &all,
                };
                let blocked = blockers(m, &context);
                println!(
                    "{}  {}  {}  {}  {}  {}",
                    artifact.digest.short(),
                    m.finished_at.strftime("%Y-%m-%d %H:%M"),
                    m.pipeline,
                    &m.source.commit[..12],
                    m.commits.len(),
                    if blocked.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("BLOCKED ({})", blocked.len())
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArtifactCommand::Show { artifact, log, json } => {
            let stored = home.store().get(&artifact)?;
            if log {
                std::io::stdout().write_all(&home.store().read_log(&stored.digest)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let reviews = reviews(home)?;
            let m = &stored.manifest;
            let (history, blocks) = (home.store().list()?, home.blocks()?);
            let context = Context {
                pipeline: &m.pipeline,
                list: &blocks,
                reviews: Some(&reviews),
                history: &history,
            };
            let found = blockers(m, &context);
            if json {
                let value = serde_json::json!({
                    "digest": stored.digest,
                    "manifest": m,
                    "blockers": found,
                    "signed_by": stored.envelope.signatures.iter().map(|s| &s.keyid).collect::<Vec<_>>(),
                });
                return print_json(value).map(|()| ExitCode::SUCCESS);
            }
            println!("artifact   {}", stored.digest);
            println!("name       {}", attestation::subject_name(m));
            println!("pipeline   {} (service {})", m.pipeline, m.service);
            println!(
                "source     {} {} @ {}",
                m.source.repository, m.source.branch, m.source.commit
            );
            println!(
                "built      {} → {} by {} on {}",
                m.started_at, m.finished_at, m.builder.id, m.builder.host
            );
            println!(
                "build      {} (network: {}, timeout {})",
                m.build.command, m.build.network, m.build.timeout
            );
            println!(
                "signed by  {}",
                stored
                    .envelope
                    .signatures
                    .iter()
                    .map(|s| s.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("commits");
            for record in &m.commits {
                let mut reviewers = record.reviewers.clone();
                reviewers.extend(reviews.reviewers_of(&record.commit));
                reviewers.sort();
                reviewers.dedup();
                println!("  {}", commit_line(&record.commit, &reviewers));
            }
            println!("files");
            for file in &m.package.files {
                println!(
                    "  {:o} {:>10} {} {}",
                    file.mode,
                    file.size,
                    file.digest.short(),
                    file.path
                );
            }
            println!("dependencies ({})", m.dependencies.len());
            for dependency in &m.dependencies {
                println!("  {} ({})", dependency.purl(), dependency.lock_file);
            }
            println!("blockers ({})", found.len());
            for blocker in found {
                println!("  {blocker}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ArtifactCommand::Verify(verify_args) => verify_command(home, verify_args),
        ArtifactCommand::Export { artifact, out } => {
            let exported = home.store().export(&artifact, &out)?;
            println!("{}", exported.package.display());
            Ok(ExitCode::SUCCESS)
        }
        ArtifactCommand::Key { command } => key_command(home, command),
    }
}

fn verify_command(home: &Home, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let trust = Trust {
        trusted_keys: args.trusted_keys.clone(),
        trust_root: args.trust_root.clone(),
        minimum_version: args.trust_list_version,
        published_blocks: args.block_list.clone(),
    };
    let policy = Policy {
        builder_ids: args.builder_ids.clone(),
        repositories: args.repositories.clone(),
        branch: args.branch.clone(),
        require_hermetic: !args.allow_network_builds,
        pipeline: args.pipeline.clone(),
        review_required: !args.no_review_required,
        trusted_bases: args.trusted_bases.clone(),
        require_authenticated_authors: args.require_authenticated_authors,
    };
    let verification = Verification::assemble(home, &trust, policy, Timestamp::now())?;
    let store = home.store();
    let check = |package_digest: Digest, envelope: &[u8], manifest: Option<&[u8]>| {
        verification.check(package_digest, envelope, manifest)
    };
    let history = &verification.history;
    let Some(artifact) = &args.artifact else {
        // --all: every stored artifact, one line each.
        let mut failed = 0;
        for stored in history {
            let verdict = match verification.check_stored(&store, stored)? {
                Ok(_) => "ok".to_string(),
                Err(failure) => {
                    failed += 1;
                    failure.to_string()
                }
            };
            let m = &stored.manifest;
            println!(
                "{}  {}  {}  {verdict}",
                stored.digest.short(),
                m.pipeline,
                &m.source.commit[..12]
            );
        }
        eprintln!("{} artifact(s), {failed} failed verification", history.len());
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    };
    let path = Path::new(artifact);
    let (package_digest, envelope, manifest) = if path.is_file() {
        let digest = Digest::of_reader(std::fs::File::open(path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let beside = Exported::beside(path);
        let envelope_path = args.attestation.clone().unwrap_or(beside.attestation);
        let envelope = std::fs::read(&envelope_path).with_context(|| {
            format!(
                "reading the attestation {}; pass it with --attestation",
                envelope_path.display()
            )
        })?;
        let manifest_path = args.manifest.clone().unwrap_or(beside.manifest);
        let manifest =
            if manifest_path.exists() { Some(std::fs::read(&manifest_path)?) } else { None };
        (digest, envelope, manifest)
    } else {
        let stored = store.get(artifact)?;
        let envelope = match &args.attestation {
            Some(path) => std::fs::read(path)?,
            None => store.read_attestation(&stored.digest)?,
        };
        let manifest = match &args.manifest {
            Some(path) => std::fs::read(path)?,
            None => stored.manifest_bytes.clone(),
        };
        (stored_digest(&store, &stored)?, envelope, Some(manifest))
    };
    match check(package_digest, &envelope, manifest.as_deref()) {
        Ok(verified) => {
            if args.json {
                print_json(
                    serde_json::json!({"verified": true, "digest": package_digest, "signer": verified.signer.keyid}),
                )?;
            } else {
                let retired = matches!(verified.signer.status, KeyStatus::Retired { .. });
                println!(
                    "verified {package_digest}: digest, signature, signer ({}{}) and policy checks passed",
                    &verified.signer.keyid[..16],
                    if retired { ", a retired key" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if args.json {
                print_json(
                    serde_json::json!({"verified": false, "check": failure.check, "detail": failure.detail}),
                )?;
            }
            eprintln!("error: {package_digest} failed verification: {failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn key_command(home: &Home, command: KeyCommand) -> anyhow::Result<ExitCode> {
    let keys = home.keys();
    let now = Timestamp::now();
    match command {
        KeyCommand::Generate { .. } | KeyCommand::Rotate => {
            let key = match command {
                KeyCommand::Generate { for_builder: KeyUse::Service } => {
                    keys.generate_for(now, &service_builder_ids())?
                }
                KeyCommand::Generate { for_builder: KeyUse::Local } => {
                    keys.generate_for(now, &local_builder_ids())?
                }
                _ => keys.rotate(now)?,
            };
            let rotating = matches!(command, KeyCommand::Rotate);
            println!("{}", key.keyid);
            eprintln!(
                "new active build key; copy {} and its signed copy {} to every verifier{}",
                keys.trusted_keys_path().display(),
                keys.signed_trusted_keys_path().display(),
                if rotating {
                    " (artifacts signed by the previous key still verify until it is revoked)"
                } else {
                    ""
                }
            );
        }
        KeyCommand::Revoke { keyid, by, reason } => {
            let key = keys.revoke(&keyid, &by, &reason, now)?;
            println!("{}", key.keyid);
            eprintln!(
                "revoked: artifacts it signed no longer verify; copy {} and {} to every verifier",
                keys.trusted_keys_path().display(),
                keys.signed_trusted_keys_path().display()
            );
        }
        KeyCommand::Root => println!("{}", keys.trust_root_public()?),
        KeyCommand::List => {
            let trusted = keys.trusted()?;
            eprintln!("trust list version {}", trusted.version);
            for key in trusted.keys {
                let status = match &key.status {
                    KeyStatus::Active => "active".to_string(),
                    KeyStatus::Retired { retired_at } => format!("retired {retired_at}"),
                    KeyStatus::Revoked { revoked_at, revoked_by, reason } => {
                        format!("REVOKED {revoked_at} by {revoked_by}: {reason}")
                    }
                };
                println!("{}  created {}  {status}", key.keyid, key.created_at);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// gantry review

#[derive(Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: ReviewCommand,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// Approve a commit, signing the approval with your reviewer key.
    Approve {
        /// The commit (id, prefix, tag or branch).
        commit: String,
        /// The repository holding it: a local path or URL.
        #[arg(long)]
        repository: String,
        /// Your private reviewer key [default: $GANTRY_REVIEWER_KEY].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// List approvals, or the review state of a repository's recent commits.
    List {
        /// Show each commit of this repository's mainline since --since (or the last 20).
        #[arg(long)]
        repository: Option<String>,
        #[arg(long, default_value = "main")]
        branch: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create your personal reviewer key; prints the public key to register.
    Keygen {
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage the team keyring.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Import an approval or push delivered by a forge webhook, after checking its signature.
    Webhook {
        #[arg(long, value_parser = parse_forge)]
        forge: Forge,
        /// The event header (`X-GitHub-Event` or `X-Gitlab-Event`), e.g. `pull_request_review`.
        #[arg(long)]
        event: String,
        /// GitHub's `X-Hub-Signature-256` header.
        #[arg(long)]
        signature: Option<String>,
        /// File holding the webhook's shared secret.
        #[arg(long)]
        secret_file: PathBuf,
        /// The delivery's body, exactly as received.
        #[arg(long)]
        payload: PathBuf,
        /// The repository to read the approved commit from (a local path or URL).
        #[arg(long)]
        repository: String,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member, or replace the member with the same name.
    Add {
        #[arg(long)]
        name: String,
        /// Email the member commits with; repeat for several.
        #[arg(long = "email", required = true)]
        emails: Vec<String>,
        /// Forge login, `github:LOGIN` or `gitlab:LOGIN`; repeat for several.
        #[arg(long = "forge-login")]
        forge_logins: Vec<String>,
        /// The member's public key, as `gantry review keygen` printed it.
        #[arg(long)]
        public_key: String,
        /// An SSH public key the member signs commits with (`ssh-ed25519 AAAA...`, git's
        /// `gpg.format=ssh`); repeat for several. Commits it signs are authenticated as theirs.
        #[arg(long = "ssh-key")]
        ssh_keys: Vec<String>,
        /// Team name, when creating the keyring.
        #[arg(long)]
        team: Option<String>,
    },
    /// List members.
    List,
    /// Sign the readable team keyring with the trust root, after checking who is on it.
    Sign,
}

fn parse_forge(text: &str) -> Result<Forge, String> {
    match text {
        "github" => Ok(Forge::GitHub),
        "gitlab" => Ok(Forge::GitLab),
        other => Err(format!("unknown forge {other:?}; use github or gitlab")),
    }
}

fn open_repository(home: &Home, repository: &str, branch: &str) -> anyhow::Result<Repository> {
    let source = Source { repository: repository.to_string(), branch: branch.to_string() };
    Ok(home.open_repository(&source)?)
}

pub fn review(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let home = &args.home.open()?;
    let now = Timestamp::now();
    match args.command {
        ReviewCommand::Approve { commit, repository, key } => {
            let key_path = key
                .or_else(|| std::env::var_os("GANTRY_REVIEWER_KEY").map(PathBuf::from))
                .context("name your reviewer key with --key or $GANTRY_REVIEWER_KEY (create one with `gantry review keygen`)")?;
            let key = KeyPair::read(&key_path)?;
            let source = Source { repository, branch: "main".into() };
            let (approval, commit) = approve(home, &key, &source, &commit, now)?;
            println!("{} approved {} (\"{}\")", approval.reviewer, commit.id, commit.subject);
        }
        ReviewCommand::List { repository, branch, since, json } => {
            let book = reviews(home)?;
            let Some(repository) = repository else {
                if json {
                    return print_json(serde_json::to_value(book.approvals())?)
                        .map(|()| ExitCode::SUCCESS);
                }
                for approval in book.approvals() {
                    println!(
                        "{}  {}  {}  via {}",
                        approval.approved_at,
                        &approval.commit[..12],
                        approval.reviewer,
                        approval.via
                    );
                }
                return Ok(ExitCode::SUCCESS);
            };
            let opened = open_repository(home, &repository, &branch)?;
            let head = opened.head()?;
            let since = since.map(|s| opened.resolve(&s)).transpose()?;
            let mut commits = opened.commits_between(since.as_deref(), &head)?;
            if since.is_none() {
                commits.truncate(20);
            }
            let rows: Vec<(Commit, Vec<String>)> = commits
                .into_iter()
                .map(|c| {
                    let r = book.reviewers_of(&c);
                    (c, r)
                })
                .collect();
            if json {
                let value: Vec<_> = rows
                    .iter()
                    .map(|(c, r)| serde_json::json!({"commit": c, "reviewers": r}))
                    .collect();
                return print_json(serde_json::to_value(&value)?).map(|()| ExitCode::SUCCESS);
            }
            for (commit, reviewers) in &rows {
                println!("{}", commit_line(commit, reviewers));
            }
        }
        ReviewCommand::Keygen { out } => {
            let key = KeyPair::generate()?;
            key.write(&out)?;
            println!("{}", key.public_base64());
            eprintln!(
                "wrote {}; register the public key above with `gantry review member add --public-key ...`",
                out.display()
            );
        }
        ReviewCommand::Member { command } => match command {
            MemberCommand::Add { name, emails, forge_logins, public_key, ssh_keys, team } => {
                let mut keyring = home.keyring()?;
                if let Some(team) = team {
                    keyring.team = team;
                }
                keyring.upsert(Member {
                    name: name.clone(),
                    emails,
                    forge_logins,
                    public_key,
                    ssh_keys,
                });
                home.write_keyring(&keyring)?;
                eprintln!("{name} can now approve commits for team {}", keyring.team);
            }
            MemberCommand::Sign => {
                let keyring = Keyring::read(&home.keyring_path())?;
                home.keys().trust_root_key()?.context(
                    "this home has no trust root yet; `gantry artifact key generate` makes one",
                )?;
                home.write_keyring(&keyring)?;
                for member in &keyring.members {
                    eprintln!("signed: {} <{}>", member.name, member.emails.join(", "));
                }
            }
            MemberCommand::List => {
                for member in &home.keyring()?.members {
                    println!(
                        "{}  {}  {}",
                        member.name,
                        member.emails.join(","),
                        member.forge_logins.join(",")
                    );
                }
            }
        },
        ReviewCommand::Webhook { forge, event, signature, secret_file, payload, repository } => {
            let secret = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("reading {}", secret_file.display()))?;
            let body = std::fs::read(&payload)
                .with_context(|| format!("reading {}", payload.display()))?;
            let mut headers = BTreeMap::new();
            match forge {
                Forge::GitHub => {
                    headers.insert("X-GitHub-Event".to_string(), event);
                    if let Some(signature) = signature {
                        headers.insert("X-Hub-Signature-256".to_string(), signature);
                    }
                }
                Forge::GitLab => {
                    headers.insert("X-Gitlab-Event".to_string(), event);
                    headers.insert("X-Gitlab-Token".to_string(), secret.trim().to_string());
                }
            }
            let source = Source { repository, branch: "main".into() };
            let delivery = Delivery { headers, body };
            match receive_webhook(home, forge, &delivery, secret.trim(), &source, now)? {
                Received::Approved(recorded) => {
                    println!("{} approved {} via {forge}", recorded.reviewer, recorded.commit);
                }
                Received::Pushed(push) => print_json(serde_json::to_value(&push)?)?,
                Received::Ignored { reason } => eprintln!("ignored: {reason}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// gantry block

#[derive(Args)]
pub struct BlockArgs {
    #[command(subcommand)]
    command: BlockCommand,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Block every artifact containing a commit or a package version.
    Add {
        /// A commit id or prefix (at least 7 hex digits).
        #[arg(long, conflicts_with = "package", required_unless_present = "package")]
        commit: Option<String>,
        /// A package name.
        #[arg(long, requires = "versions")]
        package: Option<String>,
        /// The blocked versions, e.g. `>=1.2.0, <1.2.5`, `=0.3.1` or `*`.
        #[arg(long)]
        versions: Option<String>,
        /// The package's ecosystem (cargo, npm, pypi, go); any when omitted.
        #[arg(long)]
        ecosystem: Option<Ecosystem>,
        /// Only these pipelines (comma-separated); the whole organisation when omitted.
        #[arg(long, value_delimiter = ',')]
        pipelines: Vec<String>,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// Who does it (recorded in the audit trail).
        #[arg(long)]
        by: String,
    },
    /// List blocks in force, or their audit trail.
    List {
        #[arg(long)]
        audit: bool,
        #[arg(long)]
        json: bool,
    },
    /// Lift a block (audited).
    Remove {
        id: String,
        /// Who does it (recorded in the audit trail).
        #[arg(long)]
        by: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Sign the blocks in force, with every artifact they affect, for hosts (`artifact verify
    /// --block-list`); hosts refuse it once older than --max-age. Adding or lifting a block
    /// republishes with the default age.
    Publish {
        /// How long hosts may rely on it.
        #[arg(long, default_value = "1h")]
        max_age: Duration,
    },
}

/// Where `gantry block` publishes the signed block list, in the home.
const PUBLISHED_BLOCKS_FILE: &str = "published-blocks.json";

/// Republishes the signed block list after a change, when the home has a trust root to sign it.
fn republish(home: &Home, now: Timestamp, max_age_seconds: i64) -> anyhow::Result<()> {
    if home.keys().trust_root_key()?.is_none() {
        eprintln!("note: this home has no trust root, so no signed block list was published");
        return Ok(());
    }
    let path = home.root().join(PUBLISHED_BLOCKS_FILE);
    let published = publish_blocks(home, &path, now, max_age_seconds)?;
    eprintln!(
        "published {} ({} block(s), {} affected artifact(s)), fresh until {}",
        gantry_supply::keys::signed_path(&path).display(),
        published.blocks.len(),
        published.affected.len(),
        published.expires_at
    );
    Ok(())
}

pub fn block(args: BlockArgs) -> anyhow::Result<ExitCode> {
    let home = &args.home.open()?;
    let mut list = home.blocks()?;
    let now = Timestamp::now();
    match args.command {
        BlockCommand::Add { commit, package, versions, ecosystem, pipelines, reason, by } => {
            let target = match (commit, package, versions) {
                (Some(commit), _, _) => BlockTarget::Commit { commit: commit.to_lowercase() },
                (None, Some(name), Some(versions)) => {
                    BlockTarget::Package { ecosystem, name, versions: versions.parse()? }
                }
                _ => bail!("name a --commit, or a --package with --versions"),
            };
            let scope = if pipelines.is_empty() {
                BlockScope::Organisation
            } else {
                BlockScope::Pipelines(pipelines)
            };
            let block = list.add(target, scope, &reason, &by, now)?;
            println!("{}", block.id);
            let affected = affected_by_block(&home.store(), &list, &block.id)?;
            eprintln!(
                "blocked {} in {}; {} stored artifact(s) affected",
                block.target,
                block.scope,
                affected.len()
            );
            for artifact in &affected {
                eprintln!(
                    "  {} {} {}",
                    artifact.digest.short(),
                    artifact.manifest.pipeline,
                    &artifact.manifest.source.commit[..12]
                );
            }
            republish(home, now, DEFAULT_MAX_AGE_SECONDS)?;
        }
        BlockCommand::List { audit, json } => {
            if json {
                return print_json(serde_json::to_value(&list)?).map(|()| ExitCode::SUCCESS);
            }
            if audit {
                for entry in &list.audit {
                    match entry {
                        AuditEntry::Added { block } => println!(
                            "{}  added   {}  {}  by {}: {}",
                            block.added_at, block.id, block.target, block.added_by, block.reason
                        ),
                        AuditEntry::Lifted { id, target, by, reason, at } => {
                            println!("{at}  lifted  {id}  {target}  by {by}: {reason}")
                        }
                    }
                }
            } else {
                for block in &list.blocks {
                    println!(
                        "{}  {}  {}  {} ({} by {})",
                        block.id,
                        block.target,
                        block.scope,
                        block.reason,
                        block.added_at,
                        block.added_by
                    );
                }
            }
        }
        BlockCommand::Remove { id, by, reason } => {
            let block = list.lift(&id, &by, &reason, now)?;
            println!("{}", block.id);
            eprintln!("lifted {} ({}); recorded in the audit trail", block.id, block.target);
            republish(home, now, DEFAULT_MAX_AGE_SECONDS)?;
        }
        BlockCommand::Publish { max_age } => {
            let seconds = i64::try_from(max_age.as_seconds()).unwrap_or(i64::MAX);
            republish(home, now, seconds)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
