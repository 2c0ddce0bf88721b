//! CodeDeploy's `appspec.yml` for EC2/on-premises deployments, read exactly as CodeDeploy
//! documents it: `version: 0.0`, `os: linux`, `files` with `file_exists_behavior`,
//! `permissions` and `hooks` (each script with `location`, `timeout` and `runas`).
//!
//! [`AppSpec::parse`] checks the text alone; [`AppSpec::check_bundle`] checks it against the
//! revision it came with (every `source` and hook `location` exists, no path leaves the bundle)
//! and against this host (every `runas`, `owner` and `group` names a real account). Both run
//! before any hook or file is touched, and report every problem at once, each with its place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

/// The file CodeDeploy reads at the root of every revision.
pub const APPSPEC_FILE: &str = "appspec.yml";
/// CodeDeploy's default for a script without `timeout`: one hour.
pub const DEFAULT_SCRIPT_TIMEOUT_SECONDS: u64 = 3600;
/// CodeDeploy's limit on how long one lifecycle event's scripts may run together: one hour.
pub const MAX_EVENT_SECONDS: u64 = 3600;
/// The largest appspec.yml read; real ones are a few kilobytes, and a bound keeps a hostile
/// revision from making the agent parse megabytes of YAML.
pub const MAX_APPSPEC_BYTES: usize = 256 * 1024;

/// The lifecycle events of an in-place deployment, in CodeDeploy's order (the six traffic events
/// apply only when the box is behind a load balancer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LifecycleEvent {
    BeforeBlockTraffic,
    BlockTraffic,
    AfterBlockTraffic,
    ApplicationStop,
    DownloadBundle,
    BeforeInstall,
    Install,
    AfterInstall,
    ApplicationStart,
    ValidateService,
    BeforeAllowTraffic,
    AllowTraffic,
    AfterAllowTraffic,
}

impl LifecycleEvent {
    /// Every event in the order an in-place deployment runs them.
    pub const IN_PLACE_ORDER: [LifecycleEvent; 13] = [
        LifecycleEvent::BeforeBlockTraffic,
        LifecycleEvent::BlockTraffic,
        LifecycleEvent::AfterBlockTraffic,
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::DownloadBundle,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::Install,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
        LifecycleEvent::BeforeAllowTraffic,
        LifecycleEvent::AllowTraffic,
        LifecycleEvent::AfterAllowTraffic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LifecycleEvent::BeforeBlockTraffic => "BeforeBlockTraffic",
            LifecycleEvent::BlockTraffic => "BlockTraffic",
            LifecycleEvent::AfterBlockTraffic => "AfterBlockTraffic",
            LifecycleEvent::ApplicationStop => "ApplicationStop",
            LifecycleEvent::DownloadBundle => "DownloadBundle",
            LifecycleEvent::BeforeInstall => "BeforeInstall",
            LifecycleEvent::Install => "Install",
            LifecycleEvent::AfterInstall => "AfterInstall",
            LifecycleEvent::ApplicationStart => "ApplicationStart",
            LifecycleEvent::ValidateService => "ValidateService",
            LifecycleEvent::BeforeAllowTraffic => "BeforeAllowTraffic",
            LifecycleEvent::AllowTraffic => "AllowTraffic",
            LifecycleEvent::AfterAllowTraffic => "AfterAllowTraffic",
        }
    }

    fn from_name(name: &str) -> Option<LifecycleEvent> {
        LifecycleEvent::IN_PLACE_ORDER.into_iter().find(|event| event.name() == name)
    }

    /// Events the agent carries out itself; an appspec may not attach scripts to them.
    pub fn reserved(self) -> bool {
        matches!(
            self,
            LifecycleEvent::DownloadBundle
                | LifecycleEvent::Install
                | LifecycleEvent::BlockTraffic
                | LifecycleEvent::AllowTraffic
        )
    }

    /// Events whose scripts come from the previous successfully installed revision, as
    /// CodeDeploy runs them: the box is being stopped, so the code that knows how to stop it is
    /// the code that runs now.
    pub fn from_previous_revision(self) -> bool {
        matches!(
            self,
            LifecycleEvent::ApplicationStop
                | LifecycleEvent::BeforeBlockTraffic
                | LifecycleEvent::AfterBlockTraffic
        )
    }

    /// The six events that exist only when the box is behind a load balancer.
    pub fn traffic(self) -> bool {
        matches!(
            self,
            LifecycleEvent::BeforeBlockTraffic
                | LifecycleEvent::BlockTraffic
                | LifecycleEvent::AfterBlockTraffic
                | LifecycleEvent::BeforeAllowTraffic
                | LifecycleEvent::AllowTraffic
                | LifecycleEvent::AfterAllowTraffic
        )
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the Install event does with a destination file that exists but was not installed by the
/// previous successful deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileExistsBehavior {
    /// The deployment fails (CodeDeploy's default).
    #[default]
    #[serde(rename = "DISALLOW")]
    Disallow,
    /// The revision's file replaces it.
    #[serde(rename = "OVERWRITE")]
    Overwrite,
    /// The file on the box is kept.
    #[serde(rename = "RETAIN")]
    Retain,
}

