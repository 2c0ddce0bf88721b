//! Pipelines as code: everything between a pipeline file on disk and a validated, expanded
//! [`Plan`].
//!
//! [`load`] reads a pipeline definition (YAML, or Jsonnet that produces the same shape),
//! follows its `extends` chain and merges it ([`inherit`]), types it with located errors
//! ([`de`]), reads the topology it names, checks it ([`validate`]) and expands its waves
//! ([`expand`]). Any error refuses the pipeline as a whole; all errors found are reported.
//! [`policy`] applies the organisation's best-practice rules to loaded pipelines.

mod calendar;
pub mod de;
pub mod defaults;
pub mod diagnostic;
pub mod expand;
pub mod inherit;
mod jsonnet;
pub mod node;
pub mod policy;
pub mod validate;
mod yaml;

use std::path::{Path, PathBuf};

use gantry_model::{PipelineSpec, Plan, Topology};

pub use diagnostic::{Diagnostic, Diagnostics, Location, Severity};
use node::{Node, Value};

/// Files larger than this are refused: a pipeline definition is a few kilobytes, and the limit
/// keeps a mistaken path (a log, a binary) from being parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A pipeline that loaded, validated and expanded cleanly.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file and its ancestors, the file itself first.
    pub files: Vec<PathBuf>,
    pub spec: PipelineSpec,
    pub topology: Topology,
    pub plan: Plan,
}

/// What a definition file turned out to be.
#[derive(Debug, Clone)]
pub enum Definition {
    Pipeline(Box<Loaded>),
    /// Defaults marked `abstract: true`: checked through the pipelines that extend them.
    Abstract {
        file: PathBuf,
    },
}

/// Loads, validates and expands the pipeline in `path`.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    match load_definition(path)? {
        Definition::Pipeline(loaded) => Ok(*loaded),
        Definition::Abstract { file } => Err(Diagnostic::error(
            Location::whole_file(&file),
            "this file is abstract (defaults for other pipelines) and has no plan of its own",
        )
        .with_hint("plan a pipeline that extends it")
        .into()),
    }
}

/// Loads `path`, telling pipelines from abstract defaults.
pub fn load_definition(path: &Path) -> Result<Definition, Diagnostics> {
    let (merged, files) = inherit::load_chain(path, &mut read_node)?;
    finish(path, merged, files, None)
}

/// Loads a definition given as text (e.g. submitted through the API) as if it were the file
/// `name`: its `extends` chain is still read from disk relative to `name`. With `topology`,
/// the topology the definition names is not read; the given one is used instead.
pub fn load_text(
    text: &str,
    name: &Path,
    topology: Option<&Topology>,
) -> Result<Definition, Diagnostics> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            Location::whole_file(name),
            format!("definition larger than {MAX_FILE_BYTES} bytes"),
        )
        .into());
    }
    let mut read =
        |path: &Path| if path == name { yaml::parse(text, name) } else { read_node(path) };
    let (merged, files) = inherit::load_chain(name, &mut read)?;
    finish(name, merged, files, topology)
}

