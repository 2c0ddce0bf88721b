//! Who wrote a commit is proven, not claimed: a git SSH signature by a keyring member's key, or a
//! verified forge delivery naming the pull request's author by login. A commit whose author
//! cannot be authenticated needs two distinct approvers (or is refused where the pipeline says
//! so), the provenance says how each author was established, and an approval covers a commit or
//! the same change (same tree and same parent tree) — not a revert back to an approved tree.

use std::collections::BTreeMap;

use gantry_model::Source;
use gantry_supply::artifact::Authorship;
use gantry_supply::build::{BuilderRole, Sandbox, TRUSTED_BASE_ROOT, builder_id};
use gantry_supply::source::Repository;
use gantry_supply::store::StoredArtifact;
use gantry_supply::verify::Policy;
use gantry_supply::webhook::{Delivery, Forge, WebhookEvent, github_signature, receive};

mod common;
use common::*;

fn authorship(artifact: &StoredArtifact) -> Vec<String> {
    artifact.manifest.commits.iter().map(|r| r.authorship.describe()).collect()
}

fn verified(world: &World, artifact: &StoredArtifact) -> Result<(), String> {
    world.verify_on_host(artifact, &world.store().list().unwrap(), &[TRUSTED_BASE_ROOT])
}

#[test]
fn a_self_approval_under_an_unlisted_email_does_not_count() {
    let world = World::new();
    // Alice commits as a stranger, unsigned, and approves her own commit.
    let commit =
        world.commit_as("Mallory", "mallory@evil.example", None, "sneaky", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let artifact = world.build(BUILD).unwrap();
    assert_eq!(authorship(&artifact), ["unauthenticated"]);
    let refused = verified(&world, &artifact).unwrap_err();
    assert!(refused.contains("author unauthenticated; 1 of 2 approvals"), "{refused}");

    // A second member's approval: two distinct approvers.
    world.approve(&world.bob, &commit).unwrap();
    assert_eq!(verified(&world, &artifact), Ok(()));
}

#[test]
fn a_signed_commit_is_its_signers_whatever_email_it_claims() {
    let world = World::new();
    let commit = world.commit_as(
        "Mallory",
        "mallory@evil.example",
        Some("alice"),
        "sneaky",
        &[("main.c", GREETER)],
    );
    world.approve(&world.alice, &commit).unwrap();
    let artifact = world.build(BUILD).unwrap();
    let established = authorship(&artifact);
    assert!(established[0].starts_with("alice (SSH signature SHA256:"), "{established:?}");
    let refused = verified(&world, &artifact).unwrap_err();
    assert!(refused.contains("0 of 1 approvals"), "alice's own approval counted: {refused}");

    world.approve(&world.bob, &commit).unwrap();
    assert_eq!(verified(&world, &artifact), Ok(()));
}

#[test]
fn a_signature_by_a_key_outside_the_keyring_authenticates_nobody() {
    let world = World::new();
    let commit =
        world.commit_as("bob", "bob@example.com", Some("eve"), "look", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let artifact = world.build(BUILD).unwrap();
    assert_eq!(authorship(&artifact), ["unauthenticated"]);
    assert!(verified(&world, &artifact).unwrap_err().contains("1 of 2 approvals"));
}

#[test]
fn the_provenance_says_how_each_author_was_established() {
    let world = World::new();
    world.commit("bob", "signed", &[("main.c", GREETER)]);
    world.commit_as("bob", "bob@example.com", None, "unsigned", &[("a", "1")]);
    let artifact = world.build(BUILD).unwrap();
    let statement = statement_of(&world.files(&artifact).1);
    let commits = &statement["predicate"]["buildDefinition"]["internalParameters"]["commits"];
    let by: Vec<&str> = commits
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["authorship"]["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["unauthenticated", "ssh_signature"]);
    assert_eq!(commits[1]["authorship"]["member"], "bob");
}

#[test]
fn a_verified_forge_pull_request_names_the_author_by_login() {
    let world = World::new();
    let commit = world.commit_as("bob", "bob@example.com", None, "via PR", &[("main.c", GREETER)]);
    let secret = "s3cret";
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "submitted",
        "review": {"state": "approved", "commit_id": commit, "user": {"login": "alice-gh"}},
        "pull_request": {"user": {"login": "bob-gh"}},
        "repository": {"clone_url": world.repo().display().to_string()}
    }))
    .unwrap();
    let delivery = Delivery {
        headers: BTreeMap::from([
            ("X-GitHub-Event".to_string(), "pull_request_review".to_string()),
            ("X-Hub-Signature-256".to_string(), github_signature(secret, &body)),
            ("X-GitHub-Delivery".to_string(), "d-1".to_string()),
        ]),
        body,
    };
    let WebhookEvent::Approval(approval) = receive(Forge::GitHub, &delivery, secret).unwrap()
    else {
        panic!("not an approval");
    };
    let source = Source { repository: world.repo().display().to_string(), branch: "main".into() };
    let repository = Repository::open(&source, &world.dir.path().join("cache")).unwrap();
    let record = repository.commit(&commit).unwrap();
    world.reviews().import_forge(&approval, &record, now()).unwrap();

    let artifact = world.build(BUILD).unwrap();
    assert_eq!(
        artifact.manifest.commits[0].authorship,
        Authorship::ForgeLogin {
            member: "bob".into(),
            forge: Forge::GitHub,
            login: "bob-gh".into()
        }
    );
    assert_eq!(verified(&world, &artifact), Ok(()), "alice's one approval suffices");
}

