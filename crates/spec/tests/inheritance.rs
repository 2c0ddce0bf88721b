//! A partial override of any nested map inherits every field it does not name, over every field
//! of the model.
//!
//! `inheritance/full.yaml` sets every field of the model to a value other than its default (a
//! check against the JSON Schema keeps it so as fields are added); `inheritance/alternative.yaml`
//! has the same shape with every value changed. For each field, and for random sets of fields
//! split over two levels of `extends`, a child overrides just those fields with the alternative
//! values; the loaded pipeline must equal `full.yaml`'s with exactly those fields changed. Stage
//! `deployment` and wave `bake` overrides inherit the pipeline's `deployment` and `bake.wave`
//! the same way, and partial maps inherit the model's own defaults.

use std::collections::BTreeSet;
use std::path::Path;

use gantry_model::PipelineSpec;
use serde_json::{Map, Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inheritance");

/// A leaf of a document: the keys leading to a value that is not a mapping. Lists are leaves:
/// a child replaces a list whole (or edits it with `+`/`-`).
type FieldPath = Vec<String>;

fn read_yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let node = gantry_spec::load_document::<Value>(&Path::new(FIXTURES).join(name));
    let _ = text;
    node.map(|(value, _)| value).unwrap_or_else(|errors| panic!("{name}: {errors}"))
}

/// Loads `files` (name, JSON document) written beside the fixtures and returns the spec of
/// the last one as JSON.
fn load(files: &[(&str, Value)]) -> Result<Value, String> {
    let directory = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), directory.path().join(entry.file_name())).unwrap();
    }
    for (name, document) in files {
        std::fs::write(directory.path().join(name), document.to_string()).unwrap();
    }
    let main = directory.path().join(files.last().unwrap().0);
    let loaded = gantry_spec::load(&main).map_err(|errors| {
        errors.to_string().replace(&directory.path().display().to_string(), "$DIR")
    })?;
    let mut spec = serde_json::to_value(&loaded.spec).unwrap();
    normalise_paths(&mut spec, directory.path());
    Ok(spec)
}

/// Paths the loader resolved are made relative again, so two directories compare equal.
fn normalise_paths(spec: &mut Value, directory: &Path) {
    let prefix = format!("{}/", directory.display());
    fn strip(value: &mut Value, prefix: &str) {
        match value {
            Value::String(text) => *text = text.trim_start_matches(prefix).to_string(),
            Value::Array(items) => items.iter_mut().for_each(|item| strip(item, prefix)),
            Value::Object(fields) => fields.values_mut().for_each(|field| strip(field, prefix)),
            _ => {}
        }
    }
    strip(spec, &prefix);
}

fn leaves(value: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, field) in fields {
                path.push(key.clone());
                leaves(field, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn get<'v>(value: &'v Value, path: &[String]) -> &'v Value {
    path.iter().fold(value, |value, key| &value[key.as_str()])
}

fn set(value: &mut Value, path: &[String], leaf: Value) {
    let mut value = value;
    for key in &path[..path.len() - 1] {
        value = value.as_object_mut().unwrap().entry(key.clone()).or_insert_with(|| json!({}));
    }
    value.as_object_mut().unwrap().insert(path.last().unwrap().clone(), leaf);
}

/// A child of `parent` that writes only `fields`, with the alternative values.
fn child(parent: &str, alternative: &Value, fields: &[FieldPath]) -> Value {
    let mut document = json!({"extends": parent});
    for field in fields {
        set(&mut document, field, get(alternative, field).clone());
    }
    document
}

struct Fixtures {
    full: Value,
    alternative: Value,
    /// `full.yaml` as loaded.
    expected_base: Value,
    /// `alternative.yaml` as loaded.
    alternative_loaded: Value,
    fields: Vec<FieldPath>,
}

fn fixtures() -> Fixtures {
    let full = read_yaml("full.yaml");
    let alternative = read_yaml("alternative.yaml");
    let mut fields = Vec::new();
    leaves(&full, &mut Vec::new(), &mut fields);
    let expected_base = load(&[("base.yaml", full.clone())]).unwrap();
    let alternative_loaded = load(&[("base.yaml", alternative.clone())]).unwrap();
    Fixtures { full, alternative, expected_base, alternative_loaded, fields }
}

