//! Pipelines as code, live: the organisation loaded from a directory, all or nothing.
//!
//! The directory holds the topology, the organisation's policy, team and organisation defaults,
//! and one file per pipeline, in any layout (`examples/` is one). [`load`] reads every `.yaml`,
//! `.yml` and `.jsonnet` file under it, tells them apart by what they hold (as
//! `gantry validate` does; YAML with none of Gantry's top-level keys, such as an `appspec.yml`,
//! is not Gantry's and is skipped), loads every pipeline through `gantry-spec`, and applies the policy's
//! enforced rules. One error anywhere refuses the whole organisation, with every diagnostic, so
//! the controller keeps running the last good one: a change is applied whole or not at all.
//!
//! [`Fingerprint`] is what the watcher compares to notice a change without re-reading files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gantry_model::{Plan, Topology};
use gantry_spec::Definition;
use serde::Serialize;

/// The most files an organisation directory may hold: a large organisation has a few thousand
/// pipelines; past this the path is probably wrong (a home directory, a repository checkout).
pub const MAX_FILES: usize = 20_000;

/// How deep the directory tree may go: teams and services nest a few levels.
pub const MAX_DEPTH: usize = 16;

/// An organisation that loaded cleanly.
#[derive(Clone, Debug)]
pub struct Organisation {
    pub topology: Topology,
    /// Every pipeline's plan, by pipeline name.
    pub plans: BTreeMap<String, Plan>,
    /// Every pipeline's definition (its sources and build), by pipeline name.
    pub specs: BTreeMap<String, gantry_model::pipeline::PipelineSpec>,
    /// Best-practice findings that warn (enforced ones refuse the organisation).
    pub warnings: Vec<String>,
}

/// One file's problems, as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FileDiagnostics {
    pub file: String,
    /// Every diagnostic, rendered with its location (file:line:column or field path).
    pub diagnostics: String,
}

/// Why an organisation was refused: every file at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Refused {
    pub files: Vec<FileDiagnostics>,
}

impl Refused {
    fn one(file: &Path, diagnostics: impl ToString) -> Refused {
        Refused {
            files: vec![FileDiagnostics {
                file: file.display().to_string(),
                diagnostics: diagnostics.to_string(),
            }],
        }
    }
}

/// Every definition file under `directory`, sorted.
fn files(directory: &Path) -> Result<Vec<PathBuf>, Refused> {
    let mut files = Vec::new();
    collect(directory, 0, &mut files)?;
    Ok(files)
}

fn collect(directory: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), Refused> {
    if depth > MAX_DEPTH {
        return Err(Refused::one(directory, format!("nested deeper than {MAX_DEPTH} directories")));
    }
    let entries = std::fs::read_dir(directory)
        .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>())
        .map_err(|error| Refused::one(directory, format!("cannot list the directory: {error}")))?;
    let mut entries = entries;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, depth + 1, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "jsonnet")
        ) {
            files.push(path);
            if files.len() > MAX_FILES {
                return Err(Refused::one(
                    directory,
                    format!("more than {MAX_FILES} definition files"),
                ));
            }
        }
    }
    Ok(())
}

/// What one file holds.
enum Kind {
    Topology,
    Policy,
    AlarmTests,
    Definition,
    /// Not a Gantry file (an `appspec.yml`, a service's own configuration): ignored.
    Other,
}

/// The top-level keys that make a YAML file one of Gantry's.
const GANTRY_KEYS: [&str; 6] = ["pipeline", "extends", "abstract", "regions", "rules", "alarms"];

fn kind_of(file: &Path) -> Result<Kind, gantry_spec::Diagnostics> {
    if file.extension().is_some_and(|e| e == "jsonnet") {
        return Ok(Kind::Definition);
    }
    let node = gantry_spec::read_node(file)?;
    let pipeline = node.get("pipeline").is_some();
    if GANTRY_KEYS.iter().all(|key| node.get(key).is_none()) {
        return Ok(Kind::Other);
    }
    Ok(if node.get("tests").is_some() && node.get("alarms").is_some() && !pipeline {
        Kind::AlarmTests
    } else if node.get("rules").is_some() && !pipeline {
        Kind::Policy
    } else if node.get("regions").is_some() && !pipeline {
        Kind::Topology
    } else {
        Kind::Definition
    })
}

