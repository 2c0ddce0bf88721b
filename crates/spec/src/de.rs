//! Typing a [`Node`] tree: a serde `Deserializer` whose every error carries the location of the
//! value at fault.
//!
//! Unknown fields do not stop the deserialization: each one is recorded (with a "did you mean"
//! hint) and skipped, so a file with three misspelt keys reports all three. Other errors (a
//! wrong type, a missing field) stop at the first, located at the innermost value that caused it.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::diagnostic::{Diagnostic, Diagnostics, Location, echo};
use crate::node::{Entry, Node, Value};

/// Deserializes `node` into `T`, reporting every unknown field and the first other error.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Diagnostics> {
    let sink = RefCell::new(Vec::new());
    let result = T::deserialize(NodeDeserializer { node, sink: &sink });
    let mut diagnostics = Diagnostics(sink.into_inner());
    match result {
        Ok(value) if diagnostics.is_empty() => Ok(value),
        Ok(_) => Err(diagnostics),
        Err(error) => {
            diagnostics.push(error.into_diagnostic(&node.location));
            Err(diagnostics)
        }
    }
}

#[derive(Debug)]
pub struct Error {
    location: Option<Location>,
    message: String,
    hint: Option<String>,
}

impl Error {
    fn at(mut self, location: &Location) -> Error {
        if self.location.is_none() {
            self.location = Some(location.clone());
        }
        self
    }

    fn into_diagnostic(self, fallback: &Location) -> Diagnostic {
        let diagnostic =
            Diagnostic::error(self.location.unwrap_or_else(|| fallback.clone()), self.message);
        match self.hint {
            Some(hint) => diagnostic.with_hint(hint),
            None => diagnostic,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error { location: None, message: message.to_string(), hint: None }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        let mut error = Error::custom(format_args!("unknown value `{}`", echo(variant)));
        error.hint = Some(match closest(variant, expected) {
            Some(near) => format!("did you mean `{near}`? Expected one of {}", list(expected)),
            None => format!("expected one of {}", list(expected)),
        });
        error
    }

    fn missing_field(field: &'static str) -> Error {
        Error::custom(format_args!("missing field `{field}`"))
    }
}

fn list(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

/// Words longer than this get no "did you mean": every name Gantry suggests (fields, regions,
/// zones, alarms) is far shorter, a typo of one is at most a few characters longer, and the
/// edit distance costs the product of the lengths, so a 1 MiB key would take seconds per
/// candidate.
pub const MAX_SUGGESTION_CHARS: usize = 256;

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.len() > MAX_SUGGESTION_CHARS {
        return None;
    }
    if let Some(extended) =
        candidates.iter().find(|candidate| word.len() >= 3 && candidate.starts_with(word))
    {
        return Some(extended);
    }
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[derive(Clone, Copy)]
struct NodeDeserializer<'a> {
    node: &'a Node,
    sink: &'a RefCell<Vec<Diagnostic>>,
}

impl<'a> NodeDeserializer<'a> {
    fn wrong_type(&self, expected: &str) -> Error {
        let found = match &self.node.value {
            Value::String(text) => format!("the string `{}`", echo(text)),
            Value::Integer(number) => format!("the integer {number}"),
            Value::Float(number) => format!("the number {number}"),
            Value::Bool(flag) => format!("`{flag}`"),
            _ => self.node.kind().to_string(),
        };
        <Error as de::Error>::custom(format_args!("expected {expected}, found {found}"))
            .at(&self.node.location)
    }

    /// An integer in `low..=high`, with a message in the file's terms (not Rust's `u32`).
    fn whole_number<'de, V: Visitor<'de>>(
        &self,
        low: i64,
        high: i64,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let expected = if low == 0 {
            format!("a whole number from 0 to {high}")
        } else {
            format!("a whole number from {low} to {high}")
        };
        match self.node.value {
            Value::Integer(number) if (low..=high).contains(&number) => {
                self.located(visitor.visit_i64(number))
            }
            Value::Integer(number) => Err(<Error as de::Error>::custom(format_args!(
                "expected {expected}, found {number}"
            ))
            .at(&self.node.location)),
            _ => Err(self.wrong_type("a whole number")),
        }
    }

    fn located<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|error| error.at(&self.node.location))
    }

    fn child(&self, node: &'a Node) -> NodeDeserializer<'a> {
        NodeDeserializer { node, sink: self.sink }
    }
}

