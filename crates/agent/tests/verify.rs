//! Verification before anything runs: real artifacts built and signed by the supply chain from a
//! git repository; a tampered one, one signed by an untrusted key, one from a disallowed builder
//! and one with a blocked commit are each refused before any hook runs or file is installed (a
//! hook would create a marker file; the files section would install one), and a good one runs.
//! A box loaded from `trust.json` fails closed on its signed lists: an edited or replayed trust
//! list, and an unsigned, stale or replayed block list, each refuse the artifact the same way;
//! lists fetched from the controller count only when the box's own root signed them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration as StdDuration;

use gantry_agent::deploy::{self, DeployRequest};
use gantry_agent::verify::{Artifact, TrustRoot};
use gantry_agent::{Digest, Error};
use gantry_model::pipeline::Build;
use gantry_model::{Duration, Source};
use gantry_supply::blocks::{AffectedArtifact, BlockList, BlockScope, BlockTarget};
use gantry_supply::build::{
    BuildRequest, Builder, BuilderRole, Sandbox, TRUSTED_BASE_ROOT, builder_id,
};
use gantry_supply::keys::{KeyDirectory, TrustedKeys};
use gantry_supply::published_blocks::{PUBLISHED_BLOCKS_PAYLOAD_TYPE, PublishedBlocks};
use gantry_supply::review::{Keyring, ReviewBook};
use gantry_supply::store::Store;
use jiff::Timestamp;

fn git(dir: &Path, args: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let world = World { dir };
        KeyDirectory::new(world.path().join("keys")).generate(Timestamp::now()).unwrap();
        KeyDirectory::new(world.path().join("other-keys")).generate(Timestamp::now()).unwrap();
        let repo = world.repo();
        git(&repo, &["init", "--quiet", "--initial-branch=main", "."]);
        let d = world.destination();
        let marker = world.marker();
        let files = [
            (
                "appspec.yml".to_string(),
                format!(
                    "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {}\nhooks:\n  BeforeInstall:\n    - location: scripts/mark.sh\n",
                    d.display()
                ),
            ),
            ("scripts/mark.sh".to_string(), format!("#!/bin/sh\ntouch {}\n", marker.display())),
            ("app/index.html".to_string(), "hello\n".to_string()),
        ];
        for (path, content) in files {
            let path = repo.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        git(&repo, &["add", "--all"]);
        git(
            &repo,
            &[
                "-c",
                "user.name=bob",
                "-c",
                "user.email=bob@example.com",
                "commit",
                "--quiet",
                "-m",
                "sample",
            ],
        );
        world
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }
    fn destination(&self) -> PathBuf {
        self.path().join("www")
    }
    fn marker(&self) -> PathBuf {
        self.path().join("a-hook-ran")
    }
    fn commit(&self) -> String {
        git(&self.repo(), &["rev-parse", "HEAD"])
    }

    /// Builds the repository's head, signed with the key in `keys`, as `role`.
    fn build(&self, keys: &str, role: BuilderRole, store: &str) -> (Digest, Artifact) {
        let store = Store::new(self.path().join(store));
        let key = KeyDirectory::new(self.path().join(keys)).active_key().unwrap();
        let reviews = ReviewBook::in_memory(Keyring::default());
        let builder = Builder {
            store: &store,
            key: &key,
            reviews: &reviews,
            blocks: &BlockList::default(),
            work_dir: self.path().join("work"),
            cache_dir: self.path().join("cache"),
            role,
            host: "test-builder".into(),
            sandbox: Sandbox::detect(),
            hidden: vec![self.path().join("keys"), self.path().join("other-keys")],
        };
        let request = BuildRequest {
            service: "sample".into(),
            pipeline: "sample-code".into(),
            source: Source { repository: self.repo().display().to_string(), branch: "main".into() },
            build: Build {
                command: "true".into(),
                outputs: vec!["appspec.yml".into(), "scripts".into(), "app".into()],
                network: false,
                timeout: Duration::from_seconds(60),
            },
            review_required: false,
            commit: None,
            since: None,
            trusted_base: Some(TRUSTED_BASE_ROOT.into()),
            env: BTreeMap::new(),
            read_only_paths: Vec::new(),
        };
        let artifact = builder.build(&request).unwrap().artifact;
        let digest = artifact.digest;
        let files = Artifact {
            package: store.read_package(&digest).unwrap(),
            attestation: store.read_attestation(&digest).unwrap(),
            manifest: artifact.manifest_bytes.clone(),
        };
        (digest, files)
    }

    /// The box trusts the key in `keys/` and the default builder; reviews are the supply
    /// chain's own tests' concern.
    fn trust(&self, blocks: BlockList) -> TrustRoot {
        let trusted =
            TrustedKeys::read(&KeyDirectory::new(self.path().join("keys")).trusted_keys_path())
                .unwrap();
        let service = builder_id(BuilderRole::Service, Sandbox::detect());
        TrustRoot::insecure_unpinned(trusted, vec![service.into()], blocks)
            .with_review_required(false)
            .with_trusted_bases(vec![TRUSTED_BASE_ROOT.into()])
    }

    fn deploy(&self, trust: &TrustRoot, digest: Digest, artifact: &Artifact) -> Result<(), Error> {
        let request = DeployRequest {
            deployment_id: "c1".into(),
            pipeline: "sample-code".into(),
            digest,
            target_name: "prod/eu-west-1/eu-west-1a".into(),
            target_id: "prod-eu-west-1-eu-west-1a".into(),
            hook_timeout: StdDuration::from_secs(60),
            health_check: None,
            health_check_timeout: StdDuration::from_secs(60),
        };
        deploy::deploy(&self.path().join("agent"), trust, &request, artifact, None, &mut |_| {})
            .map(|_| ())
    }

    fn nothing_ran(&self) {
        assert!(!self.marker().exists(), "a hook ran");
        assert!(!self.destination().exists(), "a file was installed");
        let pipelines = self.path().join("agent/pipelines/sample-code/revisions");
        let staged = std::fs::read_dir(&pipelines).map(|d| d.count()).unwrap_or(0);
        assert_eq!(staged, 0, "nothing was unpacked");
    }
}

