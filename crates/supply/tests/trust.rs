//! What a verifier trusts, and for how long: the trust list only as its root signed it (pinned on
//! first use, never rolled back), each build key only for the builders it is bound to, a hand
//! run build as the local builder production refuses, and a block list only signed and fresh —
//! naming, for a host without the builder's store, the artifacts built on a blocked commit.

use std::path::{Path, PathBuf};

use gantry_supply::blocks::{BlockScope, BlockTarget};
use gantry_supply::build::{BuilderRole, LOCAL_BUILDER_ID, Sandbox, TRUSTED_BASE_ROOT};
use gantry_supply::home::Home;
use gantry_supply::keys::{KeyPair, TrustedKeys, signed_path};
use gantry_supply::operations::{BuildJob, Trust, Verification, build_and_check, publish_blocks};
use gantry_supply::store::StoredArtifact;
use gantry_supply::verify::Policy;
use jiff::{SignedDuration, Timestamp};

mod common;
use common::*;

/// A host: its own home (where it pins), with copies of what the builder published.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host { dir: tempfile::tempdir().unwrap() }
    }
    fn home(&self) -> Home {
        Home::new(self.dir.path()).unwrap()
    }
    fn trusted_keys(&self) -> PathBuf {
        self.dir.path().join("trusted-keys.json")
    }
    fn blocks(&self) -> PathBuf {
        self.dir.path().join("published-blocks.json")
    }
    /// Copies a file and its signed copy from the builder.
    fn receive(&self, from: &Path, to: &Path) {
        std::fs::copy(from, to).unwrap();
        let _ = std::fs::copy(signed_path(from), signed_path(to));
    }
    fn receive_trust_list(&self, world: &World) {
        self.receive(&world.keys().trusted_keys_path(), &self.trusted_keys());
    }

    /// Verifies `artifact` with the host's pinned trust: the failure's message.
    fn verify(
        &self,
        world: &World,
        artifact: &StoredArtifact,
        blocks: bool,
        now: Timestamp,
        policy: Policy,
    ) -> Result<(), String> {
        let trust = Trust {
            trusted_keys: Some(self.trusted_keys()),
            published_blocks: blocks.then(|| self.blocks()),
            ..Trust::default()
        };
        let verification = Verification::assemble(&self.home(), &trust, policy, now)
            .map_err(|error| error.to_string())?;
        let (package, envelope, manifest) = world.files(artifact);
        verification
            .check(gantry_supply::Digest::of(&package), &envelope, Some(&manifest))
            .map(|_| ())
            .map_err(|failure| failure.to_string())
    }
}

fn policy() -> Policy {
    Policy {
        trusted_bases: vec![TRUSTED_BASE_ROOT.into()],
        builder_ids: vec![
            gantry_supply::build::builder_id(BuilderRole::Service, Sandbox::detect()).into(),
        ],
        ..Policy::default()
    }
}

fn reviewed_artifact(world: &World) -> StoredArtifact {
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    world.build(BUILD).unwrap()
}

