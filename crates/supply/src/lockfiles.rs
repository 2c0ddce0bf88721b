//! Dependencies a source pins, read from its lock files: `Cargo.lock`, `package-lock.json`,
//! `requirements.txt`, `poetry.lock` and `go.sum`, anywhere in the checkout.
//!
//! The list goes into the artifact manifest and the provenance (as package URLs), so content
//! blockers can match a bad package version in any artifact that contains it. A requirement
//! that is not pinned to one version is listed without a version, and every version range
//! matches it: blockers fail closed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How deep below the checkout's root lock files are looked for.
pub const MAX_SEARCH_DEPTH: usize = 8;
/// The most lock files read from one checkout; a monorepo with more should split its pipelines.
pub const MAX_LOCK_FILES: usize = 256;
/// The largest lock file read; real ones stay well under a few megabytes.
pub const MAX_LOCK_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Directories never searched: other tools' caches and vendored trees, not the source's pins.
const SKIPPED_DIRECTORIES: [&str; 6] =
    [".git", "node_modules", "target", ".venv", "venv", "__pycache__"];

/// A package registry whose lock files Gantry reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Cargo,
    Npm,
    Pypi,
    Go,
}

impl Ecosystem {
    /// The package-URL type (purl spec).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Cargo => "cargo",
            Ecosystem::Npm => "npm",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Go => "golang",
        }
    }

    /// A package name as the registry compares them (PyPI ignores case and `-_.`; npm and Cargo
    /// names are compared lowercase; Go module paths exactly).
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Ecosystem::Pypi => {
                let lower = name.trim().to_lowercase();
                let mut out = String::with_capacity(lower.len());
                for c in lower.chars() {
                    let c = if matches!(c, '-' | '_' | '.') { '-' } else { c };
                    if !(c == '-' && out.ends_with('-')) {
                        out.push(c);
                    }
                }
                out
            }
            Ecosystem::Cargo | Ecosystem::Npm => name.trim().to_lowercase(),
            Ecosystem::Go => name.trim().to_string(),
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ecosystem::Cargo => "cargo",
            Ecosystem::Npm => "npm",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Go => "go",
        })
    }
}

impl std::str::FromStr for Ecosystem {
    type Err = String;
    fn from_str(text: &str) -> Result<Ecosystem, String> {
        match text {
            "cargo" => Ok(Ecosystem::Cargo),
            "npm" => Ok(Ecosystem::Npm),
            "pypi" => Ok(Ecosystem::Pypi),
            "go" | "golang" => Ok(Ecosystem::Go),
            other => Err(format!("unknown ecosystem {other:?}; use cargo, npm, pypi or go")),
        }
    }
}

/// One pinned dependency.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    pub ecosystem: Ecosystem,
    pub name: String,
    /// `None` when the lock file does not pin one version (a loose requirement).
    pub version: Option<String>,
    /// The registry checksum when the lock file records one (`sha256:<hex>`, `sha512-<b64>`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The lock file it came from, relative to the checkout.
    pub lock_file: String,
}

impl Dependency {
    /// The package URL, e.g. `pkg:cargo/serde@1.0.210`.
    pub fn purl(&self) -> String {
        let name = match self.ecosystem {
            Ecosystem::Npm => self.name.replacen('@', "%40", 1),
            _ => self.name.clone(),
        };
        match &self.version {
            Some(version) => format!("pkg:{}/{name}@{version}", self.ecosystem.purl_type()),
            None => format!("pkg:{}/{name}", self.ecosystem.purl_type()),
        }
    }
}

