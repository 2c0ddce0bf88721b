//! The commit range an artifact lists — the commits its review check and content blocks read —
//! is computed from the pipeline's base, never given: `--since` only widens it, the first build
//! needs a configured trusted base, the range has a limit, and a host accepts a range only on a
//! base it verified itself or a configured trusted base.

use gantry_supply::blocks::{BlockScope, BlockTarget, Blocker};
use gantry_supply::build::{BuildRequest, TRUSTED_BASE_ROOT};
use gantry_supply::operations::affected_by_block;
use gantry_supply::source::MAX_COMMITS_PER_ARTIFACT;
use gantry_supply::store::StoredArtifact;
use gantry_supply::verify::VerifiedBase;

mod common;
use common::*;

fn ids(artifact: &StoredArtifact) -> Vec<String> {
    artifact.manifest.commits.iter().map(|r| r.commit.id[..7].to_string()).collect()
}

fn short(commits: &[&str]) -> Vec<String> {
    commits.iter().map(|c| c[..7].to_string()).collect()
}

fn build_with_since(world: &World, commit: &str, since: &str) -> StoredArtifact {
    let request = BuildRequest {
        commit: Some(commit.into()),
        since: Some(since.into()),
        ..world.request(BUILD)
    };
    world.run(&request).unwrap()
}

/// A world whose mainline starts with a reviewed commit built into a deployable artifact.
fn world_with_a_deployable_base() -> (World, String) {
    let world = World::new();
    let base = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &base).unwrap();
    world.build(BUILD).unwrap();
    (world, base)
}

#[test]
fn since_at_a_descendant_does_not_hide_an_unreviewed_commit() {
    let (world, _) = world_with_a_deployable_base();
    let unreviewed =
        world.commit("bob", "unreviewed", &[("main.c", &GREETER.replace("hello", "hi"))]);
    let later = world.commit("bob", "later", &[("main.c", &GREETER.replace("hello", "yo"))]);
    world.approve(&world.alice, &later).unwrap();

    // Building the unreviewed commit "since" its own descendant once listed no commits at all.
    let artifact = build_with_since(&world, &unreviewed, &later);
    assert_eq!(ids(&artifact), short(&[&unreviewed]));
    let refused = world.verify_on_host(&artifact, &world.store().list().unwrap(), &[]).unwrap_err();
    assert!(refused.contains("unreviewed"), "{refused}");
}

#[test]
fn since_at_an_unreviewed_parent_does_not_hide_the_parent() {
    let (world, _) = world_with_a_deployable_base();
    let parent = world.commit("bob", "never built", &[("main.c", &GREETER.replace("hello", "hi"))]);
    let reviewed = world.commit("bob", "reviewed", &[("main.c", &GREETER.replace("hello", "yo"))]);
    world.approve(&world.alice, &reviewed).unwrap();

    let artifact = build_with_since(&world, &reviewed, &parent);
    assert_eq!(ids(&artifact), short(&[&reviewed, &parent]));
    let refused = world.verify_on_host(&artifact, &world.store().list().unwrap(), &[]).unwrap_err();
    assert!(refused.contains(&parent[..12]), "{refused}");
}

#[test]
fn since_does_not_hide_a_blocked_commit_and_the_block_names_the_artifact() {
    let (world, _) = world_with_a_deployable_base();
    let bad = world.commit("bob", "bad", &[("main.c", &GREETER.replace("hello", "hi"))]);
    world.approve(&world.alice, &bad).unwrap();
    let child = world.commit("bob", "child", &[("main.c", &GREETER.replace("hello", "yo"))]);
    world.approve(&world.alice, &child).unwrap();

    let home = world.home();
    let mut blocks = home.blocks().unwrap();
    let block = blocks
        .add(
            BlockTarget::Commit { commit: bad.clone() },
            BlockScope::Organisation,
            "leaks tokens",
            "carol",
            now(),
        )
        .unwrap();
    let checked = world
        .run_job(&BuildRequest {
            commit: Some(child.clone()),
            since: Some(bad.clone()),
            ..world.request(BUILD)
        })
        .unwrap();
    let artifact = &checked.built.artifact;
    assert_eq!(ids(artifact), short(&[&child, &bad]));
    assert!(
        checked
            .blockers
            .iter()
            .any(|b| matches!(b, Blocker::Content { block_id, .. } if *block_id == block.id)),
        "{:?}",
        checked.blockers
    );
    let affected = affected_by_block(&home.store(), &blocks, &block.id).unwrap();
    assert_eq!(
        affected.iter().map(|a| a.digest).collect::<Vec<_>>(),
        [artifact.digest],
        "`gantry block add` lists the artifact"
    );
}