fn expect(got: Result<(), String>, expected: Result<(), &str>, what: &str) {
    match (&got, expected) {
        (Ok(()), Ok(())) => {}
        (Err(got), Err(expected)) => assert!(got.contains(expected), "{what}: {got}"),
        _ => panic!("{what}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn an_edited_trust_list_is_not_trusted() {
    let world = World::new();
    let artifact = reviewed_artifact(&world);
    let host = Host::new();
    host.receive_trust_list(&world);
    expect(host.verify(&world, &artifact, false, now(), policy()), Ok(()), "as published");

    // A rogue key added to the readable list: only the signed copy counts.
    let rogue = KeyPair::from_seed([9; 32]);
    let mut edited: TrustedKeys =
        serde_json::from_slice(&std::fs::read(host.trusted_keys()).unwrap()).unwrap();
    let mut entry = edited.keys[0].clone();
    entry.keyid = rogue.keyid.clone();
    entry.public_key = rogue.public_base64();
    edited.keys.push(entry);
    std::fs::write(host.trusted_keys(), serde_json::to_vec(&edited).unwrap()).unwrap();
    let trust = Trust { trusted_keys: Some(host.trusted_keys()), ..Trust::default() };
    let verification = Verification::assemble(&host.home(), &trust, policy(), now()).unwrap();
    assert!(verification.trusted.find(&rogue.keyid).is_none(), "the edited copy was read");

    // The signed copy edited, or re-signed by another root after the first was pinned.
    let signed = signed_path(&host.trusted_keys());
    let original = std::fs::read(&signed).unwrap();
    let mut flipped = original.clone();
    let at = String::from_utf8_lossy(&original).find("\"payload\": \"").unwrap() + 40;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&signed, &flipped).unwrap();
    expect(
        host.verify(&world, &artifact, false, now(), policy()),
        Err("not signed by the pinned trust root"),
        "edited signed copy",
    );
    let other_root = KeyPair::from_seed([8; 32]);
    edited.trust_root = Some(other_root.public_base64());
    edited.version += 1;
    gantry_supply::keys::write_signed(
        &host.trusted_keys(),
        &serde_json::to_vec(&edited).unwrap(),
        gantry_supply::keys::TRUSTED_KEYS_PAYLOAD_TYPE,
        &other_root,
    )
    .unwrap();
    expect(
        host.verify(&world, &artifact, false, now(), policy()),
        Err("not signed by the pinned trust root"),
        "re-signed by another root",
    );
    // A host that never pinned, given the re-signed list with a configured root, refuses too.
    let fresh = Host::new();
    fresh.receive(&host.trusted_keys(), &fresh.trusted_keys());
    let configured = Trust {
        trusted_keys: Some(fresh.trusted_keys()),
        trust_root: Some(world.keys().trust_root_public().unwrap()),
        ..Trust::default()
    };
    let refused = Verification::assemble(&fresh.home(), &configured, policy(), now());
    assert!(refused.is_err(), "a list signed by another root was accepted");
}

#[test]
fn a_replayed_trust_list_is_refused_without_any_flag() {
    let world = World::new();
    let artifact = reviewed_artifact(&world);
    let host = Host::new();
    host.receive_trust_list(&world);
    expect(host.verify(&world, &artifact, false, now(), policy()), Ok(()), "version 1");
    let old = tempfile::tempdir().unwrap();
    let old_copy = old.path().join("trusted-keys.json");
    host.receive(&host.trusted_keys(), &old_copy);

    // The key is revoked: version 2 reaches the host, which pins it.
    let keyid = world.keys().trusted().unwrap().keys[0].keyid.clone();
    world.keys().revoke(&keyid, "sec", "leaked", now()).unwrap();
    host.receive_trust_list(&world);
    expect(host.verify(&world, &artifact, false, now(), policy()), Err("revoked"), "version 2");

    // Replaying version 1 (signed, by the right root) would un-revoke it.
    host.receive(&old_copy, &host.trusted_keys());
    expect(
        host.verify(&world, &artifact, false, now(), policy()),
        Err("older than version 2, already accepted"),
        "replayed version 1",
    );
}

#[test]
fn a_second_trust_list_under_an_accepted_version_is_refused() {
    let world = World::new();
    let artifact = reviewed_artifact(&world);
    let host = Host::new();
    host.receive_trust_list(&world);
    expect(host.verify(&world, &artifact, false, now(), policy()), Ok(()), "version 1");
    // The trust root signs another list under the same version (one never published, or kept
    // by a second builder): it binds a stranger's key to the service.
    let mut other: TrustedKeys = world.keys().trusted().unwrap();
    let stranger = KeyPair::from_seed([8; 32]);
    other.keys.push(gantry_supply::keys::TrustedKey {
        keyid: stranger.keyid.clone(),
        public_key: stranger.public_base64(),
        ..other.keys[0].clone()
    });
    let bytes = serde_json::to_vec_pretty(&other).unwrap();
    world
        .keys()
        .sign_document(&host.trusted_keys(), &bytes, gantry_supply::keys::TRUSTED_KEYS_PAYLOAD_TYPE)
        .unwrap();
    expect(
        host.verify(&world, &artifact, false, now(), policy()),
        Err("trust list version 1 differs from the version 1 accepted before"),
        "same version, other content",
    );
    // The list first accepted still verifies.
    host.receive_trust_list(&world);
    expect(host.verify(&world, &artifact, false, now(), policy()), Ok(()), "version 1 again");
}

#[test]
fn a_hand_run_build_signs_as_the_local_builder_that_production_refuses() {
    let world = World::new();
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let job = BuildJob {
        request: world.request(BUILD),
        sandbox: Sandbox::detect(),
        role: BuilderRole::Local,
    };
    let checked = build_and_check(&world.home(), &job).unwrap();
    let artifact = &checked.built.artifact;
    assert_eq!(artifact.manifest.builder.id, LOCAL_BUILDER_ID, "no caller names its builder");
    let host = Host::new();
    host.receive_trust_list(&world);
    expect(
        host.verify(&world, artifact, false, now(), policy()),
        Err("builder https://gantry.dev/builders/local/v1 is not trusted"),
        "production policy",
    );
    // Trusting the local builder is not enough: the service's key may not sign for it.
    let local = Policy { builder_ids: vec![LOCAL_BUILDER_ID.into()], ..policy() };
    expect(
        host.verify(&world, artifact, false, now(), local),
        Err("may not sign for builder https://gantry.dev/builders/local/v1"),
        "key bound to the service",
    );
}

#[test]
fn a_block_list_must_be_signed_and_fresh() {
    let world = World::new();
    let artifact = reviewed_artifact(&world);
    let host = Host::new();
    host.receive_trust_list(&world);
    let published = world.dir.path().join("published-blocks.json");
    publish_blocks(&world.home(), &published, now(), 3600).unwrap();
    host.receive(&published, &host.blocks());
    let later = |seconds: i64| now().checked_add(SignedDuration::from_secs(seconds)).unwrap();
    expect(host.verify(&world, &artifact, true, later(3599), policy()), Ok(()), "fresh");
    expect(
        host.verify(&world, &artifact, true, later(3601), policy()),
        Err("went stale"),
        "an hour and a second later",
    );
    std::fs::remove_file(signed_path(&host.blocks())).unwrap();
    expect(
        host.verify(&world, &artifact, true, later(60), policy()),
        Err("published-blocks.json.dsse"),
        "unsigned",
    );
    // Signed by someone else's key.
    let stranger = KeyPair::from_seed([7; 32]);
    gantry_supply::keys::write_signed(
        &host.blocks(),
        &std::fs::read(host.blocks()).unwrap(),
        gantry_supply::published_blocks::PUBLISHED_BLOCKS_PAYLOAD_TYPE,
        &stranger,
    )
    .unwrap();
    expect(
        host.verify(&world, &artifact, true, later(60), policy()),
        Err("not signed by the pinned trust root"),
        "signed by a stranger",
    );
}

#[test]
fn a_replayed_older_block_list_cannot_lift_a_block() {
    let world = World::new();
    let artifact = reviewed_artifact(&world);
    let host = Host::new();
    host.receive_trust_list(&world);
    let later = |seconds: i64| now().checked_add(SignedDuration::from_secs(seconds)).unwrap();
    let published = world.dir.path().join("published-blocks.json");
    publish_blocks(&world.home(), &published, now(), 3600).unwrap();
    let before = tempfile::tempdir().unwrap();
    let old_copy = before.path().join("published-blocks.json");
    host.receive(&published, &old_copy);
    host.receive(&published, &host.blocks());
    expect(host.verify(&world, &artifact, true, later(1), policy()), Ok(()), "no block yet");

    let mut blocks = world.home().blocks().unwrap();
    let commit = artifact.manifest.source.commit.clone();
    let scope = BlockScope::Organisation;
    let block = blocks.add(BlockTarget::Commit { commit }, scope, "bad", "carol", now()).unwrap();
    publish_blocks(&world.home(), &published, later(10), 3600).unwrap();
    host.receive(&published, &host.blocks());
    expect(host.verify(&world, &artifact, true, later(20), policy()), Err(&block.id), "blocked");

    // The list from before the block is still fresh, and signed by the right root.
    host.receive(&old_copy, &host.blocks());
    expect(
        host.verify(&world, &artifact, true, later(30), policy()),
        Err("is older than the one accepted before"),
        "the older list replayed",
    );
}

#[test]
fn a_host_without_the_store_refuses_an_artifact_built_on_a_blocked_commit() {
    let world = World::new();
    let bad = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &bad).unwrap();
    let first = world.build(BUILD).unwrap();
    let next = world.commit("bob", "louder", &[("main.c", &GREETER.replace("hello", "HI"))]);
    world.approve(&world.alice, &next).unwrap();
    let second = world.build(BUILD).unwrap();
    assert_eq!(second.manifest.source.base_artifact, Some(first.digest));
    assert!(second.manifest.commits.iter().all(|c| c.commit.id != bad), "bad is in the base");

    let mut blocks = world.home().blocks().unwrap();
    let block = blocks
        .add(
            BlockTarget::Commit { commit: bad.clone() },
            BlockScope::Organisation,
            "leaks tokens",
            "carol",
            now(),
        )
        .unwrap();
    let published = world.dir.path().join("published-blocks.json");
    let list = publish_blocks(&world.home(), &published, now(), 3600).unwrap();
    assert_eq!(
        list.affected.iter().map(|a| a.digest).collect::<Vec<_>>(),
        [first.digest, second.digest]
    );
    let host = Host::new();
    host.receive_trust_list(&world);
    host.receive(&published, &host.blocks());
    expect(
        host.verify(&world, &second, true, now(), policy()),
        Err(&block.id),
        "the second artifact, on a host that never saw the first",
    );
}
