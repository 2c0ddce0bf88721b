//! Issue 5's acceptance test: a real git repository holding a small C service, built in the
//! sandbox into signed artifacts, reviewed, verified, tampered with, blocked and re-keyed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gantry_model::Source;
use gantry_supply::Error;
use gantry_supply::blocks::{BlockList, BlockScope, BlockTarget, Blocker, Context, blockers};
use gantry_supply::build::{BuildFailure, BuildRequest};
use gantry_supply::store::StoredArtifact;
use gantry_supply::verify::Check;
use jiff::Timestamp;

mod common;
use common::*;

#[test]
fn reviewed_commit_builds_into_a_signed_artifact_naming_commit_and_reviewer() {
    let world = World::new();
    let commit = world.commit(
        "bob",
        "greeter service",
        &[("main.c", GREETER), ("requirements.txt", "six==1.16.0\n")],
    );
    let refused = world.approve(&world.bob, &commit).unwrap_err();
    assert!(refused.to_string().contains("bob may not approve commit"), "{refused}");
    world.approve(&world.alice, &commit).unwrap();

    let artifact = world.build(BUILD).unwrap();
    let (package, envelope, manifest) = world.files(&artifact);
    assert_eq!(world.verify(&package, &envelope, &manifest, &BlockList::default()), Ok(()));

    let statement = statement_of(&envelope);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], artifact.digest.hex());
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(definition["externalParameters"]["source"]["commit"], commit);
    assert_eq!(definition["resolvedDependencies"][0]["digest"]["gitCommit"], commit);
    assert_eq!(definition["resolvedDependencies"][1]["uri"], "pkg:pypi/six@1.16.0");
    assert_eq!(
        definition["internalParameters"]["commits"][0]["reviewers"],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        definition["internalParameters"]["commits"][0]["authors"],
        serde_json::json!(["bob <bob@example.com>"])
    );

    let files: Vec<&str> =
        artifact.manifest.package.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, [".gantry/origin.json", "out/greeter"]);
    let store = world.store();
    assert_eq!(String::from_utf8_lossy(&store.read_log(&artifact.digest).unwrap()), "");
}

#[test]
fn unreviewed_and_self_approved_commits_are_blocked_by_name() {
    let world = World::new();
    let first = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &first).unwrap();
    world.build(BUILD).unwrap();

    let second =
        world.commit("alice", "louder greeting", &[("main.c", &GREETER.replace("hello", "HELLO"))]);
    assert!(
        world.approve(&world.alice, &second).unwrap_err().to_string().contains("they wrote it")
    );
    let artifact = world.build(BUILD).unwrap();
    assert_eq!(artifact.manifest.commits.len(), 1, "only the commits since the last artifact");
    let (package, envelope, manifest) = world.files(&artifact);
    assert_eq!(
        world.verify(&package, &envelope, &manifest, &BlockList::default()),
        Err(Check::Policy)
    );

    let reviews = world.reviews();
    let empty = BlockList::default();
    let context =
        Context { reviews: Some(&reviews), ..Context::content_only("greeter-code", &empty) };
    let found = blockers(&artifact.manifest, &context);
    let [Blocker::UnreviewedCommits { commits }] = &found[..] else {
        panic!("expected one review blocker: {found:?}")
    };
    assert_eq!(commits.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [second.as_str()]);
    assert!(found[0].why().contains("louder greeting"), "{}", found[0].why());

    // Bob reviews it after the build: the blocker clears without a rebuild.
    world.approve(&world.bob, &second).unwrap();
    assert_eq!(world.verify(&package, &envelope, &manifest, &BlockList::default()), Ok(()));
}