#[test]
fn an_artifact_that_is_not_deployable_is_no_base() {
    let world = World::new();
    let unreviewed = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.build(BUILD).unwrap();
    let reviewed = world.commit("bob", "reviewed", &[("main.c", &GREETER.replace("hello", "yo"))]);
    world.approve(&world.alice, &reviewed).unwrap();

    // The first artifact is blocked (unreviewed), so the next lists its commit again.
    let artifact = world.build(BUILD).unwrap();
    assert_eq!(ids(&artifact), short(&[&reviewed, &unreviewed]));
    assert_eq!(artifact.manifest.source.base_artifact, None);
}

#[test]
fn the_first_build_needs_a_configured_trusted_base() {
    let world = World::new();
    let first = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    let second = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HI"))]);
    let check = |trusted_base: Option<&str>, expected: Result<Vec<String>, &str>| {
        let request =
            BuildRequest { trusted_base: trusted_base.map(str::to_string), ..world.request(BUILD) };
        let got = world.run(&request).map(|a| ids(&a)).map_err(|e| e.to_string());
        match (&got, &expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{trusted_base:?}"),
            (Err(got), Err(expected)) => assert!(got.contains(expected), "{trusted_base:?}: {got}"),
            _ => panic!("{trusted_base:?}: got {got:?}, expected {expected:?}"),
        }
        // Each case starts from an empty store.
        let _ = std::fs::remove_dir_all(world.home().store().root());
    };
    check(None, Err("no trusted base"));
    check(Some("0000000"), Err("no commit 0000000"));
    check(Some(&first), Ok(short(&[&second])));
    check(Some(TRUSTED_BASE_ROOT), Ok(short(&[&second, &first])));
}

#[test]
fn a_trusted_base_off_the_commits_history_is_refused() {
    let world = World::new();
    world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    let later = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HI"))]);
    git(&world.repo(), &["checkout", "--quiet", "-b", "side", "HEAD~1"]);
    let side = world.commit("bob", "side", &[("main.c", &GREETER.replace("hello", "yo"))]);
    git(&world.repo(), &["checkout", "--quiet", "main"]);
    let request =
        BuildRequest { commit: Some(later), trusted_base: Some(side), ..world.request(BUILD) };
    let refused = world.run(&request).unwrap_err().to_string();
    assert!(refused.contains("is not an ancestor"), "{refused}");
}

#[test]
fn a_range_past_the_limit_is_refused_with_what_to_do() {
    let world = World::new();
    world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    // MAX_COMMITS_PER_ARTIFACT more empty commits in one process.
    let mut script = String::new();
    for n in 0..MAX_COMMITS_PER_ARTIFACT {
        let message = format!("empty {n}");
        script.push_str(&format!(
            "commit refs/heads/main\ncommitter bob <bob@example.com> {} +0000\ndata {}\n{message}\n{}\n",
            1_700_000_000 + n,
            message.len(),
            if n == 0 { "from refs/heads/main^0\n" } else { "" }
        ));
    }
    let mut child = std::process::Command::new("git")
        .current_dir(world.repo())
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let refused = world.build(BUILD).unwrap_err().to_string();
    assert!(
        refused.contains(&format!("more than {MAX_COMMITS_PER_ARTIFACT} commits"))
            && refused.contains("trusted base nearer the head"),
        "{refused}"
    );
}