#[test]
fn a_pipeline_may_refuse_unauthenticated_authors_outright() {
    let world = World::new();
    let commit =
        world.commit_as("bob", "bob@example.com", None, "unsigned", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    world.approve(&world.bob, &commit).unwrap_err();
    let artifact = world.build(BUILD).unwrap();
    // Two approvals from distinct members would do elsewhere; bob may not approve his own.
    let carol_free = verified(&world, &artifact).unwrap_err();
    assert!(carol_free.contains("1 of 2 approvals"), "{carol_free}");

    let strict = Policy {
        trusted_bases: vec![TRUSTED_BASE_ROOT.into()],
        builder_ids: vec![builder_id(BuilderRole::Service, Sandbox::detect()).into()],
        require_authenticated_authors: true,
        review_required: false,
        ..Policy::default()
    };
    let (package, envelope, manifest) = world.files(&artifact);
    let reviews = world.reviews();
    let trusted = world.keys().trusted().unwrap();
    let history = world.store().list().unwrap();
    let inputs = gantry_supply::verify::Inputs {
        package_digest: gantry_supply::Digest::of(&package),
        envelope: &envelope,
        manifest: Some(&manifest),
        trusted: &trusted,
        blocks: None,
        reviews: &reviews,
        history: &history,
        bases: &[],
    };
    let refused = gantry_supply::verify::verify(&inputs, &strict).unwrap_err();
    assert!(refused.detail.contains("is not authenticated"), "{refused}");
}

#[test]
fn a_revert_to_an_approved_tree_is_not_covered_by_that_approval() {
    let world = World::new();
    let first = world.commit("bob", "feature", &[("main.c", GREETER)]);
    world.approve(&world.alice, &first).unwrap();
    world.build(BUILD).unwrap();
    let fix = world.commit("bob", "security fix", &[("main.c", &GREETER.replace("%d", "%i"))]);
    world.approve(&world.alice, &fix).unwrap();
    world.build(BUILD).unwrap();
    // Back to the first commit's tree: the fix undone.
    let revert = world.commit("bob", "tidy up", &[("main.c", GREETER)]);
    let artifact = world.build(BUILD).unwrap();
    assert_eq!(artifact.manifest.commits.len(), 1);
    assert_eq!(artifact.manifest.commits[0].commit.id, revert);
    assert!(artifact.manifest.commits[0].reviewers.is_empty(), "the old approval covered it");
    let refused = verified(&world, &artifact).unwrap_err();
    assert!(refused.contains(&revert[..12]), "{refused}");
}

#[test]
fn a_revert_to_an_approved_non_root_tree_is_not_covered_by_that_approval() {
    let world = World::new();
    let root = world.commit("bob", "skeleton", &[("main.c", GREETER)]);
    world.approve(&world.alice, &root).unwrap();
    world.build(BUILD).unwrap();
    // An approved commit with a parent: its approval names its parent's tree.
    let feature = world.commit("bob", "feature", &[("README", "greeter\n")]);
    world.approve(&world.alice, &feature).unwrap();
    world.build(BUILD).unwrap();
    let fix = world.commit("bob", "security fix", &[("main.c", &GREETER.replace("%d", "%i"))]);
    world.approve(&world.alice, &fix).unwrap();
    world.build(BUILD).unwrap();
    // Back to the feature's tree, on top of the fix: same tree, another parent tree.
    let revert = world.commit("bob", "tidy up", &[("main.c", GREETER)]);
    let artifact = world.build(BUILD).unwrap();
    let record = &artifact.manifest.commits[0];
    assert_eq!(record.commit.id, revert);
    assert!(record.reviewers.is_empty(), "the feature's approval covered the revert");
    let refused = verified(&world, &artifact).unwrap_err();
    assert!(refused.contains(&revert[..12]), "{refused}");
    let fix_tree =
        String::from_utf8(git(&world.repo(), &["rev-parse", &format!("{fix}^{{tree}}")])).unwrap();
    assert_eq!(record.commit.parent_tree, fix_tree.trim(), "the parent tree is the fix's tree");
}
