//! The lifecycle on real scripts: a CodeDeploy-format appspec.yml with every hook, `runas` and
//! `permissions` runs unchanged, hooks in CodeDeploy's order (each script appends a line to a
//! log the test reads); timeouts kill the script's whole process group; a failing
//! ValidateService fails the lifecycle; DISALLOW leaves the box unchanged.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_agent::appspec::LifecycleEvent;
use gantry_agent::hooks::HookEnvironment;
use gantry_agent::lifecycle::{self, Deployment, PipelineDirectory, Traffic};
use gantry_agent::{Digest, Error};
use gantry_supply::artifact::{Origin, pack};

/// The unprivileged account `runas` scripts switch to.
const HOOK_USER: &str = "gantry-hook-test";

fn ensure_hook_user() {
    if matches!(nix::unistd::User::from_name(HOOK_USER), Ok(Some(_))) {
        return;
    }
    let status = std::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", HOOK_USER])
        .status()
        .expect("useradd runs (the tests run as root)");
    // 9: another test created it first.
    assert!(status.success() || status.code() == Some(9), "useradd failed: {status}");
}

struct Box {
    dir: tempfile::TempDir,
}

impl Box {
    fn new() -> Box {
        ensure_hook_user();
        let dir = tempfile::tempdir().unwrap();
        // Hooks run as HOOK_USER must reach their scripts and the log.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("hooks.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        Box { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn agent_root(&self) -> PathBuf {
        self.path().join("agent")
    }
    fn destination(&self) -> PathBuf {
        self.path().join("opt/sample")
    }
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("hooks.log"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn clear_log(&self) {
        std::fs::write(self.path().join("hooks.log"), "").unwrap();
    }

    /// Packs `files` (path, content) with the supply chain's packer and stages the package.
    fn revision(&self, name: &str, files: &[(&str, &str)]) -> Digest {
        let checkout = self.path().join(format!("src-{name}"));
        for (path, content) in files {
            let path = checkout.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            if path.extension().is_some_and(|e| e == "sh") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let outputs: Vec<String> = std::fs::read_dir(&checkout)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let origin = Origin {
            service: "sample".into(),
            pipeline: "sample-code".into(),
            repository: "/src/sample".into(),
            branch: "main".into(),
            commit: format!("{name:0>40}"),
        };
        let package_path = self.path().join(format!("{name}.tar.zst"));
        let record = pack(&checkout, &outputs, &origin, 0, &package_path).unwrap();
        let bytes = std::fs::read(&package_path).unwrap();
        self.pipeline().stage(&record.digest, &bytes).unwrap();
        record.digest
    }

    fn pipeline(&self) -> PipelineDirectory {
        PipelineDirectory::open(&self.agent_root(), "sample-code").unwrap()
    }

    fn deploy(
        &self,
        id: &str,
        digest: Digest,
        hook_timeout: Duration,
        traffic: Option<&mut dyn Traffic>,
    ) -> Result<lifecycle::Report, Error> {
        let deployment = Deployment {
            environment: HookEnvironment {
                application_name: "sample".into(),
                deployment_id: id.into(),
                deployment_group_name: "prod-eu-west-1a".into(),
                deployment_group_id: "target-7".into(),
                box_variables: Default::default(),
            },
            pipeline: "sample-code".into(),
            digest,
            lifecycle_timeout: hook_timeout,
            ignore_application_stop_failures: false,
            health_check: None,
            health_check_timeout: Duration::from_secs(60),
        };
        lifecycle::run(&self.pipeline(), &deployment, traffic, &mut |_| {})
    }
}

/// A hook that appends `EVENT USER DEPLOYMENT_ID APPLICATION GROUP GROUP_ID REVISION` to the log.
fn hook(revision: &str) -> String {
    format!(
        "#!/bin/sh\nset -e\necho \"$LIFECYCLE_EVENT $(id -un) $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME $DEPLOYMENT_GROUP_ID {revision}\" >> \"$(cat log-path)\"\n"
    )
}

/// An appspec.yml in CodeDeploy's documented format, with every scriptable hook.
fn appspec(destination: &Path) -> String {
    let d = destination.display();
    format!(
        r#"version: 0.0
os: linux
files:
  - source: app
    destination: {d}
  - source: config/settings.conf
    destination: {d}/etc
file_exists_behavior: DISALLOW
permissions:
  - object: {d}
    pattern: "**"
    owner: {HOOK_USER}
    mode: 640
    acls:
      - u:{HOOK_USER}:rw
    type:
      - file
  - object: {d}
    pattern: "*.bin"
    mode: "0750"
    type:
      - file
hooks:
  BeforeBlockTraffic:
    - location: scripts/hook.sh
  AfterBlockTraffic:
    - location: scripts/hook.sh
  ApplicationStop:
    - location: scripts/hook.sh
      timeout: 60
  BeforeInstall:
    - location: scripts/hook.sh
      timeout: 60
  AfterInstall:
    - location: scripts/hook.sh
      timeout: 60
      runas: {HOOK_USER}
  ApplicationStart:
    - location: scripts/hook.sh
  ValidateService:
    - location: scripts/hook.sh
      timeout: 30
  BeforeAllowTraffic:
    - location: scripts/hook.sh
  AfterAllowTraffic:
    - location: scripts/hook.sh
"#
    )
}

fn full_revision(b: &Box, name: &str, extra: &[(&str, &str)]) -> Digest {
    let log_path = b.path().join("hooks.log").display().to_string();
    let spec = appspec(&b.destination());
    let hook = hook(name);
    let mut files = vec![
        ("appspec.yml", spec.as_str()),
        ("scripts/hook.sh", hook.as_str()),
        ("log-path", log_path.as_str()),
        ("config/settings.conf", "error_rate = 0\n"),
    ];
    files.extend_from_slice(extra);
    b.revision(name, &files)
}

/// Records BlockTraffic and AllowTraffic in the hooks' log, so the order is one list.
struct LoggedTraffic(PathBuf);

impl Traffic for LoggedTraffic {
    fn block(&mut self, _deadline: Instant) -> Result<(), String> {
        self.append("BlockTraffic")
    }
    fn allow(
        &mut self,
        _deadline: Instant,
        _check: Option<&gantry_agent::health::HealthProbe>,
    ) -> Result<(), String> {
        self.append("AllowTraffic")
    }
}

impl LoggedTraffic {
    fn append(&self, line: &str) -> Result<(), String> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.0).unwrap();
        writeln!(file, "{line}").map_err(|e| e.to_string())
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn codedeploy_appspec_runs_unchanged_with_hooks_in_codedeploy_order() {
    let b = Box::new();
    let mut traffic = LoggedTraffic(b.path().join("hooks.log"));
    let first = full_revision(&b, "r1", &[("app/server.bin", "v1"), ("app/old.txt", "old")]);
    b.deploy("d-1", first, HOUR, Some(&mut traffic)).unwrap();
    let env = |event: &str, user: &str, id: &str, rev: &str| {
        format!("{event} {user} {id} sample prod-eu-west-1a target-7 {rev}")
    };
    // The first deployment has no previous revision: its ApplicationStop and block-traffic
    // hooks do not run (BlockTraffic still makes sure the box takes no traffic).
    assert_eq!(
        b.log(),
        [
            "BlockTraffic".to_string(),
            env("BeforeInstall", "root", "d-1", "r1"),
            env("AfterInstall", HOOK_USER, "d-1", "r1"),
            env("ApplicationStart", "root", "d-1", "r1"),
            env("ValidateService", "root", "d-1", "r1"),
            env("BeforeAllowTraffic", "root", "d-1", "r1"),
            "AllowTraffic".to_string(),
            env("AfterAllowTraffic", "root", "d-1", "r1"),
        ]
    );
    assert!(b.destination().join("old.txt").exists());

    b.clear_log();
    let second = full_revision(&b, "r2", &[("app/server.bin", "v2")]);
    let report = b.deploy("d-2", second, HOUR, Some(&mut traffic)).unwrap();
    // ApplicationStop and the block-traffic hooks come from the previous revision (r1).
    assert_eq!(
        b.log(),
        [
            env("BeforeBlockTraffic", "root", "d-2", "r1"),
            "BlockTraffic".to_string(),
            env("AfterBlockTraffic", "root", "d-2", "r1"),
            env("ApplicationStop", "root", "d-2", "r1"),
            env("BeforeInstall", "root", "d-2", "r2"),
            env("AfterInstall", HOOK_USER, "d-2", "r2"),
            env("ApplicationStart", "root", "d-2", "r2"),
            env("ValidateService", "root", "d-2", "r2"),
            env("BeforeAllowTraffic", "root", "d-2", "r2"),
            "AllowTraffic".to_string(),
            env("AfterAllowTraffic", "root", "d-2", "r2"),
        ]
    );
    let events: Vec<LifecycleEvent> = report.events.iter().map(|e| e.event).collect();
    assert_eq!(events, LifecycleEvent::IN_PLACE_ORDER);

    // Install: the new files, the previous deployment's leftovers removed, permissions applied.
    let server = b.destination().join("server.bin");
    assert_eq!(std::fs::read_to_string(&server).unwrap(), "v2");
    assert!(!b.destination().join("old.txt").exists(), "r1's file is cleaned up");
    assert_eq!(
        std::fs::read_to_string(b.destination().join("etc/settings.conf")).unwrap(),
        "error_rate = 0\n"
    );
    let user = nix::unistd::User::from_name(HOOK_USER).unwrap().unwrap();
    let metadata = std::fs::metadata(&server).unwrap();
    assert_eq!(metadata.uid(), user.uid.as_raw());
    assert_eq!(metadata.mode() & 0o7777, 0o750, "the later *.bin permission wins");
    let settings = std::fs::metadata(b.destination().join("etc/settings.conf")).unwrap();
    // setfacl's mask entry shows in the group bits (rw from the ACL).
    assert_eq!(settings.mode() & 0o707, 0o600);
    let acl = std::process::Command::new("getfacl")
        .arg("--omit-header")
        .arg(b.destination().join("etc/settings.conf"))
        .output()
        .unwrap();
    let acl = String::from_utf8_lossy(&acl.stdout);
    assert!(acl.contains(&format!("user:{HOOK_USER}:rw-")), "{acl}");
}

#[test]
fn a_failing_validate_service_fails_the_lifecycle_with_its_log() {
    let b = Box::new();
    let spec = "version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: validate.sh\n      timeout: 30\n";
    let digest = b.revision(
        "bad",
        &[("appspec.yml", spec), ("validate.sh", "#!/bin/sh\necho 'GET /health: 503'\nexit 3\n")],
    );
    let error = b.deploy("d-bad", digest, HOUR, None).unwrap_err();
    let Error::Lifecycle { event, reason, report } = &error else { panic!("{error}") };
    assert_eq!(*event, LifecycleEvent::ValidateService);
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("GET /health: 503"), "the log's end is in the failure: {reason}");
    assert_eq!(report.events.last().unwrap().event, LifecycleEvent::ValidateService);
}

/// Whether a process is gone (a zombie waiting for init counts as gone).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
    }
}