#[test]
fn a_host_accepts_a_range_only_on_a_base_it_verified_or_trusts() {
    let (world, _) = world_with_a_deployable_base();
    let next = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HI"))]);
    world.approve(&world.alice, &next).unwrap();
    world.build(BUILD).unwrap();
    let [first, second] = <[StoredArtifact; 2]>::try_from(world.store().list().unwrap()).unwrap();
    assert_eq!(second.manifest.source.base_artifact, Some(first.digest));

    let root = [TRUSTED_BASE_ROOT];
    /// The artifact, the verifier's history, its trusted bases, and the outcome.
    type Case<'a> = (&'a StoredArtifact, &'a [StoredArtifact], &'a [&'a str], Result<(), &'a str>);
    let cases: [Case; 5] = [
        (&first, &[], &root, Ok(())),
        (&first, &[], &[], Err("not a configured trusted base")),
        (&second, std::slice::from_ref(&first), &[], Ok(())),
        (&second, &[], &root, Err("which this verifier has not verified")),
        (&second, &[], &[], Err("which this verifier has not verified")),
    ];
    // A host that keeps no store but remembers what it verified.
    let remembered = [VerifiedBase::of(&first.manifest)];
    assert_eq!(world.verify_on_host_with(&second, &[], &remembered, &[]), Ok(()));
    let mut elsewhere = remembered[0].clone();
    elsewhere.pipeline = "other-code".into();
    let refused = world.verify_on_host_with(&second, &[], &[elsewhere], &[]).unwrap_err();
    assert!(refused.contains("another pipeline"), "{refused}");

    for (n, (artifact, history, trusted, expected)) in cases.into_iter().enumerate() {
        let got = world.verify_on_host(artifact, history, trusted);
        match (&got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(expected)) => assert!(got.contains(expected), "case {n}: {got}"),
            _ => panic!("case {n}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn a_hand_run_build_in_the_builders_home_is_no_base_for_the_service() {
    // The pipeline's first build is run by hand, in the build service's home.
    let world = World::new();
    let hidden = world.commit("bob", "never reviewed", &[("main.c", GREETER)]);
    let reviewed = world.commit("bob", "reviewed", &[("main.c", &GREETER.replace("hello", "yo"))]);
    world.approve(&world.alice, &reviewed).unwrap();
    // By hand, whoever runs the build names the trusted base: here the unreviewed commit, so
    // the artifact lists only the reviewed one and looks deployable.
    let job = gantry_supply::operations::BuildJob {
        request: BuildRequest { trusted_base: Some(hidden.clone()), ..world.request(BUILD) },
        sandbox: gantry_supply::build::Sandbox::detect(),
        role: gantry_supply::build::BuilderRole::Local,
    };
    let by_hand = gantry_supply::operations::build_and_check(&world.home(), &job).unwrap();
    assert_eq!(ids(&by_hand.built.artifact), short(&[&reviewed]));

    // The service's next build does not start its range there, so the hidden commit is listed.
    let next = world.commit("bob", "next", &[("main.c", &GREETER.replace("hello", "hey"))]);
    world.approve(&world.alice, &next).unwrap();
    let artifact = world.build(BUILD).unwrap();
    assert_ne!(artifact.manifest.source.base_artifact, Some(by_hand.built.artifact.digest));
    assert!(ids(&artifact).contains(&hidden[..7].to_string()), "{:?}", ids(&artifact));

    // A verifier holding the hand-run artifact does not take it as a base either: the
    // service's statement, re-signed as if it had started there, is refused.
    let mut forged = artifact.manifest.clone();
    forged.source.base_artifact = Some(by_hand.built.artifact.digest);
    forged.source.baseline = Some(reviewed.clone());
    forged.commits.retain(|record| record.commit.id != hidden && record.commit.id != reviewed);
    let bytes = forged.to_bytes();
    let statement =
        gantry_supply::attestation::statement(&forged, gantry_supply::Digest::of(&bytes), "forged");
    let key = world.keys().active_key().unwrap();
    let envelope = serde_json::to_vec(&gantry_supply::attestation::sign(&statement, &key)).unwrap();
    let reviews = world.reviews();
    let trusted = world.keys().trusted().unwrap();
    let blocks = world.home().blocks().unwrap();
    let history = world.store().list().unwrap();
    let inputs = gantry_supply::verify::Inputs {
        package_digest: forged.package.digest,
        envelope: &envelope,
        manifest: Some(&bytes),
        trusted: &trusted,
        blocks: Some(&blocks),
        reviews: &reviews,
        history: &history,
        bases: &[],
    };
    let policy = gantry_supply::verify::Policy {
        builder_ids: vec![artifact.manifest.builder.id.clone()],
        ..gantry_supply::verify::Policy::default()
    };
    let refused = gantry_supply::verify::verify(&inputs, &policy).unwrap_err().to_string();
    assert!(refused.contains("which this policy does not trust"), "{refused}");
}
