//! The model's defaults as the root of every inheritance chain, and the pipeline's own settings
//! as the parent of a stage's or a wave's overrides.
//!
//! A partial override of a nested map inherits every field it does not name, whatever the map:
//! - The merged definition is merged (by [`inherit::merge`]'s rules) onto the model's defaults,
//!   so `bake: {one_box: {data_points: ...}}` keeps the default one-box duration instead of
//!   the zero an empty `Bake` would have.
//! - A pre-production stage's `deployment` is merged onto the pipeline's `deployment`, and a
//!   wave's `bake` onto the pipeline's `bake.wave`: `deployment: {batch_size: ...}` under one
//!   stage changes that field only, and keeps the pipeline's `hook_timeout`, `one_box_percent`
//!   and the rest.
//!
//! Values inherited this way keep the location where they were written (a default's location
//! is the field path under `(model defaults)`), so an error still points at its source.

use std::path::Path;

use gantry_model::pipeline::{
    Alarms, BakePolicy, CodeReview, DeploymentStrategy, Limits, TimeWindows, UrgentPolicy,
};

use crate::diagnostic::Diagnostic;
use crate::inherit;
use crate::node::{Node, Value};

/// The name defaults are located under in messages.
pub const DEFAULTS_FILE: &str = "(model defaults)";

/// The model's defaults for every field that has one and holds a mapping.
pub fn model_defaults() -> Node {
    let value = serde_json::json!({
        "code_review": CodeReview::default(),
        "deployment": DeploymentStrategy::default(),
        "bake": BakePolicy::default(),
        "alarms": Alarms::default(),
        "time_windows": TimeWindows::default(),
        "limits": Limits::default(),
        "urgent": UrgentPolicy::default(),
    });
    Node::from_json(&value, Path::new(DEFAULTS_FILE))
}

/// Applies the model's defaults and the stage and wave overrides' parents to a merged
/// definition, as the module documentation describes.
pub fn apply(merged: Node) -> Result<Node, Diagnostic> {
    if !matches!(merged.value, Value::Mapping(_)) {
        let mut merged = merged;
        inherit::strip_tombstones(&mut merged);
        return Ok(merged);
    }
    let mut merged = inherit::merge(model_defaults(), merged)?;
    let deployment = merged.get("deployment").map(|entry| entry.value.clone());
    if let (Some(deployment), Some(preprod)) = (deployment, merged.get_mut("preprod"))
        && let Value::Mapping(stages) = &mut preprod.value.value
    {
        for stage in stages {
            inherit_from(&mut stage.value, "deployment", &deployment)?;
        }
    }
    let wave_bake =
        merged.get("bake").and_then(|bake| bake.value.get("wave")).map(|entry| entry.value.clone());
    if let (Some(wave_bake), Some(waves)) = (wave_bake, merged.get_mut("waves"))
        && let Value::Sequence(waves) = &mut waves.value.value
    {
        for wave in waves {
            inherit_from(wave, "bake", &wave_bake)?;
        }
    }
    inherit::strip_tombstones(&mut merged);
    Ok(merged)
}

/// Merges the mapping `holder.key`, if it is one, onto `parent`.
fn inherit_from(holder: &mut Node, key: &str, parent: &Node) -> Result<(), Diagnostic> {
    let Some(entry) = holder.get_mut(key) else { return Ok(()) };
    if !matches!(entry.value.value, Value::Mapping(_)) || !matches!(parent.value, Value::Mapping(_))
    {
        return Ok(());
    }
    let own = std::mem::replace(&mut entry.value, Node::new(Value::Null, parent.location.clone()));
    entry.value = inherit::merge(parent.clone(), own)?;
    Ok(())
}