fn hanging_revision(b: &Box, name: &str, timeout: u64) -> Digest {
    let spec = format!(
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: start.sh\n      timeout: {timeout}\n"
    );
    let pid_file = b.path().join(format!("{name}.pid"));
    let script = format!("#!/bin/sh\nsleep 600 &\necho $! > {}\nsleep 600\n", pid_file.display());
    b.revision(name, &[("appspec.yml", &spec), ("start.sh", &script)])
}

fn background_pid(b: &Box, name: &str) -> i32 {
    std::fs::read_to_string(b.path().join(format!("{name}.pid"))).unwrap().trim().parse().unwrap()
}

#[test]
fn a_script_past_its_timeout_has_its_whole_process_group_killed() {
    let b = Box::new();
    let digest = hanging_revision(&b, "hang", 1);
    let started = Instant::now();
    let error = b.deploy("d-hang", digest, HOUR, None).unwrap_err();
    let Error::Lifecycle { event, reason, .. } = &error else { panic!("{error}") };
    assert_eq!(*event, LifecycleEvent::ApplicationStart);
    assert!(reason.contains("appspec timeout of 1 s"), "{reason}");
    let pid = background_pid(&b, "hang");
    assert!(gone(pid), "the script's background child {pid} was killed with its group");
    eprintln!("timed out and killed in {:?}", started.elapsed());
}

