//! Inheritance: a definition `extends` a parent, which may extend its own parent, as deep as
//! needed (pipeline → team defaults → organisation defaults).
//!
//! The merge rules, applied from the farthest ancestor down to the file itself:
//! - **Mappings merge** key by key, recursively; the child's value wins for a key both have.
//! - **Scalars and lists are replaced** whole by the child's value.
//! - **`key+: [...]`** appends the child's items to the inherited list `key`.
//! - **`key-: [...]`** removes the listed items from the inherited list `key`; each listed item
//!   must be there, so a typo is an error rather than a silent no-op.
//! - **`key: null`** removes the inherited `key`, whatever its type (e.g. `zeta: null` drops an
//!   inherited zeta stage; the field then takes its default). The `null` stays in the merged
//!   tree as a tombstone until every parent has been applied — the model's defaults and, for a
//!   stage's `deployment` or a wave's `bake`, the pipeline's own (see `defaults`) — so it
//!   removes theirs too; [`strip_tombstones`] then drops it.
//!
//! `abstract: true` marks a file of defaults and is the one key that is not inherited.
//! `extends` paths are relative to the file that writes them. A cycle, a missing parent or a
//! chain deeper than [`MAX_DEPTH`] is an error that names the files involved.

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Location, resolve_relative};
use crate::node::{Entry, Node, Value};

/// The longest `extends` chain accepted. Real hierarchies are three or four deep; the limit
/// turns a runaway chain into an error.
pub const MAX_DEPTH: usize = 16;

/// Reads `path` and its ancestors and merges them. Returns the merged tree and the chain of
/// files, the file itself first.
pub fn load_chain(
    path: &Path,
    read: &mut dyn FnMut(&Path) -> Result<Node, Diagnostic>,
) -> Result<(Node, Vec<PathBuf>), Diagnostic> {
    let mut chain: Vec<(PathBuf, Node)> = Vec::new();
    let mut next = Some((path.to_path_buf(), None::<Location>));
    while let Some((file, named_at)) = next.take() {
        if let Some(start) = chain.iter().position(|(seen, _)| *seen == file) {
            let cycle: Vec<String> = chain[start..]
                .iter()
                .map(|(seen, _)| seen.display().to_string())
                .chain([file.display().to_string()])
                .collect();
            let location = named_at.unwrap_or_else(|| Location::whole_file(&file));
            return Err(Diagnostic::error(
                location,
                format!("inheritance cycle: {}", cycle.join(" → ")),
            )
            .with_hint("remove one `extends` so the chain ends at a file without a parent"));
        }
        if chain.len() >= MAX_DEPTH {
            let location = named_at.unwrap_or_else(|| Location::whole_file(&file));
            return Err(Diagnostic::error(
                location,
                format!("`extends` chain deeper than {MAX_DEPTH} files"),
            ));
        }
        let mut node = match read(&file) {
            Ok(node) => node,
            Err(error) => {
                return Err(match named_at {
                    Some(location) => Diagnostic::error(
                        location,
                        format!("cannot load the parent `{}`: {}", file.display(), error.message),
                    )
                    .with_hint("`extends` is a path relative to the file that writes it"),
                    None => error,
                });
            }
        };
        if !chain.is_empty() {
            // `abstract` describes the file that says it; it is not inherited.
            node.remove("abstract");
        }
        if let Some(entry) = node.remove("extends") {
            match entry.value.as_str() {
                Some(parent) => {
                    next =
                        Some((resolve_relative(&file, parent), Some(entry.value.location.clone())))
                }
                None if matches!(entry.value.value, Value::Null) => {}
                None => {
                    return Err(Diagnostic::error(
                        entry.value.location.clone(),
                        format!("`extends` must be a path, found {}", entry.value.kind()),
                    ));
                }
            }
        }
        chain.push((file, node));
    }
    let files = chain.iter().map(|(file, _)| file.clone()).collect();
    let mut merged: Option<Node> = None;
    for (_, node) in chain.into_iter().rev() {
        merged = Some(match merged {
            None => apply_operators(node)?,
            Some(parent) => merge(parent, node)?,
        });
    }
    Ok((merged.expect("the chain holds at least the file itself"), files))
}

