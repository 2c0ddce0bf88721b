//! YAML files into [`Node`] trees, with the line and column of every value.
//!
//! Plain scalars are typed by the YAML 1.2 core schema (`null`, `~`, `true`, `false`, integers,
//! floats); quoted scalars are always strings. Anchors and aliases work; duplicate keys, non-string
//! keys and multi-document files are refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::{Diagnostic, Location};
use crate::node::{Entry, Node, Value};

/// Deeper nesting than this is refused: no pipeline needs it, and it bounds recursion.
const MAX_DEPTH: usize = 64;
/// More nodes than this (aliases expanded) is refused, so an alias bomb cannot exhaust memory.
const MAX_NODES: usize = 1_000_000;

pub fn parse(text: &str, file: &Path) -> Result<Node, Diagnostic> {
    let file: Arc<Path> = Arc::from(file);
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        file: file.clone(),
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(reader.error(
                        span,
                        "a definition file holds one YAML document; found a second `---`",
                    ));
                }
                root = Some(reader.node(0)?);
            }
            Event::StreamEnd => break,
            _ => return Err(reader.error(span, "unexpected YAML content")),
        }
    }
    match root {
        Some(root) if !matches!(root.value, Value::Null) => Ok(root),
        // Every document Gantry reads (a pipeline, a topology, a policy) is a mapping.
        _ => Err(Diagnostic::error(
            Location::whole_file(&file),
            "the file is empty (or holds only comments or `null`); expected a mapping of fields",
        )
        .with_hint("a pipeline definition starts with fields such as `pipeline:` and `extends:`")),
    }
}

struct Reader<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    file: Arc<Path>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'input> Reader<'input> {
    fn next(&mut self) -> Result<(Event<'input>, Span), Diagnostic> {
        match self.parser.next() {
            Some(Ok(pair)) => Ok(pair),
            Some(Err(error)) => {
                let marker = error.marker();
                Err(Diagnostic::error(
                    Location::Text {
                        file: self.file.clone(),
                        line: marker.line(),
                        column: marker.col() + 1,
                    },
                    format!("invalid YAML: {}", error.info()),
                ))
            }
            None => Err(Diagnostic::error(
                Location::File { file: self.file.clone() },
                "unexpected end of YAML",
            )),
        }
    }