#[test]
fn the_pipelines_hook_timeout_bounds_the_whole_lifecycle() {
    let b = Box::new();
    let digest = hanging_revision(&b, "slow", 600);
    let error = b.deploy("d-slow", digest, Duration::from_secs(1), None).unwrap_err();
    let Error::Lifecycle { reason, .. } = &error else { panic!("{error}") };
    assert!(reason.contains("hook_timeout of 1 s for the whole lifecycle"), "{reason}");
    assert!(gone(background_pid(&b, "slow")));
}

#[test]
fn disallow_refuses_a_foreign_file_before_installing_anything() {
    let b = Box::new();
    let d = b.destination();
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("b.txt"), "someone else's").unwrap();
    let spec = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {}\n",
        d.display()
    );
    let digest =
        b.revision("r1", &[("appspec.yml", &spec), ("app/a.txt", "a"), ("app/b.txt", "b")]);
    let error = b.deploy("d-1", digest, HOUR, None).unwrap_err();
    assert!(error.to_string().contains("DISALLOW"), "{error}");
    assert!(!d.join("a.txt").exists(), "nothing was installed");
    assert_eq!(std::fs::read_to_string(d.join("b.txt")).unwrap(), "someone else's");

    // RETAIN keeps the box's file and installs the rest.
    let retain = format!("{spec}file_exists_behavior: RETAIN\n");
    let digest =
        b.revision("r2", &[("appspec.yml", &retain), ("app/a.txt", "a"), ("app/b.txt", "b")]);
    b.deploy("d-2", digest, HOUR, None).unwrap();
    assert_eq!(std::fs::read_to_string(d.join("a.txt")).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(d.join("b.txt")).unwrap(), "someone else's");
}