/// Deploys and expects a refusal naming `check`, with nothing run, installed or unpacked.
fn check_refused(
    world: &World,
    trust: &TrustRoot,
    digest: Digest,
    artifact: &Artifact,
    check: &str,
) {
    let error = world.deploy(trust, digest, artifact).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Refused(_)), "{message}");
    assert!(message.contains(check), "expected {check:?} in {message}");
    eprintln!("refused: {message}");
    world.nothing_ran();
}

#[test]
fn only_a_verified_artifact_runs() {
    let world = World::new();
    let (digest, artifact) = world.build("keys", BuilderRole::Service, "store");

    // Tampered: one byte of the package flipped after signing.
    let mut tampered = artifact.clone();
    let last = tampered.package.len() - 1;
    tampered.package[last] ^= 0x01;
    check_refused(
        &world,
        &world.trust(BlockList::default()),
        digest,
        &tampered,
        "digest check failed",
    );

    // A valid artifact, signed by a key this box does not trust.
    let (other_digest, other) = world.build("other-keys", BuilderRole::Service, "other-store");
    check_refused(
        &world,
        &world.trust(BlockList::default()),
        other_digest,
        &other,
        "signer check failed",
    );

    // Built by hand on a laptop: the local builder, which the box's policy does not allow.
    let (rogue_digest, rogue) = world.build("keys", BuilderRole::Local, "rogue-store");
    check_refused(
        &world,
        &world.trust(BlockList::default()),
        rogue_digest,
        &rogue,
        "builders/local",
    );

    // A blocked commit.
    let mut blocks = BlockList::default();
    blocks
        .add(
            BlockTarget::Commit { commit: world.commit() },
            BlockScope::Organisation,
            "leaks customer data",
            "security",
            Timestamp::now(),
        )
        .unwrap();
    check_refused(&world, &world.trust(blocks), digest, &artifact, "leaks customer data");

    // The good artifact runs: its hook leaves the marker and its file is installed.
    world.deploy(&world.trust(BlockList::default()), digest, &artifact).unwrap();
    assert!(world.marker().exists());
    assert_eq!(std::fs::read_to_string(world.destination().join("index.html")).unwrap(), "hello\n");
}