#[test]
fn a_build_that_opens_a_network_connection_fails_and_says_so() {
    let world = World::new();
    let commit = world.commit("bob", "fetch at build time", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    for command in [
        "git clone --quiet https://example.com/vendor.git out/vendor",
        "git ls-remote http://127.0.0.1:9/repo.git",
    ] {
        let error = world.build(command).unwrap_err();
        let Error::Build { failure: BuildFailure::NetworkDenied { evidence, .. }, log } = &error
        else {
            panic!("{command}: {error}")
        };
        assert!(!evidence.is_empty());
        let whole_log = std::fs::read_to_string(log).unwrap();
        assert!(
            whole_log.contains(evidence.as_str()),
            "the failed build's log is kept: {whole_log}"
        );
        assert!(error.to_string().contains("builds run without network access"), "{error}");
    }
    assert!(world.store().list().unwrap().is_empty(), "a failed build stores nothing");
}

#[test]
fn flipping_one_byte_fails_verification_naming_the_check() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let artifact = world.build(BUILD).unwrap();
    let (package, envelope, manifest) = world.files(&artifact);
    let text = String::from_utf8(envelope.clone()).unwrap();
    let position = |needle: &str, skip: usize| text.find(needle).unwrap() + needle.len() + skip;

    let flip = |bytes: &[u8], at: usize| {
        let mut copy = bytes.to_vec();
        copy[at] = if copy[at] == b'A' { b'B' } else { b'A' };
        copy
    };
    let cases = [
        (
            "package, first byte",
            flip(&package, 0),
            envelope.clone(),
            manifest.clone(),
            Err(Check::Digest),
        ),
        (
            "package, last byte",
            flip(&package, package.len() - 1),
            envelope.clone(),
            manifest.clone(),
            Err(Check::Digest),
        ),
        (
            "envelope payload",
            package.clone(),
            flip(&envelope, position("\"payload\": \"", 300)),
            manifest.clone(),
            Err(Check::Signature),
        ),
        (
            "envelope payload type",
            package.clone(),
            flip(&envelope, position("\"payloadType\": \"", 3)),
            manifest.clone(),
            Err(Check::Signature),
        ),
        (
            "envelope signature",
            package.clone(),
            flip(&envelope, position("\"sig\": \"", 10)),
            manifest.clone(),
            Err(Check::Signature),
        ),
        (
            "envelope keyid",
            package.clone(),
            flip(&envelope, position("\"keyid\": \"", 5)),
            manifest.clone(),
            Err(Check::Signer),
        ),
        (
            "envelope JSON",
            package.clone(),
            flip(&envelope, 0),
            manifest.clone(),
            Err(Check::Signature),
        ),
        ("manifest", package.clone(), envelope.clone(), flip(&manifest, 40), Err(Check::Digest)),
        ("untouched", package.clone(), envelope.clone(), manifest.clone(), Ok(())),
    ];
    for (name, package, envelope, manifest, expected) in cases {
        assert_eq!(
            world.verify(&package, &envelope, &manifest, &BlockList::default()),
            expected,
            "{name}"
        );
    }

    // The store re-hashes on read, and never overwrites.
    let path = world.store().package_path(&artifact.digest);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, flip(&package, 5)).unwrap();
    assert!(matches!(world.store().read_package(&artifact.digest), Err(Error::Corrupt { .. })));
}

#[test]
fn the_store_refuses_to_store_an_artifact_twice() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    world.build("mkdir -p out && echo reproducible > out/file").unwrap();
    // The same commit again, from the same base: a byte-identical package.
    let again = BuildRequest {
        commit: Some(commit.clone()),
        ..world.request("mkdir -p out && echo reproducible > out/file")
    };
    assert!(matches!(world.run(&again), Err(Error::AlreadyStored { .. })));
}

#[test]
fn blocking_a_package_version_blocks_exactly_the_artifacts_containing_it() {
    let world = World::new();
    let lock = |version: &str| format!("six=={version}\nflask>=2\n");
    let mut artifacts = Vec::new();
    for (message, version) in
        [("six 1.15", "1.15.0"), ("six 1.16", "1.16.0"), ("six 1.17", "1.17.0")]
    {
        let commit = world.commit(
            "bob",
            message,
            &[("main.c", GREETER), ("requirements.txt", &lock(version))],
        );
        world.approve(&world.alice, &commit).unwrap();
        artifacts.push(world.build(BUILD).unwrap());
    }
    let mut blocks = BlockList::default();
    blocks
        .add(
            BlockTarget::Package {
                ecosystem: None,
                name: "SIX".into(),
                versions: ">=1.16.0, <1.17.0".parse().unwrap(),
            },
            BlockScope::Organisation,
            "CVE-2026-0001",
            "security",
            now(),
        )
        .unwrap();
    let verdicts: Vec<Result<(), Check>> = artifacts
        .iter()
        .map(|artifact| {
            let (package, envelope, manifest) = world.files(artifact);
            world.verify(&package, &envelope, &manifest, &blocks)
        })
        .collect();
    assert_eq!(verdicts, [Ok(()), Err(Check::Policy), Ok(())]);

    // Running stages that run the blocked artifact are flagged for rollback.
    let running: Vec<(String, &gantry_supply::artifact::Manifest)> = artifacts
        .iter()
        .zip(["gamma", "wave-1", "wave-2"])
        .map(|(a, stage)| (stage.to_string(), &a.manifest))
        .collect();
    let flagged: Vec<String> = gantry_supply::blocks::flag_running(
        &running,
        &Context::content_only("greeter-code", &blocks),
    )
    .into_iter()
    .map(|f| f.stage)
    .collect();
    assert_eq!(flagged, ["wave-1"]);

    // Scoped to another pipeline, the block leaves these alone.
    let mut scoped = BlockList::default();
    scoped
        .add(
            BlockTarget::Commit { commit: artifacts[0].manifest.source.commit[..10].to_string() },
            BlockScope::Pipelines(vec!["other".into()]),
            "bad",
            "sec",
            now(),
        )
        .unwrap();
    let (package, envelope, manifest) = world.files(&artifacts[0]);
    assert_eq!(world.verify(&package, &envelope, &manifest, &scoped), Ok(()));
}