/// One `files` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    /// Relative to the bundle root; `/` is the whole revision.
    pub source: String,
    /// An absolute path on the box.
    pub destination: PathBuf,
}

/// `type` in a permission: which objects under `object` it applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    File,
    Directory,
}

/// One `permissions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub object: PathBuf,
    /// A glob over names directly below `object` (`*` only), or `**` for everything below it.
    pub pattern: String,
    pub except: Vec<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// The octal mode, as chmod takes it.
    pub mode: Option<u32>,
    /// setfacl entries; they replace any extended ACL the object had.
    pub acls: Vec<String>,
    pub types: Vec<ObjectType>,
}

/// One script of a lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Relative to the bundle root.
    pub location: String,
    pub timeout_seconds: u64,
    pub runas: Option<String>,
}

/// A parsed, checked appspec.yml.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AppSpec {
    pub files: Vec<FileMapping>,
    pub file_exists_behavior: FileExistsBehavior,
    pub permissions: Vec<Permission>,
    pub hooks: BTreeMap<LifecycleEvent, Vec<Script>>,
}

/// One problem with an appspec.yml, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `line:column`, when the problem has a place in the file.
    pub at: Option<(u64, u64)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, column)) => write!(f, "{line}:{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in one appspec.yml.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problems {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            match problem.at {
                Some((line, column)) => {
                    write!(f, "{}:{line}:{column}: {}", self.file, problem.message)?
                }
                None => write!(f, "{}: {}", self.file, problem.message)?,
            }
        }
        Ok(())
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppSpec {
    version: Spanned<Scalar>,
    os: Spanned<String>,
    #[serde(default)]
    files: Option<Vec<Spanned<RawFile>>>,
    #[serde(default)]
    file_exists_behavior: Option<FileExistsBehavior>,
    #[serde(default)]
    permissions: Option<Vec<Spanned<RawPermission>>>,
    #[serde(default)]
    hooks: Option<BTreeMap<String, Spanned<RawScripts>>>,
}

/// One event's scripts; `BeforeInstall:` with nothing after it is an empty list.
type RawScripts = Option<Vec<Spanned<RawScript>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: String,
    destination: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermission {
    object: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    except: Option<Vec<String>>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    mode: Option<Scalar>,
    #[serde(default)]
    acls: Option<Vec<String>>,
    #[serde(default)]
    context: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "type")]
    types: Option<Vec<ObjectType>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    location: String,
    #[serde(default)]
    timeout: Option<Scalar>,
    #[serde(default)]
    runas: Option<String>,
}