fn finish(
    path: &Path,
    mut merged: Node,
    files: Vec<PathBuf>,
    topology: Option<&Topology>,
) -> Result<Definition, Diagnostics> {
    if is_abstract(&merged) {
        return Ok(Definition::Abstract { file: path.to_path_buf() });
    }
    resolve_paths(&mut merged);
    let merged = defaults::apply(merged)?;
    let spec: PipelineSpec = de::from_node(&merged)?;
    let topology = match topology {
        Some(topology) => topology.clone(),
        None => load_topology(&spec, &merged)?,
    };
    let mut diagnostics = validate::pipeline(&spec, &topology, &merged);
    let holidays = validate::holidays(&spec, &merged, &mut diagnostics);
    let Some(plan) = expand::plan(&spec, &topology, holidays, &merged, &mut diagnostics) else {
        return Err(diagnostics);
    };
    validate::plan(&spec, &plan, &topology, &merged, &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(Definition::Pipeline(Box::new(Loaded { files, spec, topology, plan })))
}

/// Loads a topology file on its own and checks it.
pub fn load_topology_file(path: &Path) -> Result<Topology, Diagnostics> {
    let node = read_node(path)?;
    let topology: Topology = de::from_node(&node)?;
    let diagnostics = validate::topology(&topology, &node);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(topology)
}

/// Reads any YAML document (e.g. the policy file) into `T` with located errors.
pub fn load_document<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(T, Node), Diagnostics> {
    let node = read_node(path)?;
    let value = de::from_node(&node)?;
    Ok((value, node))
}

fn load_topology(spec: &PipelineSpec, merged: &Node) -> Result<Topology, Diagnostics> {
    let named_at = located(merged, &["topology"]);
    load_topology_file(Path::new(&spec.topology)).map_err(|mut diagnostics| {
        for diagnostic in &mut diagnostics.0 {
            if matches!(diagnostic.location, Location::File { .. }) {
                diagnostic.location = named_at.clone();
                diagnostic.message =
                    format!("topology `{}`: {}", spec.topology, diagnostic.message);
            }
        }
        diagnostics
    })
}

fn is_abstract(node: &Node) -> bool {
    node.get("abstract").is_some_and(|entry| matches!(entry.value.value, Value::Bool(true)))
}

/// Reads one definition file into a tree: YAML, or Jsonnet by its extension.
pub fn read_node(path: &Path) -> Result<Node, Diagnostic> {
    let whole = Location::whole_file(path);
    let metadata = std::fs::metadata(path)
        .map_err(|error| Diagnostic::error(whole.clone(), format!("cannot read: {error}")))?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(whole, format!("file larger than {MAX_FILE_BYTES} bytes")));
    }
    let extension = path.extension().and_then(|extension| extension.to_str()).unwrap_or("");
    if matches!(extension, "jsonnet" | "libsonnet") {
        return read_jsonnet(path);
    }
    let bytes = std::fs::read(path)
        .map_err(|error| Diagnostic::error(whole, format!("cannot read: {error}")))?;
    let text = utf8(bytes, path)?;
    yaml::parse(&text, path)
}

/// The text of a file, or an error at the line and column of its first byte that is not UTF-8.
fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let valid = &bytes[..error.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|&byte| byte == b'\n').map_or(0, |i| i + 1);
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
        let bad = &bytes[valid.len()..];
        let shown =
            &bad[..bad.len().min(error.utf8_error().error_len().unwrap_or(bad.len()).min(4))];
        Diagnostic::error(
            Location::Text { file: std::sync::Arc::from(path), line, column },
            format!("the file is not UTF-8 text: invalid byte sequence {shown:02x?}"),
        )
        .with_hint("save the file as UTF-8")
    })
}

fn read_jsonnet(path: &Path) -> Result<Node, Diagnostic> {
    let value = jsonnet::evaluate(path).map_err(|error| {
        let location = if error.line > 0 {
            Location::Text {
                file: std::sync::Arc::from(error.file.as_path()),
                line: error.line,
                column: error.column,
            }
        } else {
            Location::whole_file(&error.file)
        };
        Diagnostic::error(location, format!("Jsonnet: {}", error.message))
    })?;
    Ok(Node::from_json(&value, path))
}

/// Rewrites the path-valued fields to be relative to the working directory instead of to the
/// file that wrote them, so the merged document can be used from anywhere.
fn resolve_paths(merged: &mut Node) {
    fn resolve(node: &mut Node) {
        if let Value::String(text) = &node.value {
            let resolved = diagnostic::resolve_relative(node.location.file(), text);
            node.value = Value::String(resolved.display().to_string());
        }
    }
    if let Some(entry) = merged.get_mut("topology") {
        resolve(&mut entry.value);
    }
    if let Some(windows) = merged.get_mut("time_windows")
        && let Some(holidays) = windows.value.get_mut("holidays")
        && let Some(calendars) = holidays.value.get_mut("calendars")
        && let Value::Sequence(items) = &mut calendars.value.value
    {
        items.iter_mut().for_each(resolve);
    }
}

/// The location of the value at `path` (mapping keys and list indices) in `root`, or the
/// closest enclosing value that exists.
pub fn located(root: &Node, path: &[&str]) -> Location {
    let mut node = root;
    for step in path {
        let next = match &node.value {
            Value::Mapping(entries) => {
                entries.iter().find(|entry| entry.key == *step).map(|entry| &entry.value)
            }
            Value::Sequence(items) => step.parse::<usize>().ok().and_then(|index| items.get(index)),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => break,
        }
    }
    node.location.clone()
}
