//! The document tree every definition is read into before it is typed: YAML and Jsonnet both
//! become [`Node`]s, inheritance merges `Node`s, and `de` deserializes them into the model.
//! Each node remembers where it was written, so an error in a merged document still points at
//! the file and line that wrote the offending value.

use crate::diagnostic::Location;

#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub location: Location,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    /// A string, or a plain scalar that is not a null, boolean or number.
    String(String),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

/// One key and value of a mapping. Keys are always strings in Gantry's documents.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_location: Location,
    pub value: Node,
}

impl Node {
    pub fn new(value: Value, location: Location) -> Node {
        Node { value, location }
    }

    /// What kind of value this is, for messages: "a string", "a list", ...
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }

    pub fn as_mapping(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The entry for `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_mapping()?.iter().find(|entry| entry.key == key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        match &mut self.value {
            Value::Mapping(entries) => entries.iter_mut().find(|entry| entry.key == key),
            _ => None,
        }
    }

    /// Removes `key` from a mapping and returns its entry.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        match &mut self.value {
            Value::Mapping(entries) => {
                let index = entries.iter().position(|entry| entry.key == key)?;
                Some(entries.remove(index))
            }
            _ => None,
        }
    }

    /// Equality of content, ignoring where things were written.
    pub fn same_content(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Integer(a), Value::Float(b)) | (Value::Float(b), Value::Integer(a)) => {
                *a as f64 == *b
            }
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Sequence(a), Value::Sequence(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_content(y))
            }
            (Value::Mapping(a), Value::Mapping(b)) => {
                a.len() == b.len()
                    && a.iter().all(|entry| {
                        b.iter().any(|other| {
                            other.key == entry.key && other.value.same_content(&entry.value)
                        })
                    })
            }
            _ => false,
        }
    }

    /// Converts JSON (from a Jsonnet file) into a tree whose locations are field paths.
    pub fn from_json(value: &serde_json::Value, file: &std::path::Path) -> Node {
        fn convert(
            value: &serde_json::Value,
            file: &std::sync::Arc<std::path::Path>,
            path: &str,
        ) -> Node {
            let location = Location::Field {
                file: file.clone(),
                path: if path.is_empty() { "(root)".into() } else { path.to_string() },
            };
            let value = match value {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Bool(*b),
                serde_json::Value::Number(number) => match number.as_i64() {
                    Some(integer) => Value::Integer(integer),
                    None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(text) => Value::String(text.clone()),
                serde_json::Value::Array(items) => Value::Sequence(
                    items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| convert(item, file, &format!("{path}[{index}]")))
                        .collect(),
                ),
                serde_json::Value::Object(fields) => Value::Mapping(
                    fields
                        .iter()
                        .map(|(key, item)| {
                            let child =
                                if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                            Entry {
                                key: key.clone(),
                                key_location: Location::Field {
                                    file: file.clone(),
                                    path: child.clone(),
                                },
                                value: convert(item, file, &child),
                            }
                        })
                        .collect(),
                ),
            };
            Node { value, location }
        }
        convert(value, &std::sync::Arc::from(file), "")
    }
}