/// A YAML scalar as written: `version: 0.0` is a number, `mode: "0644"` a string.
#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    Integer(u64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar::Integer(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
                u64::try_from(value)
                    .map(Scalar::Integer)
                    .map_err(|_| E::custom(format!("{value} is negative")))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(value.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

fn at(location: &Location) -> Option<(u64, u64)> {
    (location.line() > 0).then(|| (location.line(), location.column()))
}

/// A chmod mode as CodeDeploy takes it: octal digits, written as a number (`644`, `4755`) or a
/// quoted string (`"0644"`).
fn parse_mode(mode: &Scalar) -> Result<u32, String> {
    let digits = match mode {
        Scalar::Integer(value) => value.to_string(),
        Scalar::Text(text) => text.clone(),
        Scalar::Float(value) => return Err(format!("mode {value} is not an octal mode like 644")),
    };
    let valid = (1..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
    if !valid {
        return Err(format!(
            "mode {digits:?} is not an octal mode of up to four digits like 644 or \"0644\" \
             (symbolic modes such as u+x are not supported)"
        ));
    }
    Ok(u32::from_str_radix(&digits, 8).expect("checked octal digits"))
}

/// `u:name:perms`, `g:name:perms`, `m::perms` and their `d:` (default) forms, as setfacl takes
/// them. Entries for the owning user, group or others without a name are refused, as CodeDeploy
/// refuses them: `mode` sets those.
fn check_acl(entry: &str) -> Result<(), String> {
    let body = entry.strip_prefix("d:").or_else(|| entry.strip_prefix("default:")).unwrap_or(entry);
    let parts: Vec<&str> = body.split(':').collect();
    let [kind, name, perms] = parts[..] else {
        return Err(format!("ACL entry {entry:?} is not of the form u:NAME:rwx"));
    };
    let perms_ok = !perms.is_empty() && perms.chars().all(|c| matches!(c, 'r' | 'w' | 'x' | '-'));
    if !perms_ok {
        return Err(format!("ACL entry {entry:?}: permissions must be made of r, w, x and -"));
    }
    match (kind, name.is_empty()) {
        ("u" | "user" | "g" | "group", false) => Ok(()),
        ("m" | "mask", _) => Ok(()),
        ("u" | "user" | "g" | "group" | "o" | "other", true) => Err(format!(
            "ACL entry {entry:?} names no user or group; use `mode` for the owner, group and others"
        )),
        _ => Err(format!("ACL entry {entry:?}: the kind must be u, g or m")),
    }
}

/// A path inside the bundle: relative, without `..`.
fn bundle_relative(path: &str) -> bool {
    let path = Path::new(path);
    !path.is_absolute()
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl AppSpec {
    /// Parses and checks the text of an appspec.yml; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<AppSpec, Problems> {
        let fail = |problems: Vec<Problem>| Problems { file: file.to_string(), problems };
        if text.len() > MAX_APPSPEC_BYTES {
            return Err(fail(vec![Problem {
                at: None,
                message: format!(
                    "the file is {} bytes, more than the limit of {MAX_APPSPEC_BYTES}",
                    text.len()
                ),
            }]));
        }
        let raw: RawAppSpec = serde_saphyr::from_str(text).map_err(|error| {
            let message = error.to_string();
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            // The rendered message carries a snippet; its first line says what is wrong.
            let first = message.lines().next().unwrap_or(message);
            // The place is given once, in front, as `file:line:column`.
            let first = match first.split_once(": ") {
                Some((place, rest)) if place.starts_with("line ") => rest,
                _ => first,
            }
            .to_string();
            fail(vec![Problem { at: error.location().as_ref().and_then(at), message: first }])
        })?;
        let mut problems = Vec::new();
        let mut problem = |location: &Location, message: String| {
            problems.push(Problem { at: at(location), message })
        };

        let version_ok = match &raw.version.value {
            Scalar::Float(value) => *value == 0.0,
            Scalar::Text(text) => text == "0.0",
            Scalar::Integer(_) => false,
        };
        if !version_ok {
            problem(&raw.version.referenced, "`version` must be 0.0, the only version".into());
        }
        match raw.os.value.as_str() {
            "linux" => {}
            "windows" => problem(
                &raw.os.referenced,
                "`os: windows` revisions need a Windows host; this agent runs revisions for linux"
                    .into(),
            ),
            other => {
                problem(&raw.os.referenced, format!("`os` must be linux or windows, not {other:?}"))
            }
        }

        let mut files = Vec::new();
        for entry in raw.files.unwrap_or_default() {
            let RawFile { source, destination } = entry.value;
            if source != "/" && !bundle_relative(&source) {
                problem(
                    &entry.referenced,
                    format!(
                        "files: source {source:?} must be `/` or a path relative to the bundle root, without `..`"
                    ),
                );
            }
            let destination_path = PathBuf::from(&destination);
            if !destination_path.is_absolute()
                || destination_path.components().any(|c| c == Component::ParentDir)
            {
                problem(
                    &entry.referenced,
                    format!(
                        "files: destination {destination:?} must be a fully qualified path without `..`"
                    ),
                );
            }
            files.push(FileMapping { source, destination: destination_path });
        }

        let mut permissions = Vec::new();
        for entry in raw.permissions.unwrap_or_default() {
            let raw_permission = entry.value;
            let object = PathBuf::from(&raw_permission.object);
            if raw_permission.object.is_empty() || !object.is_absolute() {
                problem(
                    &entry.referenced,
                    format!(
                        "permissions: object {:?} must be a fully qualified path",
                        raw_permission.object
                    ),
                );
            }
            if raw_permission.context.is_some() {
                problem(
                    &entry.referenced,
                    "permissions: `context` sets SELinux labels, and this agent's hosts run without SELinux; remove it".into(),
                );
            }
            let mode = match raw_permission.mode.as_ref().map(parse_mode).transpose() {
                Ok(mode) => mode,
                Err(message) => {
                    problem(&entry.referenced, format!("permissions: {message}"));
                    None
                }
            };
            let acls = raw_permission.acls.unwrap_or_default();
            for acl in &acls {
                if let Err(message) = check_acl(acl) {
                    problem(&entry.referenced, format!("permissions: {message}"));
                }
            }
            let types = raw_permission
                .types
                .unwrap_or_else(|| vec![ObjectType::File, ObjectType::Directory]);
            if types.is_empty() {
                problem(&entry.referenced, "permissions: `type` may not be empty".into());
            }
            permissions.push(Permission {
                object,
                pattern: raw_permission.pattern.unwrap_or_else(|| "**".to_string()),
                except: raw_permission.except.unwrap_or_default(),
                owner: raw_permission.owner,
                group: raw_permission.group,
                mode,
                acls,
                types,
            });
        }

        let mut hooks = BTreeMap::new();
        for (name, scripts) in raw.hooks.unwrap_or_default() {
            let Some(event) = LifecycleEvent::from_name(&name) else {
                problem(
                    &scripts.referenced,
                    format!(
                        "hooks: {name:?} is not a lifecycle event; the events are {}",
                        LifecycleEvent::IN_PLACE_ORDER
                            .iter()
                            .filter(|event| !event.reserved())
                            .map(|event| event.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            if event.reserved() {
                problem(
                    &scripts.referenced,
                    format!("hooks: {name} is carried out by the agent and cannot run scripts"),
                );
                continue;
            }
            let mut list = Vec::new();
            for script in scripts.value.unwrap_or_default() {
                let RawScript { location, timeout, runas } = script.value;
                if !bundle_relative(&location) {
                    problem(
                        &script.referenced,
                        format!(
                            "hooks: {name}: location {location:?} must be relative to the bundle root, without `..`"
                        ),
                    );
                }
                let timeout_seconds = match timeout {
                    None => DEFAULT_SCRIPT_TIMEOUT_SECONDS,
                    Some(Scalar::Integer(seconds)) if seconds > 0 => seconds,
                    Some(other) => {
                        problem(
                            &script.referenced,
                            format!(
                                "hooks: {name}: timeout {other:?} must be a whole number of seconds above 0"
                            ),
                        );
                        DEFAULT_SCRIPT_TIMEOUT_SECONDS
                    }
                };
                list.push(Script { location, timeout_seconds, runas });
            }
            hooks.insert(event, list);
        }

        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(AppSpec {
            files,
            file_exists_behavior: raw.file_exists_behavior.unwrap_or_default(),
            permissions,
            hooks,
        })
    }

    /// Reads and parses `bundle/appspec.yml`.
    pub fn read(bundle: &Path) -> Result<AppSpec, Problems> {
        let path = bundle.join(APPSPEC_FILE);
        let file = path.display().to_string();
        let text = std::fs::read(&path).map_err(|error| Problems {
            file: file.clone(),
            problems: vec![Problem {
                at: None,
                message: format!(
                    "cannot read it ({error}); every revision carries an {APPSPEC_FILE} at its root"
                ),
            }],
        })?;
        let text = String::from_utf8(text).map_err(|_| Problems {
            file: file.clone(),
            problems: vec![Problem { at: None, message: "is not UTF-8".into() }],
        })?;
        AppSpec::parse(&text, &file)
    }

    /// The scripts of one event, in order.
    pub fn scripts(&self, event: LifecycleEvent) -> &[Script] {
        self.hooks.get(&event).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Checks the appspec against its bundle and this host: every file `source` and hook
    /// `location` exists in the bundle (and does not leave it through a symbolic link), and
    /// every `runas`, `owner` and `group` names an account here.
    pub fn check_bundle(&self, bundle: &Path, file: &str) -> Result<(), Problems> {
        let mut problems = Vec::new();
        let mut complain = |message: String| problems.push(Problem { at: None, message });
        let root = bundle.canonicalize().unwrap_or_else(|_| bundle.to_path_buf());
        let inside = |relative: &str| -> Option<PathBuf> {
            let path = root.join(relative).canonicalize().ok()?;
            path.starts_with(&root).then_some(path)
        };
        for mapping in &self.files {
            if mapping.source != "/" && inside(&mapping.source).is_none() {
                complain(format!(
                    "files: source {:?} is not in the revision (or leaves it through a link)",
                    mapping.source
                ));
            }
        }
        for (event, scripts) in &self.hooks {
            for script in scripts {
                match inside(&script.location) {
                    Some(path) if path.is_file() => {}
                    _ => complain(format!(
                        "hooks: {event}: script {:?} does not exist in the revision",
                        script.location
                    )),
                }
                if let Some(user) = &script.runas
                    && !matches!(nix::unistd::User::from_name(user), Ok(Some(_)))
                {
                    complain(format!(
                        "hooks: {event}: runas user {user:?} does not exist on this host"
                    ));
                }
            }
        }
        for permission in &self.permissions {
            if let Some(owner) = &permission.owner
                && !matches!(nix::unistd::User::from_name(owner), Ok(Some(_)))
            {
                complain(format!("permissions: owner {owner:?} does not exist on this host"));
            }
            if let Some(group) = &permission.group
                && !matches!(nix::unistd::Group::from_name(group), Ok(Some(_)))
            {
                complain(format!("permissions: group {group:?} does not exist on this host"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems { file: file.to_string(), problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text`; `expected` is `Ok` with a summary or the problems' text.
    fn check(text: &str, expected: Result<&str, &str>) {
        let actual = match AppSpec::parse(text, "appspec.yml") {
            Ok(spec) => Ok(summary(&spec)),
            Err(problems) => Err(problems.to_string()),
        };
        match (&actual, expected) {
            (Ok(summary), Ok(expected)) => assert_eq!(summary, expected),
            (Err(message), Err(expected)) => {
                assert!(message.contains(expected), "expected {expected:?} in:\n{message}")
            }
            _ => panic!("expected {expected:?}, got {actual:?}"),
        }
    }

    fn summary(spec: &AppSpec) -> String {
        let mut out = Vec::new();
        for file in &spec.files {
            out.push(format!("file {} -> {}", file.source, file.destination.display()));
        }
        out.push(format!("exists {:?}", spec.file_exists_behavior));
        for p in &spec.permissions {
            out.push(format!(
                "perm {} {} {:?} {:?} {:?} {:o} {:?} {:?}",
                p.object.display(),
                p.pattern,
                p.except,
                p.owner,
                p.group,
                p.mode.unwrap_or(0),
                p.acls,
                p.types
            ));
        }
        for (event, scripts) in &spec.hooks {
            for s in scripts {
                out.push(format!("{event} {} {} {:?}", s.location, s.timeout_seconds, s.runas));
            }
        }
        out.join("\n")
    }

    #[test]
    fn codedeploy_documented_format() {
        check(
            r#"version: 0.0
os: linux
files:
  - source: Config/config.txt
    destination: /webapps/Config
  - source: /
    destination: /webapps/myApp
file_exists_behavior: OVERWRITE
permissions:
  - object: /tmp/my-app
    pattern: "*-3.txt"
    owner: adm
    group: wheel
    mode: 464
    type:
      - file
  - object: /tmp/my-app
    except: [my-file-3.txt]
    mode: "0644"
    acls:
      - u:bob:rw
      - m::rw
hooks:
  ApplicationStop:
    - location: scripts/stop.sh
      timeout: 300
      runas: root
  AfterInstall:
    - location: Scripts/RunResourceTests.sh
      timeout: 180
    - location: Scripts/PostDeploy.sh
"#,
            Ok(r#"file Config/config.txt -> /webapps/Config
file / -> /webapps/myApp
exists Overwrite
perm /tmp/my-app *-3.txt [] Some("adm") Some("wheel") 464 [] [File]
perm /tmp/my-app ** ["my-file-3.txt"] None None 644 ["u:bob:rw", "m::rw"] [File, Directory]
ApplicationStop scripts/stop.sh 300 Some("root")
AfterInstall Scripts/RunResourceTests.sh 180 None
AfterInstall Scripts/PostDeploy.sh 3600 None"#),
        );
    }

    #[test]
    fn minimal_and_empty_hooks() {
        check("version: 0.0\nos: linux\n", Ok("exists Disallow"));
        check("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n", Ok("exists Disallow"));
    }

    #[test]
    fn refusals_name_the_place() {
        check("version: 1.0\nos: linux\n", Err("appspec.yml:1:10: `version` must be 0.0"));
        check("version: 0.0\nos: windows\n", Err("appspec.yml:2:5: `os: windows`"));
        check("version: 0.0\nos: linux\nextra: 1\n", Err("appspec.yml:3:1: unknown field `extra`"));
        check(
            "version: 0.0\nos: linux\nhooks:\n  Install:\n    - location: a.sh\n",
            Err("Install is carried out by the agent"),
        );
        check(
            "version: 0.0\nos: linux\nhooks:\n  Afterinstall:\n    - location: a.sh\n",
            Err("\"Afterinstall\" is not a lifecycle event"),
        );
        check(
            "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: ../a.sh\n",
            Err("appspec.yml:5:7: hooks: AfterInstall: location \"../a.sh\""),
        );
        check(
            "version: 0.0\nos: linux\nfiles:\n  - source: a\n    destination: relative/dir\n",
            Err("must be a fully qualified path"),
        );
        check(
            "version: 0.0\nos: linux\npermissions:\n  - object: /a\n    mode: u+x\n",
            Err("symbolic modes"),
        );
        check(
            "version: 0.0\nos: linux\npermissions:\n  - object: /a\n    acls: [\"u::rw\"]\n",
            Err("names no user or group"),
        );
        check("version: 0.0\nos: linux\nfile_exists_behavior: MERGE\n", Err("appspec.yml:3:23"));
    }

    #[test]
    fn every_problem_at_once() {
        let problems = AppSpec::parse(
            "version: 0.1\nos: solaris\nhooks:\n  Nope:\n    - location: a\n",
            "appspec.yml",
        )
        .unwrap_err();
        assert_eq!(problems.problems.len(), 3, "{problems}");
    }
}