/// Merges `child` onto `parent` by the rules in the module documentation.
pub fn merge(parent: Node, child: Node) -> Result<Node, Diagnostic> {
    let (mut entries, child_entries) = match (parent.value, child.value) {
        (Value::Mapping(entries), Value::Mapping(child_entries)) => (entries, child_entries),
        (_, value) => return apply_operators(Node { value, location: child.location }),
    };
    for entry in &child_entries {
        if let Some(base) = operator_base(&entry.key)
            && child_entries.iter().any(|other| other.key == base)
        {
            return Err(Diagnostic::error(
                entry.key_location.clone(),
                format!("`{}` and `{base}` in the same mapping", entry.key),
            )
            .with_hint(format!(
                "write either `{base}` to replace the inherited list or `{}` to edit it",
                entry.key
            )));
        }
    }
    for entry in child_entries {
        let key = entry.key.clone();
        let (base, operator) = split_operator(&key);
        let existing = entries.iter().position(|candidate| candidate.key == base);
        match operator {
            Some(operator) => {
                let inherited = existing.map(|index| entries.remove(index));
                let edited = edit_list(inherited, entry, base, operator)?;
                entries.push(edited);
            }
            None if matches!(entry.value.value, Value::Null) => {
                // A tombstone: it removes the inherited value here and in parents applied later.
                match existing {
                    Some(index) => entries[index] = entry,
                    None => entries.push(entry),
                }
            }
            None => match existing {
                Some(index) => {
                    let inherited = entries.remove(index).value;
                    let merged = merge(inherited, entry.value)?;
                    entries.insert(
                        index,
                        Entry { key: entry.key, key_location: entry.key_location, value: merged },
                    );
                }
                None => entries.push(Entry { value: apply_operators(entry.value)?, ..entry }),
            },
        }
    }
    Ok(Node { value: Value::Mapping(entries), location: child.location })
}

/// Drops the `key: null` tombstones left by [`merge`] once every parent has been applied, so
/// the fields they name take their defaults.
pub fn strip_tombstones(node: &mut Node) {
    match &mut node.value {
        Value::Mapping(entries) => {
            entries.retain(|entry| !matches!(entry.value.value, Value::Null));
            entries.iter_mut().for_each(|entry| strip_tombstones(&mut entry.value));
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_tombstones),
        _ => {}
    }
}

/// Resolves `key+` and `key-` in a tree that has no parent to edit: both act on an empty list.
fn apply_operators(node: Node) -> Result<Node, Diagnostic> {
    match node.value {
        Value::Mapping(_) => {
            let empty = Node { value: Value::Mapping(Vec::new()), location: node.location.clone() };
            merge(empty, node)
        }
        _ => Ok(node),
    }
}

enum Operator {
    Append,
    Remove,
}

fn operator_base(key: &str) -> Option<&str> {
    match split_operator(key) {
        (base, Some(_)) => Some(base),
        (_, None) => None,
    }
}

fn split_operator(key: &str) -> (&str, Option<Operator>) {
    if let Some(base) = key.strip_suffix('+') {
        (base, Some(Operator::Append))
    } else if let Some(base) = key.strip_suffix('-') {
        (base, Some(Operator::Remove))
    } else {
        (key, None)
    }
}

fn edit_list(
    inherited: Option<Entry>,
    edit: Entry,
    base: &str,
    operator: Operator,
) -> Result<Entry, Diagnostic> {
    let Value::Sequence(items) = edit.value.value else {
        return Err(Diagnostic::error(
            edit.value.location.clone(),
            format!("`{}` takes a list, found {}", edit.key, edit.value.kind()),
        ));
    };
    // A list removed with `null` by a parent is an empty list to edit.
    let inherited = inherited.filter(|entry| !matches!(entry.value.value, Value::Null));
    let (mut list, list_location, key_location) = match inherited {
        Some(Entry {
            value: Node { value: Value::Sequence(list), location },
            key_location,
            ..
        }) => (list, location, key_location),
        Some(other) => {
            return Err(Diagnostic::error(
                edit.key_location.clone(),
                format!(
                    "`{}` edits a list, but the inherited `{base}` is {}",
                    edit.key,
                    other.value.kind()
                ),
            )
            .with_hint(format!("the inherited value was written at {}", other.value.location)));
        }
        None => (Vec::new(), edit.value.location.clone(), edit.key_location.clone()),
    };
    match operator {
        Operator::Append => list.extend(items),
        Operator::Remove => {
            for item in items {
                match list.iter().position(|candidate| candidate.same_content(&item)) {
                    Some(index) => {
                        list.remove(index);
                    }
                    None => {
                        return Err(Diagnostic::error(
                            item.location.clone(),
                            format!(
                                "cannot remove {} from `{base}`: the inherited list does not contain it",
                                describe(&item)
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(Entry {
        key: base.to_string(),
        key_location,
        value: Node { value: Value::Sequence(list), location: list_location },
    })
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::String(text) => format!("`{text}`"),
        Value::Integer(number) => number.to_string(),
        _ => node.kind().to_string(),
    }
}