impl Fixtures {
    /// `full.yaml` as loaded, with `fields` taken from the alternative.
    fn expected(&self, fields: &[FieldPath]) -> Value {
        let mut expected = self.expected_base.clone();
        for field in fields {
            set(&mut expected, field, get(&self.alternative_loaded, field).clone());
        }
        expected
    }
}

/// Every field the model's JSON Schema names (map keys as `*`, list items not entered), and
/// every one a document sets.
fn schema_fields(
    schema: &Value,
    root: &Value,
    path: String,
    document: Option<&Value>,
    out: &mut BTreeSet<String>,
    depth: usize,
) {
    assert!(depth < 32, "the schema nests deeper than the model does");
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/$defs/");
            &root["$defs"][name]
        }
        None => schema,
    };
    for alternative in ["anyOf", "oneOf", "allOf"] {
        for option in schema.get(alternative).and_then(Value::as_array).into_iter().flatten() {
            schema_fields(option, root, path.clone(), document, out, depth + 1);
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, property) in properties.into_iter().flatten() {
        let field = format!("{path}.{key}");
        let value = match document {
            Some(document) => match document.get(key) {
                Some(value) => Some(value),
                None => continue,
            },
            None => None,
        };
        out.insert(field.clone());
        schema_fields(property, root, field, value, out, depth + 1);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|values| values.is_object()) {
        let field = format!("{path}.*");
        match document.and_then(Value::as_object) {
            Some(entries) => {
                for (key, value) in entries {
                    if !properties.is_some_and(|properties| properties.contains_key(key)) {
                        schema_fields(values, root, field.clone(), Some(value), out, depth + 1);
                    }
                }
            }
            None if document.is_none() => schema_fields(values, root, field, None, out, depth + 1),
            None => {}
        }
    }
}

#[test]
fn the_full_fixture_sets_every_field_of_the_model() {
    let schema = serde_json::to_value(schemars::schema_for!(PipelineSpec)).unwrap();
    let mut named = BTreeSet::new();
    schema_fields(&schema, &schema, String::new(), None, &mut named, 0);
    let fixtures = fixtures();
    for document in [&fixtures.full, &fixtures.alternative] {
        let mut set = BTreeSet::new();
        schema_fields(&schema, &schema, String::new(), Some(document), &mut set, 0);
        // `extends` and `abstract` are how inheritance is written, not inherited values.
        let missing: Vec<&String> = named
            .difference(&set)
            .filter(|field| !matches!(field.as_str(), ".extends" | ".abstract"))
            .collect();
        assert!(missing.is_empty(), "the fixtures do not set {missing:?}");
    }
    // Every field of the alternative differs from the full fixture's.
    let same: Vec<&FieldPath> = fixtures
        .fields
        .iter()
        .filter(|field| {
            get(&fixtures.expected_base, field) == get(&fixtures.alternative_loaded, field)
        })
        .collect();
    assert!(same.is_empty(), "the alternative repeats {same:?}");
}

