//! The world the supply chain's integration tests build in: a real git repository holding a
//! small C service, a team of two with reviewer keys, a build key, and a store.

#![allow(dead_code, reason = "each test file uses its own part of the world")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_model::pipeline::Build;
use gantry_model::{Duration, Source};
use gantry_supply::blocks::BlockList;
use gantry_supply::build::{BuildRequest, BuilderRole, Sandbox, TRUSTED_BASE_ROOT, builder_id};
use gantry_supply::home::Home;
use gantry_supply::keys::{KeyDirectory, KeyPair};
use gantry_supply::operations::{BuildJob, Checked, build_and_check};
use gantry_supply::review::{Keyring, Member, ReviewBook};
use gantry_supply::store::{Store, StoredArtifact};
use gantry_supply::verify::{Check, Inputs, Policy, VerifiedBase, verify};
use gantry_supply::{Digest, Error};
use jiff::Timestamp;

pub const GREETER: &str = r#"#include <stdio.h>
int add(int a, int b) { return a + b; }
#ifdef UNIT_TEST
int main(void) { return add(2, 3) == 5 ? 0 : 1; }
#else
int main(void) { printf("hello %d\n", add(2, 3)); return 0; }
#endif
"#;

/// Compiles, runs the unit test, packages the binary.
pub const BUILD: &str = "set -e; cc -DUNIT_TEST -o unit-test main.c && ./unit-test && mkdir -p out && cc -O2 -o out/greeter main.c";