    fn location(&self, span: Span) -> Location {
        Location::Text {
            file: self.file.clone(),
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }

    fn error(&self, span: Span, message: &str) -> Diagnostic {
        Diagnostic::error(self.location(span), message)
    }

    /// Reads the node that starts with the next event.
    fn node(&mut self, depth: usize) -> Result<Node, Diagnostic> {
        let (event, span) = self.next()?;
        self.node_from(event, span, depth)
    }

    fn count(&mut self, span: Span, node: &Node) -> Result<(), Diagnostic> {
        self.nodes += size(node);
        if self.nodes > MAX_NODES {
            return Err(self
                .error(span, "document too large (more than a million values, aliases expanded)"));
        }
        Ok(())
    }

    fn node_from(
        &mut self,
        event: Event<'input>,
        span: Span,
        depth: usize,
    ) -> Result<Node, Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(self.error(span, "nesting deeper than 64 levels"));
        }
        let location = self.location(span);
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| self.error(span, "alias to an unknown anchor"))?;
                self.count(span, &node)?;
                (Node::new(node.value, location), 0)
            }
            Event::Scalar(text, style, anchor, _tag) => {
                self.nodes += 1;
                let value = if style == ScalarStyle::Plain {
                    plain_scalar(&text)
                } else {
                    Value::String(text.into_owned())
                };
                (Node::new(value, location), anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node_from(event, span, depth + 1)?);
                }
                self.nodes += 1;
                (Node::new(Value::Sequence(items), location), anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<Entry> = Vec::new();
                loop {
                    let (event, key_span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node_from(event, key_span, depth + 1)?;
                    let key_text = match key.value {
                        Value::String(text) => text,
                        Value::Integer(number) => number.to_string(),
                        Value::Bool(flag) => flag.to_string(),
                        _ => return Err(self.error(key_span, "mapping keys must be plain strings")),
                    };
                    if let Some(previous) = entries.iter().find(|entry| entry.key == key_text) {
                        return Err(self.error(
                            key_span,
                            &format!(
                                "duplicate key `{key_text}` (first written at {})",
                                previous.key_location
                            ),
                        ));
                    }
                    let value = self.node(depth + 1)?;
                    entries.push(Entry { key: key_text, key_location: key.location, value });
                }
                self.nodes += 1;
                (Node::new(Value::Mapping(entries), location), anchor)
            }
            _ => return Err(self.error(span, "unexpected YAML content")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Sequence(items) => items.iter().map(size).sum(),
        Value::Mapping(entries) => entries.iter().map(|entry| size(&entry.value)).sum(),
        _ => 0,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.');
    if looks_numeric {
        if let Ok(integer) = text.parse::<i64>() {
            return Value::Integer(integer);
        }
        if let Some(hex) = text.strip_prefix("0x")
            && let Ok(integer) = i64::from_str_radix(hex, 16)
        {
            return Value::Integer(integer);
        }
        if let Some(octal) = text.strip_prefix("0o")
            && let Ok(integer) = i64::from_str_radix(octal, 8)
        {
            return Value::Integer(integer);
        }
        let float_shaped = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        if float_shaped && let Ok(float) = text.parse::<f64>() {
            return Value::Float(float);
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        let got = match parse(text, Path::new("t.yaml")) {
            Ok(node) => render(&node),
            Err(error) => format!("error {error}"),
        };
        assert_eq!(got, expected, "parsing {text:?}");
    }

    fn render(node: &Node) -> String {
        let Location::Text { line, column, .. } = node.location else { return "?".into() };
        let at = format!("@{line}:{column}");
        match &node.value {
            Value::Null => format!("null{at}"),
            Value::Bool(b) => format!("{b}{at}"),
            Value::Integer(i) => format!("{i}{at}"),
            Value::Float(f) => format!("{f:?}{at}"),
            Value::String(s) => format!("{s:?}{at}"),
            Value::Sequence(items) => {
                format!("[{}]{at}", items.iter().map(render).collect::<Vec<_>>().join(", "))
            }
            Value::Mapping(entries) => format!(
                "{{{}}}{at}",
                entries
                    .iter()
                    .map(|e| format!("{}: {}", e.key, render(&e.value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        check(
            "a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: 15:00\ng: 2026-12-25\nh: 1h\n",
            r#"{a: 1@1:4, b: "1"@2:4, c: true@3:4, d: null@4:4, e: 1.5@5:4, f: "15:00"@6:4, g: "2026-12-25"@7:4, h: "1h"@8:4}@1:1"#,
        );
    }

    #[test]
    fn sequences_and_aliases() {
        check("x: &a [1, 2]\ny: *a\n", "{x: [1@1:8, 2@1:11]@1:4, y: [1@1:8, 2@1:11]@2:4}@1:1");
    }

    #[test]
    fn refuses_what_it_cannot_hold() {
        check(
            "a: 1\na: 2\n",
            "error t.yaml:2:1: error: duplicate key `a` (first written at t.yaml:1:1)",
        );
        check(
            "a: [1\n",
            "error t.yaml:2:1: error: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
        );
        check(
            "a: 1\n---\nb: 2\n",
            "error t.yaml:2:1: error: a definition file holds one YAML document; found a second `---`",
        );
        check("? [1]\n: 2\n", "error t.yaml:1:3: error: mapping keys must be plain strings");
        check(
            "# nothing yet\n",
            "error t.yaml: error: the file is empty (or holds only comments or `null`); expected a mapping of fields\n  hint: a pipeline definition starts with fields such as `pipeline:` and `extends:`",
        );
    }
}
