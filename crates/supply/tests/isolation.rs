//! What a build can reach from inside its sandbox: only the allow-list, no host socket, no host
//! path to write but its own directory, no key, no capability — whoever starts it. Each case
//! runs in both sandboxes (bubblewrap when installed, and always with
//! `GANTRY_REQUIRE_BUBBLEWRAP`), with what each is expected to show.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_supply::build::{
    BUILD_UID, BuildFailure, BuildRequest, RunOutput, SANDBOX_PATH, Sandbox, SandboxRun,
    run_sandboxed,
};
use gantry_supply::home::Home;
use gantry_supply::sandbox::running_as_root;

mod common;
use common::*;

fn sandboxes() -> Vec<Sandbox> {
    let required = std::env::var_os("GANTRY_REQUIRE_BUBBLEWRAP").is_some();
    if Sandbox::detect() == Sandbox::Bubblewrap || required {
        vec![Sandbox::Unshare, Sandbox::Bubblewrap]
    } else {
        vec![Sandbox::Unshare]
    }
}

/// A directory outside every allow-list and private directory: under the target directory.
fn host_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

struct Run<'a> {
    command: String,
    hidden: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    workspace: &'a Path,
}

fn run(sandbox: Sandbox, run: &Run) -> String {
    let env = BTreeMap::from([("PATH".to_string(), SANDBOX_PATH.to_string())]);
    let result = run_sandboxed(&SandboxRun {
        sandbox,
        workspace: run.workspace,
        dir: run.workspace,
        command: &run.command,
        env: &env,
        timeout: Duration::from_secs(10),
        network: false,
        log_file: None,
        hidden: &run.hidden,
        read_only: &run.read_only,
    })
    .unwrap();
    outcome(&result)
}

fn outcome(result: &Result<RunOutput, BuildFailure>) -> String {
    match result {
        Ok(output) => String::from_utf8_lossy(&output.log).trim().to_string(),
        Err(BuildFailure::SandboxUnavailable { reason }) => format!("no sandbox: {reason}"),
        Err(failure) => format!("failed: {failure}"),
    }
}

/// Runs `command` in each sandbox and compares its output with the expectation for that
/// sandbox.
fn check(command: &str, hidden: &[PathBuf], read_only: &[PathBuf], expected: [(Sandbox, &str); 2]) {
    for sandbox in sandboxes() {
        let workspace = tempfile::tempdir().unwrap();
        let got = run(
            sandbox,
            &Run {
                command: command.to_string(),
                hidden: hidden.to_vec(),
                read_only: read_only.to_vec(),
                workspace: workspace.path(),
            },
        );
        let want = expected.iter().find(|(s, _)| *s == sandbox).unwrap().1;
        assert_eq!(got, want, "{sandbox:?}: {command}");
    }
}

#[test]
fn the_root_of_a_bubblewrap_build_holds_only_the_allow_list() {
    let expected = "bin build dev etc lib lib64 proc sbin tmp usr | alternatives ld.so.cache ld.so.conf ld.so.conf.d";
    if sandboxes().contains(&Sandbox::Bubblewrap) {
        let workspace = tempfile::tempdir().unwrap();
        let got = run(
            Sandbox::Bubblewrap,
            &Run {
                command: "echo $(ls /) '|' $(ls /etc)".into(),
                hidden: vec![],
                read_only: vec![],
                workspace: workspace.path(),
            },
        );
        assert_eq!(got, expected);
    }
}