/// Loads the organisation in `directory` (see the module documentation).
pub fn load(directory: &Path, today: jiff::civil::Date) -> Result<Organisation, Refused> {
    let mut refused = Vec::new();
    let mut refuse = |file: &Path, diagnostics: String| {
        refused.push(FileDiagnostics { file: file.display().to_string(), diagnostics });
    };
    let mut policy = None;
    let mut loaded: Vec<gantry_spec::Loaded> = Vec::new();
    let mut topology_files = Vec::new();
    for file in files(directory)? {
        match kind_of(&file) {
            Err(diagnostics) => refuse(&file, diagnostics.to_string()),
            Ok(Kind::AlarmTests | Kind::Other) => {}
            Ok(Kind::Topology) => match gantry_spec::load_topology_file(&file) {
                Ok(topology) => topology_files.push((file, topology)),
                Err(diagnostics) => refuse(&file, diagnostics.to_string()),
            },
            Ok(Kind::Policy) => match gantry_spec::policy::load_policy(&file) {
                Ok(loaded_policy) if policy.is_none() => policy = Some(loaded_policy),
                Ok(_) => refuse(&file, "a second policy file; an organisation has one".into()),
                Err(diagnostics) => refuse(&file, diagnostics.to_string()),
            },
            Ok(Kind::Definition) => match gantry_spec::load_definition(&file) {
                Ok(Definition::Pipeline(pipeline)) => loaded.push(*pipeline),
                Ok(Definition::Abstract { .. }) => {}
                Err(diagnostics) => refuse(&file, diagnostics.to_string()),
            },
        }
    }
    let topology = match topology_files.as_slice() {
        [(_, topology)] => Some(topology.clone()),
        [] => {
            refuse(directory, "no topology file (a file with `regions:`)".into());
            None
        }
        [_, (second, _), ..] => {
            refuse(second, "a second topology file; every pipeline shares one".into());
            None
        }
    };
    let mut plans = BTreeMap::new();
    for pipeline in &loaded {
        let file = pipeline.files.first().map(PathBuf::as_path).unwrap_or(directory);
        if topology.as_ref().is_some_and(|topology| *topology != pipeline.topology) {
            refuse(file, "names a topology other than the organisation's".into());
        }
        if plans.insert(pipeline.plan.pipeline.clone(), pipeline.plan.clone()).is_some() {
            refuse(file, format!("pipeline {:?} is defined twice", pipeline.plan.pipeline));
        }
    }
    let mut warnings = Vec::new();
    if let Some(policy) = &policy {
        let report = gantry_spec::policy::check(policy, &loaded, today);
        for finding in &report.findings {
            if finding.is_enforced_violation() {
                refuse(directory, finding.to_string());
            } else if finding.exempted.is_none()
                && finding.level == gantry_spec::policy::Level::Warn
            {
                warnings.push(finding.to_string());
            }
        }
    }
    match topology {
        Some(topology) if refused.is_empty() => {
            let specs = loaded.into_iter().map(|p| (p.plan.pipeline.clone(), p.spec)).collect();
            Ok(Organisation { topology, plans, specs, warnings })
        }
        _ => Err(Refused { files: refused }),
    }
}

/// The names, sizes and modification times of every definition file: what the watcher compares.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    pub fn of(directory: &Path) -> Fingerprint {
        let files = files(directory).unwrap_or_default();
        Fingerprint(
            files
                .into_iter()
                .map(|file| {
                    let metadata = std::fs::metadata(&file).ok();
                    let len = metadata.as_ref().map_or(0, |m| m.len());
                    let modified = metadata.and_then(|m| m.modified().ok());
                    (file, len, modified)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example organisation's own files (`examples/` also holds other demos).
    fn examples(into: &Path) -> PathBuf {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        for part in ["topology.yaml", "policy.yaml", "org", "teams", "services"] {
            let from = examples.join(part);
            if from.is_dir() {
                copy_tree(&from, &into.join(part));
            } else {
                std::fs::copy(&from, into.join(part)).unwrap();
            }
        }
        into.to_path_buf()
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 12, 1)
    }

    #[test]
    fn the_example_organisation_loads_whole() {
        let temp = tempfile::tempdir().unwrap();
        let organisation =
            load(&examples(temp.path()), today()).unwrap_or_else(|refused| panic!("{refused:#?}"));
        assert!(
            organisation.plans.contains_key("checkout-api-code"),
            "{:?}",
            organisation.plans.keys()
        );
        assert!(organisation.plans.len() >= 8, "{:?}", organisation.plans.keys());
    }

    #[test]
    fn one_bad_file_refuses_the_organisation_with_its_diagnostics() {
        let temp = tempfile::tempdir().unwrap();
        examples(temp.path());
        let before = Fingerprint::of(temp.path());
        let bad = temp.path().join("services/checkout-api/broken.yaml");
        let good =
            std::fs::read_to_string(temp.path().join("services/checkout-api/config.yaml")).unwrap();
        let broken =
            good.replace("pipeline: checkout-api-config", "pipeline: broken") + "colour: blue\n";
        std::fs::write(&bad, broken).unwrap();
        assert_ne!(Fingerprint::of(temp.path()), before, "the watcher sees the new file");
        let refused = load(temp.path(), today()).unwrap_err();
        assert_eq!(refused.files.len(), 1, "{refused:#?}");
        assert!(refused.files[0].file.ends_with("broken.yaml"), "{refused:#?}");
        assert!(refused.files[0].diagnostics.contains("colour"), "{refused:#?}");
    }
}