/// `trust.json` as a box is set up with: the root of `keys/`, its signed trust list and the
/// published block list `blocks.json`.
fn write_trust_config(world: &World) -> PathBuf {
    let keys = KeyDirectory::new(world.path().join("keys"));
    let config = serde_json::json!({
        "trusted_keys": keys.trusted_keys_path(),
        "trust_root_key": keys.trust_root_public().unwrap(),
        "builder_ids": [builder_id(BuilderRole::Service, Sandbox::detect())],
        "review_required": false,
        "trusted_bases": [TRUSTED_BASE_ROOT],
        "block_list": "blocks.json",
    });
    let path = world.path().join("trust.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Signs a published block list with `keys/`' trust root, as `gantry block publish` would:
/// published `age` seconds ago, fresh for `max_age` seconds, with `blocks` (each affecting
/// `digest`).
fn publish(world: &World, age: i64, max_age: i64, blocks: BlockList, digest: Digest) {
    let published_at = Timestamp::now() - jiff::SignedDuration::from_secs(age);
    let affected = blocks
        .blocks
        .iter()
        .map(|block| AffectedArtifact { digest, block_ids: vec![block.id.clone()] })
        .collect();
    let list = PublishedBlocks {
        published_at,
        expires_at: published_at + jiff::SignedDuration::from_secs(max_age),
        blocks: blocks.blocks,
        affected,
    };
    KeyDirectory::new(world.path().join("keys"))
        .sign_document(
            &world.path().join("blocks.json"),
            &serde_json::to_vec(&list).unwrap(),
            PUBLISHED_BLOCKS_PAYLOAD_TYPE,
        )
        .unwrap();
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[test]
fn a_loaded_trust_root_refuses_edited_replayed_unsigned_and_stale_lists() {
    let world = World::new();
    let keys = KeyDirectory::new(world.path().join("keys"));
    let list = keys.trusted_keys_path();
    let signed = keys.signed_trusted_keys_path();
    // Version 1 of the trust list, kept to replay; then version 2, whose key signs the build.
    let old = world.path().join("old-trusted-keys.json.dsse");
    copy(&signed, &old);
    keys.rotate(Timestamp::now()).unwrap();
    let current = world.path().join("current-trusted-keys.json.dsse");
    copy(&signed, &current);
    let (digest, artifact) = world.build("keys", BuilderRole::Service, "store");
    let config = write_trust_config(&world);
    publish(&world, 0, 3600, BlockList::default(), digest);
    let state = |name: &str| world.path().join("state").join(name);

    // The trust list edited after the box started: another list's content under the root's
    // signature.
    let trust = TrustRoot::load(&config, &state("edited")).unwrap();
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&signed).unwrap()).unwrap();
    let other: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            KeyDirectory::new(world.path().join("other-keys")).signed_trusted_keys_path(),
        )
        .unwrap(),
    )
    .unwrap();
    envelope["payload"] = other["payload"].clone();
    std::fs::write(&signed, envelope.to_string()).unwrap();
    check_refused(&world, &trust, digest, &artifact, "trust list check failed");
    assert!(TrustRoot::load(&config, &state("edited-again")).is_err(), "an edited list loaded");
    // The readable copy is never what counts: editing it changes nothing.
    copy(&current, &signed);
    let readable = std::fs::read_to_string(&list).unwrap();
    let edited = readable.replace("\"version\": 2", "\"version\": 9");
    assert_ne!(edited, readable, "the readable list names no version 2");
    std::fs::write(&list, edited).unwrap();
    // The older signed list replayed once version 2 was accepted.
    let trust = TrustRoot::load(&config, &state("replayed")).unwrap();
    copy(&old, &signed);
    check_refused(&world, &trust, digest, &artifact, "older than version 2");
    assert!(TrustRoot::load(&config, &state("replayed")).is_err(), "a replayed list loaded");
    copy(&current, &signed);

    // An unsigned block list: the readable copy alone.
    let trust = TrustRoot::load(&config, &state("unsigned")).unwrap();
    std::fs::remove_file(world.path().join("blocks.json.dsse")).unwrap();
    check_refused(&world, &trust, digest, &artifact, "block list check failed");

    // A stale one: published two hours ago, fresh for one.
    publish(&world, 2 * 3600, 3600, BlockList::default(), digest);
    check_refused(&world, &trust, digest, &artifact, "went stale");

    // A block, then the list from before it replayed to lift it.
    let mut blocks = BlockList::default();
    blocks
        .add(
            BlockTarget::Commit { commit: world.commit() },
            BlockScope::Organisation,
            "leaks customer data",
            "security",
            Timestamp::now(),
        )
        .unwrap();
    let trust = TrustRoot::load(&config, &state("blocks-replayed")).unwrap();
    publish(&world, 60, 3600, BlockList::default(), digest);
    publish(&world, 0, 3600, blocks, digest);
    check_refused(&world, &trust, digest, &artifact, "leaks customer data");
    publish(&world, 60, 3600, BlockList::default(), digest);
    check_refused(&world, &trust, digest, &artifact, "older than the one accepted before");

    // The current lists, signed and fresh: the artifact runs.
    publish(&world, 0, 3600, BlockList::default(), digest);
    let trust = TrustRoot::load(&config, &state("good")).unwrap();
    world.deploy(&trust, digest, &artifact).unwrap();
    assert!(world.marker().exists());
}