#[test]
fn a_blocked_commit_blocks_every_later_artifact_built_on_it() {
    let world = World::new();
    let mut artifacts = Vec::new();
    for (author, reviewer, message) in [
        ("bob", &world.alice, "first"),
        ("alice", &world.bob, "second"),
        ("bob", &world.alice, "third"),
    ] {
        let commit =
            world.commit(author, message, &[("main.c", &GREETER.replace("hello", message))]);
        world.approve(reviewer, &commit).unwrap();
        artifacts.push(world.build(BUILD).unwrap());
    }
    let verdicts = |blocked: &str| -> Vec<Result<(), Check>> {
        let mut blocks = BlockList::default();
        blocks
            .add(
                BlockTarget::Commit { commit: blocked[..8].to_string() },
                BlockScope::Organisation,
                "bad",
                "sec",
                now(),
            )
            .unwrap();
        artifacts
            .iter()
            .map(|artifact| {
                let (package, envelope, manifest) = world.files(artifact);
                world.verify(&package, &envelope, &manifest, &blocks)
            })
            .collect()
    };
    let second = artifacts[1].manifest.source.commit.clone();
    assert_eq!(verdicts(&second), [Ok(()), Err(Check::Policy), Err(Check::Policy)]);
    let third = artifacts[2].manifest.source.commit.clone();
    assert_eq!(verdicts(&third), [Ok(()), Ok(()), Err(Check::Policy)]);
}

#[test]
fn rotated_keys_keep_verifying_until_revoked() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let old = world.build(BUILD).unwrap();
    let old_key = world.keys().active_key().unwrap().keyid;
    world.keys().rotate(Timestamp::now()).unwrap();

    let next = world.commit("alice", "second", &[("main.c", &GREETER.replace("hello", "hi"))]);
    world.approve(&world.bob, &next).unwrap();
    let new = world.build(BUILD).unwrap();
    assert_ne!(new.envelope.signatures[0].keyid, old_key);

    let check = |artifact: &StoredArtifact| {
        let (package, envelope, manifest) = world.files(artifact);
        world.verify(&package, &envelope, &manifest, &BlockList::default())
    };
    assert_eq!((check(&old), check(&new)), (Ok(()), Ok(())));

    // A retired key vouches only for builds that finished before it retired.
    let trusted_path = world.keys().trusted_keys_path();
    let honest = std::fs::read_to_string(&trusted_path).unwrap();
    let mut backdated: serde_json::Value = serde_json::from_str(&honest).unwrap();
    backdated["keys"][0]["retired_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&trusted_path, backdated.to_string()).unwrap();
    assert_eq!(check(&old), Err(Check::Signer));
    std::fs::write(&trusted_path, honest).unwrap();

    world.keys().revoke(&old_key, "security", "builder disk image leaked", now()).unwrap();
    assert_eq!((check(&old), check(&new)), (Err(Check::Signer), Ok(())));
}