#[test]
fn a_host_file_outside_the_allow_list_cannot_be_read() {
    let dir = host_dir();
    let secret = dir.path().join("id_ed25519");
    std::fs::write(&secret, "PRIVATE KEY").unwrap();
    let command = format!("cat {} 2>/dev/null || echo unreadable", secret.display());
    // unshare shows the host read-only: a file readable by the build user stays readable, which
    // is why its builder id is the weaker one. Root's files are not (the build user is not root).
    check(
        &command,
        &[],
        &[],
        [(Sandbox::Bubblewrap, "unreadable"), (Sandbox::Unshare, "PRIVATE KEY")],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let expected = if running_as_root() { "unreadable" } else { "PRIVATE KEY" };
    check(&command, &[], &[], [(Sandbox::Bubblewrap, "unreadable"), (Sandbox::Unshare, expected)]);
    // Home directories are never visible.
    let command = "ls -A /root /home 2>/dev/null | grep -v '^/' | grep -v '^$' | wc -l";
    check(command, &[], &[], [(Sandbox::Bubblewrap, "0"), (Sandbox::Unshare, "0")]);
}

#[test]
fn host_sockets_under_run_and_home_are_unreachable() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let unique = format!("gantry-isolation-{}.sock", std::process::id());
    let mut sockets = Vec::new();
    for dir in ["/run".to_string(), home] {
        let path = Path::new(&dir).join(&unique);
        let _ = std::fs::remove_file(&path);
        match UnixListener::bind(&path) {
            Ok(listener) => sockets.push((path, listener)),
            Err(error) => eprintln!("cannot make a socket under {dir}: {error}; not checked"),
        }
    }
    assert!(!sockets.is_empty(), "no socket to check");
    for (path, _listener) in &sockets {
        // A real connection attempt where the sandbox has Python, and the socket's presence
        // where it has not.
        let command = format!(
            "if [ -x /usr/bin/python3 ]; then python3 -c 'import socket, sys; \
             socket.socket(socket.AF_UNIX).connect(sys.argv[1])' {0} 2>/dev/null \
             && echo reachable || echo unreachable; \
             else [ -S {0} ] && echo reachable || echo unreachable; fi",
            path.display()
        );
        // The check itself can tell: from here, outside any sandbox, the socket answers.
        std::os::unix::net::UnixStream::connect(path).expect("the socket listens");
        check(
            &command,
            &[],
            &[],
            [(Sandbox::Bubblewrap, "unreachable"), (Sandbox::Unshare, "unreachable")],
        );
    }
    for (path, _) in &sockets {
        let _ = std::fs::remove_file(path);
    }
    // The control: a socket the build is shown (on a read-only path) is reachable, so
    // "unreachable" above is the sandbox's doing, not a broken check.
    let shown = host_dir();
    let path = shown.path().join("shown.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shown.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let command = format!(
        "python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' {} \
         && echo reachable",
        path.display()
    );
    if Path::new("/usr/bin/python3").exists() {
        check(
            &command,
            &[],
            &[shown.path().to_path_buf()],
            [(Sandbox::Bubblewrap, "reachable"), (Sandbox::Unshare, "reachable")],
        );
    }
}

#[test]
fn nothing_on_the_host_is_writable_but_the_build_directory() {
    let marker = format!("gantry-isolation-{}", std::process::id());
    let outside = host_dir();
    let command = format!(
        "touch inside && for dir in /var/tmp /tmp /dev/shm {}; do touch $dir/{marker} 2>/dev/null; done; ls",
        outside.path().display()
    );
    check(&command, &[], &[], [(Sandbox::Bubblewrap, "inside"), (Sandbox::Unshare, "inside")]);
    for dir in [Path::new("/var/tmp"), Path::new("/tmp"), Path::new("/dev/shm"), outside.path()] {
        assert!(!dir.join(&marker).exists(), "a build wrote {}", dir.display());
    }
}

#[test]
fn a_build_has_no_capabilities_and_no_new_privileges_whoever_starts_it() {
    let command = "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' ' | tr '\\n' ' '; id -u";
    let uid = if running_as_root() { BUILD_UID.to_string() } else { "0".to_string() };
    let caps =
        "CapPrm: 0000000000000000 CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1";
    let bubblewrap_uid = if running_as_root() { BUILD_UID.to_string() } else { current_uid() };
    check(
        command,
        &[],
        &[],
        [
            (Sandbox::Bubblewrap, &format!("{caps} {bubblewrap_uid}")),
            (Sandbox::Unshare, &format!("{caps} {uid}")),
        ],
    );
}