pub struct World {
    pub dir: tempfile::TempDir,
    /// The Gantry home: inside `dir` unless the test names another.
    pub home_root: PathBuf,
    pub keyring: Keyring,
    pub alice: KeyPair,
    pub bob: KeyPair,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let home_root = dir.path().to_path_buf();
        World::build_world(dir, home_root)
    }

    /// A world whose home is `home_root` (absolute).
    pub fn with_home(home_root: PathBuf) -> World {
        World::build_world(tempfile::tempdir().unwrap(), home_root)
    }

    fn build_world(dir: tempfile::TempDir, home_root: PathBuf) -> World {
        git(&dir.path().join("repo"), &["init", "--quiet", "--initial-branch=main", "."]);
        let alice = KeyPair::from_seed([1; 32]);
        let bob = KeyPair::from_seed([2; 32]);
        let member = |name: &str, key: &KeyPair| Member {
            name: name.into(),
            emails: vec![format!("{name}@example.com")],
            forge_logins: vec![format!("github:{name}-gh")],
            public_key: key.public_base64(),
            ssh_keys: vec![ssh_key(dir.path(), name)],
        };
        let keyring = Keyring {
            team: "shop".into(),
            members: vec![member("alice", &alice), member("bob", &bob)],
        };
        let home = Home::new(&home_root).unwrap();
        home.keys().generate(now()).unwrap();
        home.write_keyring(&keyring).unwrap();
        World { dir, home_root, keyring, alice, bob }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    pub fn store(&self) -> Store {
        self.home().store()
    }
    pub fn keys(&self) -> KeyDirectory {
        self.home().keys()
    }
    pub fn reviews(&self) -> ReviewBook {
        self.home().reviews().unwrap()
    }
    /// The home the world's builder and verifier share.
    pub fn home(&self) -> Home {
        Home::new(&self.home_root).unwrap()
    }

    /// A commit by a team member (`alice` or `bob`), signed with their SSH key as git's
    /// `gpg.format=ssh` signing does.
    pub fn commit(&self, author: &str, message: &str, files: &[(&str, &str)]) -> String {
        let email = format!("{author}@example.com");
        self.commit_as(author, &email, Some(author), message, files)
    }

    /// A commit with any author fields, signed with `signer`'s SSH key (a member's, or any
    /// other name for a key outside the keyring) or not at all.
    pub fn commit_as(
        &self,
        author: &str,
        email: &str,
        signer: Option<&str>,
        message: &str,
        files: &[(&str, &str)],
    ) -> String {
        for (path, content) in files {
            std::fs::write(self.repo().join(path), content).unwrap();
        }
        git(&self.repo(), &["add", "--all"]);
        let name = format!("user.name={author}");
        let mail = format!("user.email={email}");
        let mut args = vec!["-c", &name, "-c", &mail];
        let key;
        if let Some(signer) = signer {
            ssh_key(self.dir.path(), signer);
            key = format!("user.signingkey={}", ssh_key_path(self.dir.path(), signer).display());
            args.extend(["-c", "gpg.format=ssh", "-c", &key, "commit", "-S"]);
        } else {
            args.push("commit");
        }
        args.extend(["--quiet", "--allow-empty", "-m", message]);
        git(&self.repo(), &args);
        String::from_utf8(git(&self.repo(), &["rev-parse", "HEAD"])).unwrap().trim().to_string()
    }

    pub fn approve(&self, reviewer: &KeyPair, commit: &str) -> Result<(), Error> {
        let source =
            Source { repository: self.repo().display().to_string(), branch: "main".into() };
        let repository =
            gantry_supply::source::Repository::open(&source, Path::new("/nonexistent")).unwrap();
        let commit = repository.commit(commit).unwrap();
        self.reviews().approve(reviewer, "repo", &commit, now()).map(|_| ())
    }

    pub fn build(&self, command: &str) -> Result<StoredArtifact, Error> {
        self.run(&self.request(command))
    }

    pub fn build_commit(&self, command: &str, commit: &str) -> Result<StoredArtifact, Error> {
        self.run(&BuildRequest { commit: Some(commit.to_string()), ..self.request(command) })
    }

    /// The greeter pipeline's build of the local repository's mainline head.
    pub fn request(&self, command: &str) -> BuildRequest {
        BuildRequest {
            service: "greeter".into(),
            pipeline: "greeter-code".into(),
            source: Source { repository: self.repo().display().to_string(), branch: "main".into() },
            build: Build {
                command: command.into(),
                outputs: vec!["out".into()],
                network: false,
                timeout: Duration::from_seconds(60),
            },
            review_required: true,
            commit: None,
            since: None,
            trusted_base: Some(TRUSTED_BASE_ROOT.into()),
            env: BTreeMap::new(),
            read_only_paths: Vec::new(),
        }
    }

    /// Builds as the controller's build service does.
    pub fn run(&self, request: &BuildRequest) -> Result<StoredArtifact, Error> {
        self.run_job(request).map(|checked| checked.built.artifact)
    }

    pub fn run_job(&self, request: &BuildRequest) -> Result<Checked, Error> {
        self.run_in(request, Sandbox::detect())
    }

    /// Builds as the build service does, in `sandbox`.
    pub fn run_in(&self, request: &BuildRequest, sandbox: Sandbox) -> Result<Checked, Error> {
        let job = BuildJob { request: request.clone(), sandbox, role: BuilderRole::Service };
        build_and_check(&self.home(), &job)
    }

    /// Verifies a stored artifact from its files on disk, as a host would.
    pub fn verify(
        &self,
        package: &[u8],
        envelope: &[u8],
        manifest: &[u8],
        blocks: &BlockList,
    ) -> Result<(), Check> {
        let reviews = self.reviews();
        let trusted = self.keys().trusted().unwrap();
        let inputs = Inputs {
            package_digest: Digest::of(package),
            envelope,
            manifest: Some(manifest),
            trusted: &trusted,
            blocks: Some(blocks),
            reviews: &reviews,
            history: &self.store().list().unwrap(),
            bases: &[],
        };
        let policy = Policy {
            trusted_bases: vec![TRUSTED_BASE_ROOT.into()],
            builder_ids: vec![builder_id(BuilderRole::Service, Sandbox::detect()).into()],
            ..Policy::default()
        };
        verify(&inputs, &policy).map(|_| ()).map_err(|failure| failure.check)
    }

    /// Verifies `artifact` as a host holding only `history` and trusting `trusted_bases` would,
    /// with the home's blocks and reviews: the failure's check and detail.
    pub fn verify_on_host(
        &self,
        artifact: &StoredArtifact,
        history: &[StoredArtifact],
        trusted_bases: &[&str],
    ) -> Result<(), String> {
        self.verify_on_host_with(artifact, history, &[], trusted_bases)
    }

    /// As [`World::verify_on_host`], for a host that also remembers `bases` it verified.
    pub fn verify_on_host_with(
        &self,
        artifact: &StoredArtifact,
        history: &[StoredArtifact],
        bases: &[VerifiedBase],
        trusted_bases: &[&str],
    ) -> Result<(), String> {
        let (package, envelope, manifest) = self.files(artifact);
        let reviews = self.reviews();
        let trusted = self.keys().trusted().unwrap();
        let blocks = self.home().blocks().unwrap();
        let inputs = Inputs {
            package_digest: Digest::of(&package),
            envelope: &envelope,
            manifest: Some(&manifest),
            trusted: &trusted,
            blocks: Some(&blocks),
            reviews: &reviews,
            history,
            bases,
        };
        let policy = Policy {
            trusted_bases: trusted_bases.iter().map(|b| b.to_string()).collect(),
            builder_ids: vec![builder_id(BuilderRole::Service, Sandbox::detect()).into()],
            ..Policy::default()
        };
        verify(&inputs, &policy).map(|_| ()).map_err(|failure| failure.to_string())
    }

    pub fn files(&self, artifact: &StoredArtifact) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let store = self.store();
        let package = store.read_package(&artifact.digest).unwrap();
        (
            package,
            store.read_attestation(&artifact.digest).unwrap(),
            artifact.manifest_bytes.clone(),
        )
    }
}

fn ssh_key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("ssh").join(name)
}

/// `name`'s SSH commit-signing key in `dir` (made on first use): its public line.
pub fn ssh_key(dir: &Path, name: &str) -> String {
    let path = ssh_key_path(dir, name);
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(status.success());
    }
    std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

pub fn now() -> Timestamp {
    "2026-11-21T12:00:00Z".parse().unwrap()
}

pub fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

pub fn statement_of(envelope: &[u8]) -> serde_json::Value {
    let envelope: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let payload =
        gantry_supply::dsse::decode_base64(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}