impl<'de, 'a> de::Deserializer<'de> for NodeDeserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Integer(number) => visitor.visit_i64(*number),
            Value::Float(number) => visitor.visit_f64(*number),
            Value::String(text) => visitor.visit_str(text),
            Value::Sequence(items) => {
                visitor.visit_seq(SequenceAccess { items: items.iter(), de: self })
            }
            Value::Mapping(entries) => visitor.visit_map(MappingAccess::new(entries, self)),
        };
        self.located(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Bool(flag) => self.located(visitor.visit_bool(flag)),
            _ => Err(self.wrong_type("`true` or `false`")),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Integer(number) => self.located(visitor.visit_i64(number)),
            _ => Err(self.wrong_type("an integer")),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Integer(number) => self.located(visitor.visit_i64(number)),
            Value::Float(number) => self.located(visitor.visit_f64(number)),
            _ => Err(self.wrong_type("a number")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::String(text) => visitor.visit_str(text),
            // `branch: 2024` means the string "2024"; a float's source text is not kept, so
            // floats are refused rather than silently re-spelt.
            Value::Integer(number) => visitor.visit_str(&number.to_string()),
            Value::Bool(flag) => visitor.visit_str(&flag.to_string()),
            _ => return Err(self.wrong_type("a string")),
        };
        self.located(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.wrong_type("null")),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Sequence(items) => {
                self.located(visitor.visit_seq(SequenceAccess { items: items.iter(), de: self }))
            }
            _ => Err(self.wrong_type("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Mapping(entries) => {
                self.located(visitor.visit_map(MappingAccess::new(entries, self)))
            }
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Value::Mapping(entries) = &self.node.value else {
            return Err(self.wrong_type("a mapping"));
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            if fields.contains(&entry.key.as_str()) {
                known.push(entry);
                continue;
            }
            let message = format!("unknown field `{}`", echo(&entry.key));
            let hint = match closest(&entry.key, fields) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("expected one of {}", list(fields)),
            };
            self.sink
                .borrow_mut()
                .push(Diagnostic::error(entry.key_location.clone(), message).with_hint(hint));
        }
        let access = MappingAccess { entries: known.into_iter(), value: None, de: self };
        self.located(visitor.visit_map(access))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::String(text) => {
                self.located(visitor.visit_enum(text.as_str().into_deserializer()))
            }
            Value::Mapping(entries) if entries.len() == 1 => {
                self.located(visitor.visit_enum(VariantAccess { entry: &entries[0], de: self }))
            }
            _ => Err(self.wrong_type("a name, or a mapping with a single key naming the kind")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit_struct tuple tuple_struct identifier
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.whole_number(i32::MIN.into(), i32::MAX.into(), visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.whole_number(0, u8::MAX.into(), visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.whole_number(0, u16::MAX.into(), visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.whole_number(0, u32::MAX.into(), visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.whole_number(0, i64::MAX, visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }
}

struct SequenceAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    de: NodeDeserializer<'a>,
}

impl<'de, 'a> de::SeqAccess<'de> for SequenceAccess<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => {
                let child = self.de.child(node);
                child.located(seed.deserialize(child)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MappingAccess<'a, I> {
    entries: I,
    value: Option<&'a Node>,
    de: NodeDeserializer<'a>,
}

impl<'a> MappingAccess<'a, std::slice::Iter<'a, Entry>> {
    fn new(entries: &'a [Entry], de: NodeDeserializer<'a>) -> Self {
        MappingAccess { entries: entries.iter(), value: None, de }
    }
}

impl<'de, 'a, I: Iterator<Item = &'a Entry>> de::MapAccess<'de> for MappingAccess<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        self.value = Some(&entry.value);
        let key: de::value::StrDeserializer<'_, Error> = entry.key.as_str().into_deserializer();
        seed.deserialize(key).map(Some).map_err(|error| error.at(&entry.key_location))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self.value.take().expect("serde asks for a value only after its key");
        let child = self.de.child(node);
        child.located(seed.deserialize(child))
    }
}

struct VariantAccess<'a> {
    entry: &'a Entry,
    de: NodeDeserializer<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for VariantAccess<'a> {
    type Error = Error;
    type Variant = NodeDeserializer<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let key: de::value::StrDeserializer<'_, Error> =
            self.entry.key.as_str().into_deserializer();
        let variant = seed.deserialize(key).map_err(|error| error.at(&self.entry.key_location))?;
        Ok((variant, self.de.child(&self.entry.value)))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for NodeDeserializer<'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.wrong_type("no value for this kind")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        self.located(seed.deserialize(self))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