fn current_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn the_hiding_cannot_be_unmounted_from_inside() {
    // The keys sit inside a path the build may read, so hiding is all that protects them.
    let shown = host_dir();
    let keys = shown.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("build.key"), "SECRET").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shown.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(keys.join("build.key"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let command = format!(
        "umount {0} 2>/dev/null && echo unmounted; umount -l {0} 2>/dev/null && echo detached; \
         cat {0}/build.key 2>/dev/null || echo hidden",
        keys.display()
    );
    check(
        &command,
        std::slice::from_ref(&keys),
        &[shown.path().to_path_buf()],
        [(Sandbox::Bubblewrap, "hidden"), (Sandbox::Unshare, "hidden")],
    );
}

#[test]
fn a_relative_hidden_path_is_an_error_not_a_silent_skip() {
    check(
        "echo ran",
        &[PathBuf::from(".gantry/keys")],
        &[],
        [
            (
                Sandbox::Bubblewrap,
                "no sandbox: .gantry/keys is not an absolute path, so whether the build sees it would depend on the directory it starts in; name it absolutely",
            ),
            (
                Sandbox::Unshare,
                "no sandbox: .gantry/keys is not an absolute path, so whether the build sees it would depend on the directory it starts in; name it absolutely",
            ),
        ],
    );
}

#[test]
fn the_default_relative_home_keeps_its_keys_from_builds_in_both_sandboxes() {
    // A home named relatively, as the default `.gantry` is: it is made absolute when opened.
    let parent = host_dir();
    let cwd = std::env::current_dir().unwrap();
    let relative: PathBuf = {
        let mut up = PathBuf::new();
        for _ in cwd.components().skip(1) {
            up.push("..");
        }
        up.join(parent.path().strip_prefix("/").unwrap()).join(".gantry")
    };
    assert!(relative.is_relative());
    let home = Home::new(&relative).unwrap();
    let world = World::with_home(home.root().to_path_buf());
    let commit = world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    world.approve(&world.alice, &commit).unwrap();
    let keys = home.keys_dir();
    use std::os::unix::fs::PermissionsExt;
    for dir in [parent.path(), home.root(), &keys] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The private keys stay mode 0600; the public trust list is readable by anyone, so an empty
    // listing shows the directory was hidden, not merely unreadable.
    let command = format!(
        "mkdir -p out; cat {0}/*.key {0}/trust-root.key > out/stolen 2>/dev/null; ls -A {0} > out/listing 2>/dev/null; true",
        keys.display()
    );
    for sandbox in sandboxes() {
        let request = BuildRequest { commit: Some(commit.clone()), ..world.request(&command) };
        let _ = std::fs::remove_dir_all(home.store().root());
        let checked = world.run_in(&request, sandbox).unwrap();
        let files = &checked.built.artifact.manifest.package.files;
        for name in ["out/stolen", "out/listing"] {
            let file = files.iter().find(|f| f.path == name);
            assert_eq!(file.map(|f| f.size), Some(0), "{sandbox:?}: {name} holds the keys");
        }
    }
}

#[test]
fn every_variable_in_the_sandbox_is_in_the_provenance_with_the_toolchain() {
    let world = World::new();
    world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    for sandbox in sandboxes() {
        let request = BuildRequest {
            env: std::collections::BTreeMap::from([("FLAVOUR".to_string(), "spicy".to_string())]),
            ..world.request("mkdir -p out && env > out/env")
        };
        let _ = std::fs::remove_dir_all(world.store().root());
        let checked = world.run_in(&request, sandbox).unwrap();
        let artifact = &checked.built.artifact;
        let package = world.store().read_package(&artifact.digest).unwrap();
        let seen = file_in_package(&package, "out/env");
        let statement = statement_of(&world.files(artifact).1);
        let recorded = &statement["predicate"]["buildDefinition"]["externalParameters"]["build"]["environment"];
        for line in seen.lines() {
            let (name, value) = line.split_once('=').unwrap();
            // The shell's own working directory, not the sandbox's environment.
            if name == "PWD" {
                continue;
            }
            assert_eq!(recorded[name], value, "{sandbox:?}: {name} is missing from the provenance");
        }
        assert_eq!(recorded["FLAVOUR"], "spicy");
        let toolchain = statement["predicate"]["runDetails"]["builder"]["builderDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["uri"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        let program = match sandbox {
            Sandbox::Bubblewrap => "bwrap",
            Sandbox::Unshare => "unshare",
        };
        assert!(
            toolchain.iter().any(|uri| uri.ends_with(&format!("/{program}"))),
            "{sandbox:?}: {toolchain:?}"
        );
        assert!(toolchain.iter().any(|uri| uri == "file:///bin/sh"), "{toolchain:?}");
    }
}

fn file_in_package(package: &[u8], path: &str) -> String {
    let decoder = zstd::stream::read::Decoder::new(package).unwrap();
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == path {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            return text;
        }
    }
    panic!("{path} is not in the package");
}

