//! The operator's commands against a real `gantry server` process on loopback: each command is
//! run as a person would, and what the API then shows is checked. `gantry watch` runs in a
//! detached tmux session (redrawn in place) and with a pipe (plain lines).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The pipeline the tests act on, from the example organisation.
const PIPELINE: &str = "checkout-api-code";

/// How long the tests wait for the controller or a terminal to show something.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `gantry server` with the example organisation, killed and reaped when dropped.
struct Controller {
    child: Child,
    url: String,
    admin: String,
    temp: tempfile::TempDir,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Controller {
    fn start() -> Controller {
        let temp = tempfile::tempdir().unwrap();
        // The example organisation's storefront team and its checkout-api service.
        let organisation = temp.path().join("organisation");
        for part in ["org", "teams", "services/checkout-api"] {
            copy_tree(&examples().join(part), &organisation.join(part));
        }
        for file in ["topology.yaml", "policy.yaml"] {
            std::fs::copy(examples().join(file), organisation.join(file)).unwrap();
        }
        let data = temp.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--data-dir"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--organisation"])
            .arg(&organisation)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The guard first, so the server is killed whatever fails from here on.
        let mut controller = Controller { child, url: String::new(), admin: String::new(), temp };
        let mut line = String::new();
        let stdout = controller.child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        controller.url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_default()
            .to_string();
        let admin = std::fs::read_to_string(data.join("bootstrap-admin.token"));
        controller.admin = admin.unwrap_or_default().trim().to_string();
        assert!(controller.url.starts_with("http://"), "no address in {line:?}");
        let viewer = controller.person("viewer");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (_, list) = controller.call(&viewer, "GET", "/api/v1/pipelines", None);
            if list.to_string().contains(PIPELINE) {
                break;
            }
            assert!(Instant::now() < deadline, "the organisation never loaded: {list}");
            assert!(controller.child.try_wait().unwrap().is_none(), "the server exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        controller
    }

    fn call(&mut self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {token}");
        let response = match (method, body) {
            ("GET", None) => agent.get(&url).header("authorization", &auth).call(),
            ("POST", Some(body)) => agent.post(&url).header("authorization", &auth).send_json(body),
            other => panic!("unsupported request {other:?}"),
        }
        .unwrap();
        let status = response.status().as_u16();
        (status, response.into_body().read_json().unwrap_or(Value::Null))
    }

    /// A token for a person with one role on every team.
    fn person(&mut self, role: &str) -> String {
        let body = json!({"kind": "person", "name": role, "person": format!("{role}@example.com"),
                          "grants": [{"role": role}]});
        let admin = self.admin.clone();
        let (status, answer) = self.call(&admin, "POST", "/api/v1/tokens", Some(body));
        assert_eq!(status, 201, "{answer}");
        answer["token"].as_str().unwrap().to_string()
    }

    fn pipeline(&mut self, token: &str) -> Value {
        let (status, view) =
            self.call(token, "GET", &format!("/api/v1/pipelines/{PIPELINE}"), None);
        assert_eq!(status, 200, "{view}");
        view
    }

