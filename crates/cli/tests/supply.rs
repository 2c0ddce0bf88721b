//! The supply chain from the command line, as a person at a terminal uses it: a hand-run build
//! needs a trusted base for its first range, names no builder id of its own and signs as the
//! local builder, which verification trusts only when told; commits by an unauthenticated author
//! need two approvers; a block is published signed and refuses the artifact on a host.

mod common;

use std::path::Path;
use std::process::Command;

use common::gantry;

fn git(dir: &Path, args: &[&str]) -> String {
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

/// Runs gantry and checks it succeeded or failed as expected, with `expected` in its output.
fn check(args: &[&str], succeeds: bool, expected: &str) -> String {
    let (ok, stdout, stderr) = gantry(args);
    assert_eq!(ok, succeeds, "gantry {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(expected) || stderr.contains(expected),
        "gantry {args:?}: no {expected:?} in\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[test]
fn a_hand_run_build_is_reviewed_verified_and_blocked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let home = home.to_str().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main", "."]);
    std::fs::write(repo.join("hello.txt"), "hello\n").unwrap();
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
            "hi",
        ],
    );
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let repo = repo.to_str().unwrap();

    check(&["artifact", "key", "generate", "--for", "local", "--home", home], true, "");
    let mut keys = Vec::new();
    for name in ["alice", "carol"] {
        let key = dir.path().join(format!("{name}.key"));
        let public = check(&["review", "keygen", "--out", key.to_str().unwrap()], true, "");
        let email = format!("{name}@example.com");
        check(
            &[
                "review",
                "member",
                "add",
                "--name",
                name,
                "--email",
                &email,
                "--public-key",
                public.trim(),
                "--team",
                "shop",
                "--home",
                home,
            ],
            true,
            "can now approve",
        );
        keys.push(key);
    }

    let build = [
        "build",
        "--home",
        home,
        "--service",
        "greeter",
        "--pipeline",
        "greeter-code",
        "--repository",
        repo,
        "--command",
        "mkdir -p out && cp hello.txt out/",
        "--output",
        "out",
    ];
    check(&build, false, "no trusted base");
    let mut with_builder_id = build.to_vec();
    with_builder_id.extend(["--builder-id", "https://gantry.dev/builders/service/bubblewrap/v1"]);
    check(&with_builder_id, false, "unexpected argument '--builder-id'");
    let mut first = build.to_vec();
    first.extend(["--trusted-base", "root"]);
    let digest = check(&first, true, "as https://gantry.dev/builders/local/v1");
    let digest = digest.trim();

    let verify = ["artifact", "verify", digest, "--home", home, "--trusted-base", "root"];
    check(&verify, false, "builder https://gantry.dev/builders/local/v1 is not trusted");
    let mut local = verify.to_vec();
    local.extend(["--builder-id", "https://gantry.dev/builders/local/v1"]);
    check(&local, false, "author unauthenticated; 0 of 2 approvals");

    for key in &keys {
        check(
            &[
                "review",
                "approve",
                &commit,
                "--repository",
                repo,
                "--key",
                key.to_str().unwrap(),
                "--home",
                home,
            ],
            true,
            "approved",
        );
    }
    check(&local, true, "verified");

    check(
        &["block", "add", "--commit", &commit, "--reason", "leaks", "--by", "sec", "--home", home],
        true,
        "1 stored artifact(s) affected",
    );
    let published = format!("{home}/published-blocks.json");
    let mut on_host = local.clone();
    on_host.extend(["--block-list", &published]);
    check(&on_host, false, "the artifact is blocked");
}