#[test]
fn a_squash_merge_of_an_approved_branch_counts_as_reviewed() {
    let world = World::new();
    let base = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &base).unwrap();
    world.build(BUILD).unwrap();

    git(&world.repo(), &["checkout", "--quiet", "-b", "feature"]);
    let reviewed = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HELLO"))]);
    world.approve(&world.alice, &reviewed).unwrap();
    git(&world.repo(), &["checkout", "--quiet", "main"]);
    git(&world.repo(), &["merge", "--quiet", "--squash", "feature"]);
    let squashed = world.commit("bob", "louder (#12)", &[]);
    assert_ne!(squashed, reviewed);

    let artifact = world.build(BUILD).unwrap();
    let ids: Vec<&str> = artifact.manifest.commits.iter().map(|r| r.commit.id.as_str()).collect();
    assert_eq!(ids, [squashed.as_str()], "the feature branch's own commit is not on the mainline");
    assert_eq!(artifact.manifest.commits[0].reviewers, ["alice"]);
    let (package, envelope, manifest) = world.files(&artifact);
    assert_eq!(world.verify(&package, &envelope, &manifest, &BlockList::default()), Ok(()));
}

/// Reference implementations verify Gantry's attestations: securesystemslib checks the DSSE
/// signature, in-toto-attestation's protobufs parse the Statement v1 and SLSA Provenance v1
/// strictly (see `tests/interop/check_attestation.py`).
///
/// Skipped when `GANTRY_INTEROP_PYTHON` is unset, unless `GANTRY_REQUIRE_PYTHON_INTEROP` is set
/// (as `.ci/run` does, after making the environment), which makes a missing Python a failure.
#[test]
fn reference_in_toto_and_dsse_implementations_verify_the_attestation() {
    let Some(python) = std::env::var_os("GANTRY_INTEROP_PYTHON") else {
        assert!(
            std::env::var_os("GANTRY_REQUIRE_PYTHON_INTEROP").is_none(),
            "GANTRY_REQUIRE_PYTHON_INTEROP is set but GANTRY_INTEROP_PYTHON is not: point it at \
             a Python with in-toto-attestation, securesystemslib and cryptography (.ci/run makes one)"
        );
        eprintln!("skipped: set GANTRY_INTEROP_PYTHON to run the reference verifiers");
        return;
    };
    let world = World::new();
    let commit =
        world.commit("bob", "greeter service", &[("main.c", GREETER), ("Cargo.lock", CARGO_LOCK)]);
    world.approve(&world.alice, &commit).unwrap();
    let artifact = world.build(BUILD).unwrap();
    let exported =
        world.store().export(&artifact.digest.hex(), &world.dir.path().join("export")).unwrap();
    let (package_path, envelope_path) = (exported.package, exported.attestation);
    let envelope = std::fs::read(&envelope_path).unwrap();
    let check = |envelope: &[u8]| {
        std::fs::write(&envelope_path, envelope).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_attestation.py");
        let output = Command::new(&python)
            .arg(script)
            .args([&package_path, &envelope_path, &world.keys().trusted_keys_path()])
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (ok, stderr) = check(&envelope);
    assert!(ok, "{stderr}");
    let mut tampered = envelope.clone();
    let at = String::from_utf8_lossy(&envelope).find("\"payload\": \"").unwrap() + 200;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert!(!check(&tampered).0, "the reference verifier accepted an altered payload");
}

const CARGO_LOCK: &str = r#"version = 4

[[package]]
name = "serde"
version = "1.0.210"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a"
"#;

#[test]
fn a_signed_push_webhook_starts_a_build_of_the_pushed_commit() {
    use gantry_supply::webhook::{Delivery, Forge, WebhookEvent, github_signature, receive};
    let world = World::new();
    let first = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    let second = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HELLO"))]);
    world.approve(&world.alice, &first).unwrap();
    world.approve(&world.alice, &second).unwrap();
    let payload = serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": second,
        "repository": {"clone_url": format!("file://{}", world.repo().display())},
        "commits": [
            {"id": first, "message": "greeter service", "timestamp": "2026-11-21T10:00:00Z",
             "author": {"name": "bob", "email": "bob@example.com"}},
            {"id": second, "message": "louder", "timestamp": "2026-11-21T10:05:00Z",
             "author": {"name": "bob", "email": "bob@example.com"}},
        ],
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let delivery = Delivery {
        headers: BTreeMap::from([
            ("X-GitHub-Event".to_string(), "push".to_string()),
            ("X-Hub-Signature-256".to_string(), github_signature("hook-secret", &body)),
        ]),
        body,
    };
    let WebhookEvent::Push(push) = receive(Forge::GitHub, &delivery, "hook-secret").unwrap() else {
        panic!("a push")
    };
    let source = Source { repository: world.repo().display().to_string(), branch: "main".into() };
    let trigger = push.trigger_for(&source).expect("the push moved this pipeline's source");
    assert_eq!(
        trigger.commits.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [second.as_str(), first.as_str()]
    );

    let artifact = world.build_commit(BUILD, &trigger.commit).unwrap();
    assert_eq!(artifact.manifest.source.commit, second);
    assert_eq!(artifact.manifest.commits.len(), 2);
    assert!(
        receive(Forge::GitHub, &delivery, "another-secret").is_err(),
        "a forged delivery is refused"
    );
}

#[test]
fn rebuilding_an_older_commit_still_lists_its_unreviewed_commits() {
    let world = World::new();
    let unreviewed = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    let reviewed = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HELLO"))]);
    world.approve(&world.alice, &reviewed).unwrap();
    let newer = world.build(BUILD).unwrap();
    assert_eq!(newer.manifest.unreviewed().count(), 1);

    // Building the older commit after the newer one: the newer artifact is not its baseline.
    let older = world.build_commit(BUILD, &unreviewed).unwrap();
    let ids: Vec<&str> = older.manifest.commits.iter().map(|r| r.commit.id.as_str()).collect();
    assert_eq!(ids, [unreviewed.as_str()]);
    assert_eq!(older.manifest.source.baseline, None);
    let (package, envelope, manifest) = world.files(&older);
    assert_eq!(
        world.verify(&package, &envelope, &manifest, &BlockList::default()),
        Err(Check::Policy)
    );
}

#[test]
fn a_build_cannot_read_or_replace_the_build_keys() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let keys = world.home().keys_dir();
    let trusted_before = std::fs::read(keys.join("trusted-keys.json")).unwrap();
    let command = format!(
        "mkdir -p out; cat {0}/*.key > out/stolen 2>/dev/null; echo '{{}}' > {0}/trusted-keys.json 2>/dev/null; true",
        keys.display()
    );
    let artifact = world.build(&command).unwrap();
    let stolen = artifact.manifest.package.files.iter().find(|f| f.path == "out/stolen").unwrap();
    assert_eq!(stolen.size, 0, "the build read a private key");
    assert_eq!(std::fs::read(keys.join("trusted-keys.json")).unwrap(), trusted_before);
}