#[test]
fn lists_fetched_from_the_controller_count_only_when_the_box_root_signed_them() {
    let world = World::new();
    let (digest, artifact) = world.build("keys", BuilderRole::Service, "store");
    publish(&world, 0, 3600, BlockList::default(), digest);
    let keys = KeyDirectory::new(world.path().join("keys"));
    let config = serde_json::json!({
        "trust_root_key": keys.trust_root_public().unwrap(),
        "builder_ids": [builder_id(BuilderRole::Service, Sandbox::detect())],
        "review_required": false,
        "trusted_bases": [TRUSTED_BASE_ROOT],
        "lists_from_controller": true,
    });
    let path = world.path().join("trust-from-controller.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let trust = TrustRoot::load(&path, &world.path().join("state")).unwrap();
    assert!(trust.lists_from_controller());
    let genuine_keys = std::fs::read(keys.signed_trusted_keys_path()).unwrap();
    let genuine_blocks = std::fs::read(world.path().join("blocks.json.dsse")).unwrap();

    // Nothing fetched yet: refused, not trusted by default.
    check_refused(&world, &trust, digest, &artifact, "trust list check failed");
    // A controller serving another root's trust list: refused.
    let forged = std::fs::read(
        KeyDirectory::new(world.path().join("other-keys")).signed_trusted_keys_path(),
    )
    .unwrap();
    trust.store_fetched(&forged, &genuine_blocks).unwrap();
    check_refused(&world, &trust, digest, &artifact, "trust list check failed");
    // The genuine lists, as the controller serves them: the artifact runs.
    trust.store_fetched(&genuine_keys, &genuine_blocks).unwrap();
    world.deploy(&trust, digest, &artifact).unwrap();
    assert!(world.marker().exists());

    // A configuration naming both files and the controller is refused, naming what to remove.
    let mut both = config.clone();
    both["trusted_keys"] = serde_json::json!("trusted-keys.json");
    both["block_list"] = serde_json::json!("blocks.json");
    std::fs::write(&path, both.to_string()).unwrap();
    let error = TrustRoot::load(&path, &world.path().join("state")).err().unwrap().to_string();
    assert!(error.contains("remove trusted_keys and block_list"), "{error}");
    // Neither files nor the controller: the missing field is named.
    let mut neither = config;
    neither["lists_from_controller"] = serde_json::json!(false);
    std::fs::write(&path, neither.to_string()).unwrap();
    let error = TrustRoot::load(&path, &world.path().join("state")).err().unwrap().to_string();
    assert!(error.contains("trusted_keys is required"), "{error}");
}