/// Finds and parses every lock file under `root`. A lock file that does not parse fails the
/// whole listing: an artifact whose dependencies are unknown cannot be checked against blockers.
pub fn find(root: &Path) -> Result<Vec<Dependency>, Error> {
    let mut files = Vec::new();
    collect(root, root, 0, &mut files)?;
    files.sort();
    let mut dependencies = BTreeSet::new();
    for relative in files {
        let path = root.join(&relative);
        let size = std::fs::metadata(&path).map_err(|source| Error::io(&path, source))?.len();
        if size > MAX_LOCK_FILE_BYTES {
            return Err(Error::invalid(
                &path,
                format!("lock file larger than {MAX_LOCK_FILE_BYTES} bytes"),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::io(&path, source))?;
        let parsed = parse(&relative, &text).map_err(|reason| Error::invalid(&path, reason))?;
        dependencies.extend(parsed);
    }
    Ok(dependencies.into_iter().collect())
}

fn collect(root: &Path, dir: &Path, depth: usize, files: &mut Vec<String>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let kind = entry.file_type().map_err(|source| Error::io(entry.path(), source))?;
        if kind.is_dir()
            && depth < MAX_SEARCH_DEPTH
            && !SKIPPED_DIRECTORIES.contains(&name.as_str())
        {
            collect(root, &entry.path(), depth + 1, files)?;
        } else if kind.is_file() && lock_file_kind(&name).is_some() {
            if files.len() == MAX_LOCK_FILES {
                return Err(Error::invalid(root, format!("more than {MAX_LOCK_FILES} lock files")));
            }
            let relative =
                entry.path().strip_prefix(root).expect("under root").display().to_string();
            files.push(relative);
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockFileKind {
    CargoLock,
    PackageLock,
    Requirements,
    PoetryLock,
    GoSum,
}

fn lock_file_kind(file_name: &str) -> Option<LockFileKind> {
    match file_name {
        "Cargo.lock" => Some(LockFileKind::CargoLock),
        "package-lock.json" => Some(LockFileKind::PackageLock),
        "poetry.lock" => Some(LockFileKind::PoetryLock),
        "go.sum" => Some(LockFileKind::GoSum),
        name if name.starts_with("requirements") && name.ends_with(".txt") => {
            Some(LockFileKind::Requirements)
        }
        _ => None,
    }
}

/// Parses one lock file; `path` (relative to the checkout) picks the format by file name.
pub fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, String> {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let kind =
        lock_file_kind(file_name).ok_or_else(|| format!("{file_name} is not a known lock file"))?;
    let dependency =
        |ecosystem, name: &str, version: Option<&str>, checksum: Option<String>| Dependency {
            ecosystem,
            name: name.to_string(),
            version: version.map(str::to_string),
            checksum,
            lock_file: path.to_string(),
        };
    let mut out = Vec::new();
    match kind {
        LockFileKind::CargoLock | LockFileKind::PoetryLock => {
            #[derive(Deserialize)]
            struct Lock {
                #[serde(default)]
                package: Vec<Package>,
            }
            #[derive(Deserialize)]
            struct Package {
                name: String,
                version: String,
                source: Option<toml::Value>,
                checksum: Option<String>,
            }
            let lock: Lock =
                toml::from_str(text).map_err(|error| format!("not a valid lock file: {error}"))?;
            for package in lock.package {
                if kind == LockFileKind::CargoLock {
                    // Packages without a source are the workspace's own crates.
                    if package.source.is_none() {
                        continue;
                    }
                    let checksum = package.checksum.map(|hex| format!("sha256:{hex}"));
                    out.push(dependency(
                        Ecosystem::Cargo,
                        &package.name,
                        Some(&package.version),
                        checksum,
                    ));
                } else {
                    out.push(dependency(
                        Ecosystem::Pypi,
                        &Ecosystem::Pypi.normalize_name(&package.name),
                        Some(&package.version),
                        None,
                    ));
                }
            }
        }
        LockFileKind::PackageLock => {
            let lock: serde_json::Value =
                serde_json::from_str(text).map_err(|error| format!("not valid JSON: {error}"))?;
            if let Some(packages) = lock.get("packages").and_then(|p| p.as_object()) {
                for (key, package) in packages {
                    let Some((_, name)) = key.rsplit_once("node_modules/") else { continue };
                    if package.get("link").and_then(|l| l.as_bool()) == Some(true) {
                        continue;
                    }
                    let version = package.get("version").and_then(|v| v.as_str());
                    let integrity =
                        package.get("integrity").and_then(|v| v.as_str()).map(str::to_string);
                    out.push(dependency(Ecosystem::Npm, name, version, integrity));
                }
            } else if let Some(dependencies) = lock.get("dependencies") {
                npm_v1(dependencies, path, &mut out);
            } else {
                return Err("neither `packages` nor `dependencies` found".into());
            }
        }
        LockFileKind::Requirements => {
            let joined = text.replace("\\\n", " ");
            for (index, line) in joined.lines().enumerate() {
                let line = line.split(" #").next().unwrap_or(line).trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
                    continue;
                }
                let requirement = line
                    .split(';')
                    .next()
                    .unwrap_or(line)
                    .split(" --")
                    .next()
                    .unwrap_or(line)
                    .trim();
                let name_end = requirement
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                    .unwrap_or(requirement.len());
                let name = &requirement[..name_end];
                if name.is_empty() {
                    return Err(format!("line {}: no package name in {line:?}", index + 1));
                }
                let rest = requirement[name_end..].trim_start();
                let rest = match rest.strip_prefix('[') {
                    Some(after) => after.split_once(']').map(|(_, r)| r.trim_start()).unwrap_or(""),
                    None => rest,
                };
                let pinned = rest
                    .strip_prefix("===")
                    .or_else(|| rest.strip_prefix("=="))
                    .map(str::trim)
                    .filter(|v| !v.contains(',') && !v.contains('*'));
                out.push(dependency(
                    Ecosystem::Pypi,
                    &Ecosystem::Pypi.normalize_name(name),
                    pinned,
                    None,
                ));
            }
        }
        LockFileKind::GoSum => {
            for (index, line) in text.lines().enumerate() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.is_empty() {
                    continue;
                }
                let [module, version, hash] = fields[..] else {
                    return Err(format!("line {}: expected `module version hash`", index + 1));
                };
                // `/go.mod` lines pin a module's go.mod only; the module's code is not built.
                if version.ends_with("/go.mod") {
                    continue;
                }
                out.push(dependency(Ecosystem::Go, module, Some(version), Some(hash.to_string())));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Walks lockfileVersion 1's nested `dependencies` maps.
fn npm_v1(dependencies: &serde_json::Value, lock_file: &str, out: &mut Vec<Dependency>) {
    let Some(map) = dependencies.as_object() else {
        return;
    };
    for (name, package) in map {
        out.push(Dependency {
            ecosystem: Ecosystem::Npm,
            name: name.clone(),
            version: package.get("version").and_then(|v| v.as_str()).map(str::to_string),
            checksum: package.get("integrity").and_then(|v| v.as_str()).map(str::to_string),
            lock_file: lock_file.to_string(),
        });
        if let Some(nested) = package.get("dependencies") {
            npm_v1(nested, lock_file, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, text: &str, expected: &[&str]) {
        let got: Vec<String> = parse(path, text)
            .unwrap()
            .iter()
            .map(|d| format!("{} {}", d.purl(), d.checksum.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(got, expected, "{path}");
    }

    #[test]
    fn parses_each_lock_file_format() {
        check(
            "Cargo.lock",
            r#"
version = 4

[[package]]
name = "service"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.210"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a"
"#,
            &[
                "pkg:cargo/serde@1.0.210 sha256:c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a",
            ],
        );
        check(
            "web/package-lock.json",
            r#"{"lockfileVersion": 3, "packages": {
                "": {"name": "web", "version": "1.0.0"},
                "node_modules/left-pad": {"version": "1.3.0", "integrity": "sha512-abc"},
                "node_modules/@acme/ui": {"version": "2.0.0"},
                "node_modules/a/node_modules/left-pad": {"version": "1.1.0"},
                "node_modules/local": {"resolved": "../local", "link": true}}}"#,
            &[
                "pkg:npm/%40acme/ui@2.0.0 -",
                "pkg:npm/left-pad@1.1.0 -",
                "pkg:npm/left-pad@1.3.0 sha512-abc",
            ],
        );
        check(
            "package-lock.json",
            r#"{"lockfileVersion": 1, "dependencies": {
                "a": {"version": "1.0.0", "dependencies": {"b": {"version": "2.0.0"}}}}}"#,
            &["pkg:npm/a@1.0.0 -", "pkg:npm/b@2.0.0 -"],
        );
        check(
            "requirements.txt",
            "# pinned\nRequests==2.31.0 \\\n    --hash=sha256:abc\nflask[async]>=2.0 ; python_version > '3.8'\n-r other.txt\nZope.Interface===6.0  # comment\n",
            &["pkg:pypi/flask -", "pkg:pypi/requests@2.31.0 -", "pkg:pypi/zope-interface@6.0 -"],
        );
        check(
            "poetry.lock",
            "[[package]]\nname = \"Django\"\nversion = \"4.2.1\"\ndescription = \"x\"\n",
            &["pkg:pypi/django@4.2.1 -"],
        );
        check(
            "go.sum",
            "golang.org/x/text v0.3.7 h1:abc=\ngolang.org/x/text v0.3.7/go.mod h1:def=\ngithub.com/pkg/errors v0.9.1/go.mod h1:x=\n",
            &["pkg:golang/golang.org/x/text@v0.3.7 h1:abc="],
        );
    }

    #[test]
    fn refuses_unreadable_lock_files() {
        for (path, text) in [
            ("Cargo.lock", "[[package]]\nname = 1"),
            ("package-lock.json", "{"),
            ("package-lock.json", "{}"),
            ("go.sum", "only-two fields"),
            ("requirements.txt", "==1.0"),
        ] {
            assert!(parse(path, text).is_err(), "{path}: {text:?}");
        }
    }

    #[test]
    fn finds_lock_files_but_not_in_vendored_trees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("py")).unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::write(dir.path().join("py/requirements.txt"), "six==1.16.0\n").unwrap();
        std::fs::write(dir.path().join("node_modules/x/go.sum"), "a v1 h1:x\n").unwrap();
        let found = find(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].lock_file, "py/requirements.txt");
    }
}