#[test]
fn a_bad_appspec_is_refused_with_every_problem_before_any_hook() {
    let b = Box::new();
    let marker = b.path().join("ran");
    let spec = "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: touch.sh\n      runas: no-such-user-here\n  AfterInstall:\n    - location: missing.sh\n";
    let script = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let digest = b.revision("r1", &[("appspec.yml", spec), ("touch.sh", &script)]);
    let error = b.deploy("d-1", digest, HOUR, None).unwrap_err().to_string();
    assert!(error.contains("runas user \"no-such-user-here\" does not exist"), "{error}");
    assert!(error.contains("script \"missing.sh\" does not exist"), "{error}");
    assert!(!marker.exists(), "no hook ran");
}

#[test]
fn revisions_are_kept_for_rollback_within_a_bound() {
    let b = Box::new();
    let spec = "version: 0.0\nos: linux\n";
    let mut digests = Vec::new();
    for n in 0..(lifecycle::MAX_PREVIOUS_REVISIONS + 3) {
        let name = format!("r{n}");
        let digest = b.revision(&name, &[("appspec.yml", spec), ("n", &name)]);
        b.deploy(&format!("d-{n}"), digest, HOUR, None).unwrap();
        digests.push(digest);
    }
    let kept: Vec<bool> = digests.iter().map(|d| b.pipeline().bundle(d).exists()).collect();
    let expected_kept = lifecycle::MAX_PREVIOUS_REVISIONS + 1;
    assert_eq!(kept.iter().filter(|k| **k).count(), expected_kept, "{kept:?}");
    assert!(kept[kept.len() - expected_kept..].iter().all(|k| *k), "the newest are kept: {kept:?}");
    // Rolling back to a kept revision needs no package: it is already staged.
    let previous = digests[digests.len() - 2];
    b.deploy("d-rollback", previous, HOUR, None).unwrap();
    assert_eq!(b.pipeline().record().unwrap().last_successful_install, Some(previous));
}

#[test]
fn the_pipelines_health_check_fails_a_box_that_passed_validate_service() {
    let b = Box::new();
    let digest = b.revision("r1", &[("appspec.yml", "version: 0.0\nos: linux\n")]);
    // Nothing listens on this port: the box never becomes healthy.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let deployment = Deployment {
        environment: HookEnvironment {
            application_name: "sample".into(),
            deployment_id: "d-1".into(),
            deployment_group_name: "g".into(),
            deployment_group_id: "g".into(),
            box_variables: Default::default(),
        },
        pipeline: "sample-code".into(),
        digest,
        lifecycle_timeout: HOUR,
        ignore_application_stop_failures: false,
        health_check: Some(gantry_agent::health::HealthProbe {
            path: "/health".into(),
            port,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }),
        health_check_timeout: Duration::from_millis(600),
    };
    let error = lifecycle::run(&b.pipeline(), &deployment, None, &mut |_| {}).unwrap_err();
    let Error::Lifecycle { event, reason, .. } = &error else { panic!("{error}") };
    assert_eq!(*event, LifecycleEvent::ValidateService);
    assert!(reason.contains("health check failed"), "{reason}");
}