#[test]
fn remote_repositories_are_mirrored_and_built() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let url = format!("file://{}", world.repo().display());
    let request = BuildRequest {
        source: Source { repository: url.clone(), branch: "main".into() },
        ..world.request(BUILD)
    };
    let built = world.run(&request).unwrap();
    assert_eq!(
        (built.manifest.source.repository.as_str(), built.manifest.source.commit.as_str()),
        (url.as_str(), commit.as_str())
    );
    assert_eq!(built.manifest.commits[0].reviewers, ["alice"]);
    let statement = statement_of(&world.files(&built).1);
    assert_eq!(
        statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"],
        format!("git+{url}@refs/heads/main")
    );

    // A new commit upstream reaches the mirror on the next build.
    let next = world.commit("alice", "louder", &[("main.c", &GREETER.replace("hello", "HELLO"))]);
    let built = world.run(&request).unwrap();
    assert_eq!(built.manifest.source.commit, next);
    assert_eq!(built.manifest.source.baseline.as_deref(), Some(commit.as_str()));
}

#[test]
fn the_controllers_poll_builds_each_new_mainline_head_once_as_the_build_service() {
    use gantry_supply::build::{BuilderRole, Sandbox, builder_id};
    use gantry_supply::operations::{BuildJob, poll_and_build};
    let world = World::new();
    let first = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &first).unwrap();
    let job = BuildJob {
        request: world.request(BUILD),
        sandbox: Sandbox::detect(),
        role: BuilderRole::Service,
    };
    let home = world.home();
    let polled = poll_and_build(&home, &job).unwrap().expect("a new head");
    let checked = polled.outcome.unwrap();
    assert_eq!(checked.built.artifact.manifest.source.commit, first);
    assert_eq!(
        checked.built.artifact.manifest.builder.id,
        builder_id(BuilderRole::Service, Sandbox::detect())
    );
    assert!(checked.deployable(), "{:?}", checked.blockers);
    assert!(poll_and_build(&home, &job).unwrap().is_none(), "the same head is not built twice");

    let second = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HI"))]);
    let checked = poll_and_build(&home, &job).unwrap().unwrap().outcome.unwrap();
    let manifest = &checked.built.artifact.manifest;
    assert_eq!(manifest.source.commit, second);
    assert_eq!(manifest.commits.len(), 1, "the range starts at the first artifact");
    assert!(!checked.deployable(), "the second commit is unreviewed");
}