    /// A config home with no Gantry config, so the user's own file never leaks into a test.
    fn config_home(&self) -> PathBuf {
        let home = self.temp.path().join("config-home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// `gantry args` with the server and `token` from the environment.
    fn gantry(&self, token: &str, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .args(args)
            .env("GANTRY_SERVER", &self.url)
            .env("GANTRY_TOKEN", token)
            .env("XDG_CONFIG_HOME", self.config_home())
            .env_remove("GANTRY_CONFIG");
        run(command)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command) -> Run {
    let output = command.stdin(Stdio::null()).output().unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// What a run should show: success or failure, and text its stdout or stderr must contain.
#[derive(Debug)]
enum Expect<'a> {
    Ok(&'a str),
    Refused(&'a str),
}

fn check(run: &Run, expect: Expect<'_>) {
    match expect {
        Expect::Ok(text) => {
            assert!(run.ok && run.stdout.contains(text), "expected {text:?} on stdout: {run:#?}")
        }
        // A refusal: non-zero, the reason on stderr, nothing on stdout.
        Expect::Refused(text) => assert!(
            !run.ok && run.stderr.contains(text) && run.stdout.is_empty(),
            "expected a refusal saying {text:?}: {run:#?}"
        ),
    }
}

#[test]
fn each_operator_command_acts_through_the_api() {
    let mut controller = Controller::start();
    let operator = controller.person("operator");
    let viewer = controller.person("viewer");
    let approver = controller.person("approver");

    let status = controller.gantry(&viewer, &["status"]);
    check(&status, Expect::Ok("storefront  alpha idle · beta idle · gamma idle"));
    assert!(status.stdout.lines().any(|l| l.starts_with(PIPELINE)), "{status:#?}");
    let listed: Value =
        serde_json::from_str(&controller.gantry(&viewer, &["status", "-o", "json"]).stdout)
            .unwrap();
    assert!(
        listed["pipelines"].as_array().unwrap().iter().any(|p| p["pipeline"] == PIPELINE),
        "{listed}"
    );
    check(&controller.gantry(&viewer, &["pipeline", "show", PIPELINE]), Expect::Ok("gamma"));

    // A hold: accepted, shown as held, audited with its reason and its holder.
    let hold = ["hold", PIPELINE, "--reason", "incident 7: checkout latency"];
    check(&controller.gantry(&viewer, &hold), Expect::Refused("this needs the `hold` permission"));
    check(&controller.gantry(&viewer, &hold), Expect::Refused("developer, operator"));
    assert_eq!(controller.pipeline(&viewer)["status"]["held"], false);
    check(&controller.gantry(&operator, &hold), Expect::Ok("accepted"));
    assert_eq!(controller.pipeline(&viewer)["status"]["held"], true);
    check(&controller.gantry(&viewer, &["status"]), Expect::Ok("[held]"));
    check(&controller.gantry(&viewer, &["pipeline", "show", PIPELINE]), Expect::Ok("held: yes"));
    let (_, audit) = controller.call(&viewer, "GET", "/api/v1/audit?limit=1000", None);
    let audit = audit.to_string();
    assert!(
        audit.contains("incident 7: checkout latency") && audit.contains("api:operator"),
        "{audit}"
    );
    let shown = controller.gantry(&viewer, &["pipeline", "show", PIPELINE, "-o", "json"]);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["status"]["held"], true, "{shown}");

    check(&controller.gantry(&operator, &["release", PIPELINE]), Expect::Ok("accepted"));
    assert_eq!(controller.pipeline(&viewer)["status"]["held"], false);

    // Overrides: a reason and an expiry within a day, or refused with the field at fault.
    let over = ["override", PIPELINE, "--blocker", "time_window", "--stage", "gamma"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        over.iter().copied().chain(extra.iter().copied()).collect()
    };
    for (args, expect) in [
        (with(&["--for", "2h"]), Expect::Refused("--reason")),
        (with(&["--reason", "launch"]), Expect::Refused("--for")),
        (with(&["--reason", " ", "--for", "2h"]), Expect::Refused("field `reason`")),
        (with(&["--reason", "launch", "--for", "25h"]), Expect::Refused("field `expires_at`")),
        (
            with(&["--reason", "launch", "--until", "2020-01-01T00:00:00Z"]),
            Expect::Refused("within 24 hours"),
        ),
        (with(&["--reason", "launch day", "--for", "2h"]), Expect::Ok("accepted")),
    ] {
        check(&controller.gantry(&operator, &args), expect);
    }
    // Reviews are never overridden; a kind the API does not know is named as the field at fault.
    let kind = |blocker: &'static str| {
        vec!["override", PIPELINE, "--blocker", blocker, "--reason", "r", "--for", "1h"]
    };
    for (args, expect) in [
        (kind("nonsense"), Expect::Refused("field `blocker`")),
        (kind("unreviewed"), Expect::Refused("Unreviewed blockers cannot be overridden")),
    ] {
        check(&controller.gantry(&operator, &args), expect);
    }
    let (_, audit) = controller.call(&viewer, "GET", "/api/v1/audit?limit=1000", None);
    assert!(audit.to_string().contains("launch day"), "the override is audited: {audit}");

    // The engine's verdicts: nothing has failed or deployed yet, so these are refused by it,
    // with its reason and a non-zero exit.
    check(
        &controller.gantry(&operator, &["retry", PIPELINE, "--stage", "gamma"]),
        Expect::Refused("the engine refused to retry"),
    );
    let decision = controller.gantry(
        &operator,
        &["rollback", PIPELINE, "--stage", "gamma", "--reason", "errors", "-o", "json"],
    );
    let decision: Value = serde_json::from_str(&decision.stdout).unwrap();
    assert!(decision["id"].as_str().unwrap().starts_with("op-"), "{decision}");
    check(
        &controller.gantry(
            &operator,
            &[
                "rollback",
                PIPELINE,
                "--stage",
                "gamma",
                "--target",
                "prod/eu-west-1/eu-west-1a",
                "--reason",
                "x",
            ],
        ),
        Expect::Refused("cannot be used with"),
    );
    check(
        &controller.gantry(&operator, &["rollback", PIPELINE, "--target", "prod", "--reason", "x"]),
        Expect::Refused("is not a target"),
    );
    let unknown = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    check(
        &controller
            .gantry(&approver, &["approve", PIPELINE, "--stage", "gamma", "--artifact", unknown]),
        Expect::Refused("field `artifact`"),
    );
    check(
        &controller.gantry(&operator, &["pipeline", "show", "no-such-pipeline"]),
        Expect::Refused("no pipeline \"no-such-pipeline\" runs here"),
    );

    // Roll forward and urgent mode: who may, and refusals with the field at fault.
    let senior = controller.person("senior_approver");
    let developer = controller.person("developer");
    let roll = ["roll-forward", PIPELINE, "--stage", "gamma", "--artifact", unknown];
    let roll_with_reason = [&roll[..], &["--reason", "fix"]].concat();
    for (token, args, expect) in [
        (
            &viewer,
            &roll_with_reason[..],
            Expect::Refused("this needs the `roll_forward` permission"),
        ),
        (&operator, &roll[..], Expect::Refused("--reason")),
        (&operator, &roll_with_reason[..], Expect::Refused("field `artifact`")),
        (
            &developer,
            &["urgent", "request", PIPELINE, "--artifact", unknown, "--reason", "outage"][..],
            Expect::Refused("field `artifact`"),
        ),
        (
            &viewer,
            &["urgent", "request", PIPELINE, "--artifact", unknown, "--reason", "outage"][..],
            Expect::Refused("this needs the `urgent_request` permission"),
        ),
        (
            &operator,
            &["urgent", "approve", PIPELINE, "urgent-0000"][..],
            Expect::Refused("senior_approver"),
        ),
        (
            &senior,
            &["urgent", "approve", PIPELINE, "urgent-0000"][..],
            Expect::Refused("no urgent request \"urgent-0000\" waits"),
        ),
        (&developer, &["urgent", "end", PIPELINE][..], Expect::Refused("urgent mode is off")),
    ] {
        check(&controller.gantry(token, args), expect);
    }
    let list = controller.gantry(&viewer, &["urgent", "list", PIPELINE, "-o", "json"]);
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list["requests"], json!([]), "{list}");
}

#[test]
fn connection_settings_come_from_flags_the_environment_and_the_config_file() {
    let mut controller = Controller::start();
    let viewer = controller.person("viewer");
    check(
        &controller.gantry("gantry_0000", &["status"]),
        Expect::Refused("the controller refused the token"),
    );
    let unreachable = ["status", "--server", "http://127.0.0.1:9"];
    check(
        &controller.gantry(&viewer, &unreachable),
        Expect::Refused("cannot reach the controller at http://127.0.0.1:9"),
    );
    check(
        &controller.gantry(&viewer, &["status", "--server", "localhost:7700"]),
        Expect::Refused("is not a URL"),
    );

    // The config file alone.
    let home = controller.config_home();
    std::fs::create_dir_all(home.join("gantry")).unwrap();
    let token_file = home.join("gantry/token");
    std::fs::write(&token_file, format!("{viewer}\n")).unwrap();
    let config = home.join("gantry/config.toml");
    std::fs::write(&config, format!("server = {:?}\ntoken_file = \"token\"\n", controller.url))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .arg("status")
        .env("XDG_CONFIG_HOME", &home)
        .env_remove("GANTRY_SERVER")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_CONFIG");
    check(&run(command), Expect::Ok(PIPELINE));
    // A flag beats the file.
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(["status", "--token", "gantry_0000"])
        .env("XDG_CONFIG_HOME", &home)
        .env_remove("GANTRY_SERVER")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_CONFIG");
    check(&run(command), Expect::Refused("refused the token"));
    // A typo is refused with the file and the key, not ignored.
    std::fs::write(&config, format!("server = {:?}\ntokn = \"x\"\n", controller.url)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .arg("status")
        .env("GANTRY_CONFIG", &config)
        .env_remove("GANTRY_SERVER")
        .env_remove("GANTRY_TOKEN");
    let refused = run(command);
    check(&refused, Expect::Refused("config.toml"));
    check(&refused, Expect::Refused("tokn"));

    let completions = controller.gantry(&viewer, &["completions", "bash"]);
    check(&completions, Expect::Ok("watch"));
    check(&completions, Expect::Ok("rollback"));
}

/// A tmux server of its own (`tmux -L`), killed with every session when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    fn capture(&self) -> Vec<String> {
        let run = run({
            let mut command = self.command();
            command.args(["capture-pane", "-p", "-t", "watch"]);
            command
        });
        assert!(run.ok, "{run:#?}");
        run.stdout.lines().map(str::to_string).collect()
    }

    /// Captures until `ready` holds of the screen.
    fn until(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").stderr(Stdio::null()).status();
    }
}

#[test]
fn watch_redraws_in_place_in_a_terminal() {
    let mut controller = Controller::start();
    let viewer = controller.person("viewer");
    let operator = controller.person("operator");
    let tmux = Tmux { socket: format!("gantry-watch-{}", std::process::id()) };
    let shell_command = format!(
        "env GANTRY_SERVER={} GANTRY_TOKEN={viewer} XDG_CONFIG_HOME={} {} watch {PIPELINE} --interval 1s",
        controller.url,
        controller.config_home().display(),
        env!("CARGO_BIN_EXE_gantry"),
    );
    let started = run({
        let mut command = tmux.command();
        command.args(["new-session", "-d", "-s", "watch", "-x", "150", "-y", "40", &shell_command]);
        command
    });
    assert!(started.ok, "tmux is needed (Debian's tmux): {started:#?}");

    let pipeline_line = format!("{PIPELINE} (team storefront)");
    let first =
        tmux.until("the pipeline", |screen| screen.iter().any(|l| l.starts_with(&pipeline_line)));
    assert!(first[0].starts_with("gantry watch — "), "{first:#?}");
    check(
        &controller.gantry(&operator, &["hold", PIPELINE, "--reason", "incident 8"]),
        Expect::Ok("accepted"),
    );
    let second = tmux.until("the hold", |screen| screen.iter().any(|l| l.contains("[held]")));

    // Redrawn in place: one header, still on the first row, with a later time; the pipeline on
    // the row it had, now held; nothing scrolled.
    let headers = second.iter().filter(|line| line.starts_with("gantry watch — ")).count();
    assert_eq!(headers, 1, "{second:#?}");
    assert!(
        second[0].starts_with("gantry watch — ") && second[0] != first[0],
        "{first:#?}\n{second:#?}"
    );
    let row = |screen: &[String]| screen.iter().position(|l| l.starts_with(&pipeline_line));
    assert_eq!(row(&first), row(&second), "{first:#?}\n{second:#?}");
    assert!(second[row(&second).unwrap()].ends_with("[held]"), "{second:#?}");
    let stages =
        |screen: &[String]| screen.iter().filter(|l| l.trim_start().starts_with("gamma")).count();
    assert_eq!((stages(&first), stages(&second)), (1, 1), "each stage drawn once");
}

#[test]
fn watch_prints_plain_lines_when_not_a_terminal() {
    let mut controller = Controller::start();
    let viewer = controller.person("viewer");
    let run =
        controller.gantry(&viewer, &["watch", PIPELINE, "--interval", "1s", "--refreshes", "2"]);
    check(&run, Expect::Ok(&format!("{PIPELINE}: not held")));
    check(&run, Expect::Ok(&format!("{PIPELINE} gamma: idle")));
    assert!(!run.stdout.contains('\x1b'), "no terminal control in a pipe: {:?}", run.stdout);
    // Nothing changed between the two refreshes, so each line was printed once.
    let lines: Vec<&str> = run.stdout.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(lines.len(), unique.len(), "{}", run.stdout);
    let json = controller.gantry(&viewer, &["watch", PIPELINE, "--refreshes", "1", "-o", "json"]);
    let frame: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(frame["pipelines"][0]["pipeline"], PIPELINE, "{frame}");
}