#[test]
fn extra_read_only_paths_are_checked_digested_and_visible() {
    use gantry_supply::build::check_read_only_path;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let keys = host_dir();
    for (path, expected) in [
        ("relative/toolchain".to_string(), "must be absolute"),
        (home.clone(), "where homes, keys or sockets live"),
        ("/".to_string(), "where homes, keys or sockets live"),
        ("/run".to_string(), "where homes, keys or sockets live"),
        (keys.path().display().to_string(), "where homes, keys or sockets live"),
    ] {
        let refused = check_read_only_path(Path::new(&path), &[keys.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(refused.contains(expected), "{path}: {refused}");
    }
    // A socket inside the path is refused when it is digested.
    let with_socket = host_dir();
    let _listener = UnixListener::bind(with_socket.path().join("agent.sock")).unwrap();
    let refused = gantry_supply::build::digest_tree(with_socket.path()).unwrap_err().to_string();
    assert!(refused.contains("is a socket"), "{refused}");

    // A vendored toolchain outside the home: readable in the build, in resolvedDependencies.
    let world = World::new();
    world.commit("bob", "greeter service", &[("main.c", GREETER)]);
    let tools = host_dir();
    std::fs::write(tools.path().join("VERSION"), "tool 1.2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = format!("mkdir -p out && cat {}/VERSION > out/version", tools.path().display());
    for sandbox in sandboxes() {
        let request = BuildRequest {
            read_only_paths: vec![tools.path().to_path_buf()],
            ..world.request(&command)
        };
        let _ = std::fs::remove_dir_all(world.store().root());
        let checked = world.run_in(&request, sandbox).unwrap();
        let artifact = &checked.built.artifact;
        let package = world.store().read_package(&artifact.digest).unwrap();
        assert_eq!(file_in_package(&package, "out/version"), "tool 1.2\n", "{sandbox:?}");
        let statement = statement_of(&world.files(artifact).1);
        let dependencies =
            statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let digest = gantry_supply::build::digest_tree(tools.path()).unwrap();
        assert!(
            dependencies.iter().any(|d| d["uri"] == format!("file://{}", tools.path().display())
                && d["digest"]["sha256"] == digest.hex()),
            "{sandbox:?}: {dependencies:?}"
        );
    }
}

#[test]
fn a_file_descriptor_the_builder_inherited_does_not_reach_the_build() {
    // Whoever starts the builder may leave descriptors open across `exec` (a key file, an
    // agent socket); an open descriptor bypasses every path the sandbox hides.
    let dir = host_dir();
    let secret = dir.path().join("build.key");
    std::fs::write(&secret, "SECRET").unwrap();
    let file = std::fs::File::open(&secret).unwrap();
    // dup(2) gives a copy without close-on-exec, as a parent's descriptor arrives.
    // SAFETY: dup and close take integers only.
    let inherited = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&file)) };
    assert!(inherited > 2, "dup failed");
    let command = format!("cat /proc/self/fd/{inherited} 2>/dev/null || echo closed");
    check(&command, &[], &[], [(Sandbox::Bubblewrap, "closed"), (Sandbox::Unshare, "closed")]);
    // Only stdin, stdout, stderr and ls's own directory are open inside.
    let listing = "echo $(ls /proc/self/fd)";
    check(listing, &[], &[], [(Sandbox::Bubblewrap, "0 1 2 3"), (Sandbox::Unshare, "0 1 2 3")]);
    unsafe { libc::close(inherited) };
}

#[test]
fn keys_reached_through_a_symbolic_link_are_hidden_by_their_real_path() {
    // The home is named through a link, but its keys really lie inside a path the build sees.
    let shown = host_dir();
    let keys = shown.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("build.key"), "SECRET").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(shown.path(), 0o755), (keys.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(keys.join("build.key"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let links = host_dir();
    let link = links.path().join("home-keys");
    std::os::unix::fs::symlink(&keys, &link).unwrap();
    let command = format!("cat {}/build.key 2>/dev/null || echo hidden", keys.display());
    check(
        &command,
        &[link],
        &[shown.path().to_path_buf()],
        [(Sandbox::Bubblewrap, "hidden"), (Sandbox::Unshare, "hidden")],
    );
}