#[test]
fn overriding_any_one_field_changes_only_that_field() {
    let fixtures = fixtures();
    let mut failures = Vec::new();
    for field in &fixtures.fields {
        let document = child("full.yaml", &fixtures.alternative, std::slice::from_ref(field));
        match load(&[("child.yaml", document)]) {
            Ok(spec) if spec == fixtures.expected(std::slice::from_ref(field)) => {}
            Ok(_) => failures.push(format!("{}: other fields changed", field.join("."))),
            Err(errors) => failures.push(format!("{}: {errors}", field.join("."))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

    /// Random sets of fields, some overridden in a middle file and some in the child: each
    /// level's override of a nested map keeps everything it does not name.
    #[test]
    fn overriding_fields_at_two_levels_changes_only_those_fields(
        picks in proptest::collection::vec((proptest::bits::u32::ANY, proptest::bool::ANY), 1..12)
    ) {
        let fixtures = fixtures();
        let pick = |index: u32| fixtures.fields[index as usize % fixtures.fields.len()].clone();
        let middle: Vec<FieldPath> = picks.iter().filter(|(_, here)| *here).map(|(i, _)| pick(*i)).collect();
        let own: Vec<FieldPath> = picks.iter().filter(|(_, here)| !*here).map(|(i, _)| pick(*i)).collect();
        let spec = load(&[
            ("middle.yaml", child("full.yaml", &fixtures.alternative, &middle)),
            ("child.yaml", child("middle.yaml", &fixtures.alternative, &own)),
        ]);
        let all: Vec<FieldPath> = middle.iter().chain(&own).cloned().collect();
        proptest::prop_assert_eq!(spec, Ok(fixtures.expected(&all)));
    }
}

/// Removes `path` from a document.
fn without(mut document: Value, path: &[&str]) -> Value {
    let mut value = &mut document;
    for key in &path[..path.len() - 1] {
        value = &mut value[*key];
    }
    value.as_object_mut().unwrap().remove(*path.last().unwrap());
    document
}

#[test]
fn a_stage_deployment_inherits_every_field_of_the_pipeline_deployment_it_does_not_name() {
    let fixtures = fixtures();
    let parent = without(fixtures.full.clone(), &["preprod", "gamma", "deployment"]);
    let deployment_fields: Vec<String> =
        fixtures.full["deployment"].as_object().unwrap().keys().cloned().collect();
    for field in deployment_fields {
        let value = fixtures.alternative["deployment"][&field].clone();
        let document = json!({"extends": "parent.yaml", "preprod": {"gamma": {"deployment": {field.clone(): value}}}});
        let spec = load(&[("parent.yaml", parent.clone()), ("child.yaml", document)]).unwrap();
        let mut expected = fixtures.expected_base["deployment"].clone();
        expected[&field] = fixtures.alternative_loaded["deployment"][&field].clone();
        assert_eq!(spec["preprod"]["gamma"]["deployment"], expected, "overriding `{field}`");
    }
}

#[test]
fn a_wave_bake_inherits_every_field_of_the_pipeline_wave_bake_it_does_not_name() {
    let fixtures = fixtures();
    let mut fields = Vec::new();
    leaves(&fixtures.full["bake"]["wave"], &mut Vec::new(), &mut fields);
    for field in fields {
        let mut waves = fixtures.full["waves"].clone();
        let mut bake = json!({});
        set(&mut bake, &field, get(&fixtures.alternative["bake"]["wave"], &field).clone());
        waves[1]["bake"] = bake;
        let document = json!({"extends": "full.yaml", "waves": waves});
        let spec = load(&[("child.yaml", document)]).unwrap();
        let mut expected = fixtures.expected_base["bake"]["wave"].clone();
        set(
            &mut expected,
            &field,
            get(&fixtures.alternative_loaded["bake"]["wave"], &field).clone(),
        );
        assert_eq!(spec["waves"][1]["bake"], expected, "overriding `{}`", field.join("."));
    }
}

/// A pipeline that writes nothing of the nested maps with defaults.
fn bare() -> Value {
    let fixtures = fixtures();
    let mut bare = Map::new();
    for key in ["topology", "pipeline", "team", "service", "kind", "sources", "build", "waves"] {
        bare.insert(key.to_string(), fixtures.full[key].clone());
    }
    bare.insert("waves".to_string(), json!([{"rest": true}]));
    Value::Object(bare)
}

#[test]
fn a_partial_map_inherits_the_model_defaults_it_does_not_name() {
    let fixtures = fixtures();
    let defaults = load(&[("bare.yaml", bare())]).unwrap();
    for section in ["deployment", "bake", "urgent"] {
        let mut fields = Vec::new();
        leaves(&fixtures.full[section], &mut vec![section.to_string()], &mut fields);
        for field in fields {
            let mut document = bare();
            set(&mut document, &field, get(&fixtures.alternative, &field).clone());
            let spec = load(&[("pipeline.yaml", document)]).unwrap();
            let mut expected = defaults.clone();
            set(&mut expected, &field, get(&fixtures.alternative_loaded, &field).clone());
            assert_eq!(spec[section], expected[section], "overriding `{}`", field.join("."));
        }
    }
}
