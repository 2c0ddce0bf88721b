//! Wave expansion: from a pipeline's policy ("wave 1: the lowest-traffic region; wave 3: three
//! regions; wave 5: the rest") and the topology to concrete stages, steps and targets.
//!
//! Region selection, in this order:
//! 1. Regions named explicitly in any wave are reserved for that wave.
//! 2. Every other wave takes, in wave order, from the regions neither reserved, excluded nor
//!    taken: `lowest_traffic: N` the N with least traffic, `highest_traffic: N` the N with most,
//!    `count: N` exactly N and `up_to: N` at most N (least traffic first), `rest` all that remain.
//!    Ties in traffic are broken by region name, so the expansion is deterministic.
//!
//! Steps of a wave: a one-box step (one box in the first zone of every region of the wave), then
//! step k deploys the k-th zone (or cell) of every region that has one, so no step touches more
//! than one zone or cell per region. In a cell-by-cell wave, a zone without cells is deployed as
//! one unit in its turn (its target names the zone and no cell; `gantry plan` says so).
//! Bakes: `bake.one_box` after the one-box step,
//! `bake.first_zone` after step 1, `bake.later_zones` after later steps, and the wave's bake
//! (its own, else `bake.wave`) after its last step.

use std::collections::BTreeSet;

use gantry_model::pipeline::{Bake, Granularity, PipelineSpec, PreprodStage};
use gantry_model::plan::NamedTestGate;
use gantry_model::topology::Region;
use gantry_model::{OneBoxScope, Plan, Stage, StageKind, Step, StepKind, Target, Topology};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::located;
use crate::node::Node;

/// The environment name of production targets.
pub const PRODUCTION: &str = "prod";

/// Expands `spec` over `topology`, with `holidays` as the plan's holiday dates. Adds any problem
/// to `out`, and returns no plan if `out` holds any error, found here or before.
pub fn plan(
    spec: &PipelineSpec,
    topology: &Topology,
    holidays: Vec<jiff::civil::Date>,
    node: &Node,
    out: &mut Diagnostics,
) -> Option<Plan> {
    let mut stages: Vec<Stage> = spec
        .preprod
        .in_order()
        .filter_map(|(kind, stage)| preprod_stage(spec, topology, kind, stage))
        .collect();
    let assignments = assign_regions(spec, topology, node, out);
    for (index, (wave, regions)) in spec.waves.iter().zip(assignments).enumerate() {
        let name = wave.name.clone().unwrap_or_else(|| format!("wave-{}", index + 1));
        let steps = wave_steps(
            spec,
            &name,
            wave.granularity,
            wave.bake.as_ref(),
            &regions,
            node,
            index,
            out,
        );
        stages.push(Stage {
            name,
            kind: StageKind::Wave { number: index as u32 + 1 },
            promotion: gantry_model::pipeline::Promotion::Automatic,
            tests: Vec::new(),
            deployment: spec.deployment.clone(),
            steps,
        });
    }
    if out.has_errors() {
        return None;
    }
    let mut time_windows = spec.time_windows.clone();
    time_windows.holidays.dates = holidays;
    Some(Plan {
        pipeline: spec.pipeline.clone(),
        team: spec.team.clone(),
        service: spec.service.clone(),
        kind: spec.kind,
        sources: spec.sources.clone(),
        build_command: spec.build.command.clone(),
        build_network: spec.build.network,
        code_review: spec.code_review,
        stages,
        alarm_blockers: spec.alarms.blockers.clone(),
        time_windows,
        limits: spec.limits.clone(),
        urgent: spec.urgent.clone(),
    })
}

fn preprod_stage(
    spec: &PipelineSpec,
    topology: &Topology,
    kind: gantry_model::pipeline::PreprodKind,
    stage: &PreprodStage,
) -> Option<Stage> {
    let environment = topology.environment(kind.name())?;
    let whole = |region: &String| Target {
        environment: kind.name().to_string(),
        region: region.clone(),
        zone: None,
        cell: None,
    };
    let rollback_alarms =
        stage.rollback_alarms.clone().unwrap_or_else(|| spec.alarms.rollback.clone());
    let mut steps = Vec::new();
    if stage.one_box {
        steps.push(Step {
            name: format!("{}/one-box", kind.name()),
            kind: StepKind::OneBox,
            targets: environment.regions.iter().map(whole).collect(),
            bake: spec.bake.one_box.clone(),
            rollback_alarms: with_one_box_alarms(&rollback_alarms, &spec.alarms.one_box_rollback),
            one_box_of: Some(OneBoxScope::Region),
        });
    }
    steps.push(Step {
        name: format!("{}/environment", kind.name()),
        kind: StepKind::Environment,
        targets: environment.regions.iter().map(whole).collect(),
        bake: stage.bake.clone().unwrap_or_default(),
        rollback_alarms,
        one_box_of: None,
    });
    Some(Stage {
        name: kind.name().to_string(),
        kind: StageKind::Preprod { environment: kind },
        promotion: stage.promotion,
        tests: stage
            .tests
            .iter()
            .map(|(name, gate)| NamedTestGate { name: name.clone(), gate: gate.clone() })
            .collect(),
        deployment: stage.deployment.clone().unwrap_or_else(|| spec.deployment.clone()),
        steps,
    })
}

fn with_one_box_alarms(rollback: &[String], one_box: &[String]) -> Vec<String> {
    let mut alarms = rollback.to_vec();
    for alarm in one_box {
        if !alarms.contains(alarm) {
            alarms.push(alarm.clone());
        }
    }
    alarms
}

/// The regions of each wave, in the order the waves are declared.
fn assign_regions<'t>(
    spec: &PipelineSpec,
    topology: &'t Topology,
    node: &Node,
    out: &mut Diagnostics,
) -> Vec<Vec<&'t Region>> {
    let mut by_traffic: Vec<&Region> = topology
        .regions
        .iter()
        .filter(|region| !spec.exclude_regions.contains(&region.name))
        .collect();
    by_traffic.sort_by(|a, b| a.traffic.cmp(&b.traffic).then_with(|| a.name.cmp(&b.name)));
    let reserved: BTreeSet<&str> = spec
        .waves
        .iter()
        .flat_map(|wave| wave.regions.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::with_capacity(spec.waves.len());
    for (index, wave) in spec.waves.iter().enumerate() {
        let wave_path = index.to_string();
        let available: Vec<&Region> = by_traffic
            .iter()
            .copied()
            .filter(|region| {
                !reserved.contains(region.name.as_str()) && !taken.contains(region.name.as_str())
            })
            .collect();
        let (selected, selector, wanted): (Vec<&Region>, &str, Option<u32>) = if let Some(names) =
            &wave.regions
        {
            let selected = names.iter().filter_map(|name| topology.region(name)).collect();
            (selected, "regions", None)
        } else if let Some(n) = wave.lowest_traffic {
            (available.iter().copied().take(n as usize).collect(), "lowest_traffic", Some(n))
        } else if let Some(n) = wave.highest_traffic {
            (available.iter().rev().copied().take(n as usize).collect(), "highest_traffic", Some(n))
        } else if let Some(n) = wave.count {
            (available.iter().copied().take(n as usize).collect(), "count", Some(n))
        } else if let Some(n) = wave.up_to {
            (available.iter().copied().take(n as usize).collect(), "up_to", None)
        } else if wave.rest {
            (available.clone(), "rest", None)
        } else {
            (Vec::new(), "", None)
        };
        if let Some(wanted) = wanted
            && selected.len() < wanted as usize
        {
            out.push(Diagnostic::error(
                located(node, &["waves", &wave_path, selector]),
                match (wanted, selected.len()) {
                    (1, _) => format!("wave {} asks for 1 region but none remain", index + 1),
                    (_, 0) => format!("wave {} asks for {wanted} regions but none remain", index + 1),
                    (_, 1) => format!("wave {} asks for {wanted} regions but only 1 remains", index + 1),
                    (_, left) => format!("wave {} asks for {wanted} regions but only {left} remain", index + 1),
                },
            ).with_hint("earlier waves and explicit region lists have taken the others; ask for fewer or use `up_to`"));
        } else if selected.is_empty() && !selector.is_empty() && selector != "regions" {
            out.push(
                Diagnostic::error(
                    located(node, &["waves", &wave_path, selector]),
                    format!("wave {} finds no regions left to deploy", index + 1),
                )
                .with_hint("remove the wave, or take fewer regions in earlier waves"),
            );
        }
        taken.extend(selected.iter().map(|region| region.name.as_str()));
        waves.push(selected);
    }
    if spec.waves_cover_topology {
        let missing: Vec<&str> = by_traffic
            .iter()
            .map(|region| region.name.as_str())
            .filter(|name| !taken.contains(name))
            .collect();
        if !missing.is_empty() && !spec.waves.is_empty() {
            out.push(Diagnostic::error(
                located(node, &["waves"]),
                format!("the waves do not cover the topology: no wave deploys {}", quoted(&missing)),
            ).with_hint("add `rest: true` as the last wave, list the regions in a wave, or add them to `exclude_regions`"));
        }
    }
    waves
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

/// One deployable unit of a region in a wave: a zone, or a cell within a zone.
struct Unit<'t> {
    zone: &'t str,
    cell: Option<&'t str>,
}

/// The zones (or cells) of `region` a wave deploys, in topology order, less excluded zones.
fn units<'t>(
    region: &'t Region,
    granularity: Granularity,
    exclude_zones: &[String],
) -> Vec<Unit<'t>> {
    let zones = region.zones.iter().filter(|zone| !exclude_zones.contains(&zone.name));
    match granularity {
        Granularity::Zone => zones.map(|zone| Unit { zone: &zone.name, cell: None }).collect(),
        // A zone without cells is one unit: skipping it would never deploy it.
        Granularity::Cell => zones
            .flat_map(|zone| {
                let cells: Vec<Unit> = if zone.cells.is_empty() {
                    vec![Unit { zone: &zone.name, cell: None }]
                } else {
                    zone.cells
                        .iter()
                        .map(|cell| Unit { zone: &zone.name, cell: Some(cell.as_str()) })
                        .collect()
                };
                cells
            })
            .collect(),
    }
}

#[allow(clippy::too_many_arguments, reason = "one call site; the arguments are the wave's parts")]
fn wave_steps(
    spec: &PipelineSpec,
    wave_name: &str,
    granularity: Granularity,
    wave_bake: Option<&Bake>,
    regions: &[&Region],
    node: &Node,
    index: usize,
    out: &mut Diagnostics,
) -> Vec<Step> {
    let per_region: Vec<(&Region, Vec<Unit>)> = regions
        .iter()
        .map(|region| (*region, units(region, granularity, &spec.exclude_zones)))
        .collect();
    for (region, units) in &per_region {
        if units.is_empty() {
            out.push(
                Diagnostic::error(
                    located(node, &["waves", &index.to_string()]),
                    format!(
                        "wave {} would deploy nothing in region `{}`: every zone of it is in \
                     `exclude_zones`",
                        index + 1,
                        region.name
                    ),
                )
                .with_hint(
                    "exclude the region instead (`exclude_regions`), or keep one of its zones",
                ),
            );
        }
    }
    let target = |region: &Region, unit: &Unit| Target {
        environment: PRODUCTION.to_string(),
        region: region.name.clone(),
        zone: Some(unit.zone.to_string()),
        cell: unit.cell.map(str::to_string),
    };
    let mut steps = vec![Step {
        name: format!("{wave_name}/one-box"),
        kind: StepKind::OneBox,
        targets: per_region
            .iter()
            .filter_map(|(region, units)| units.first().map(|unit| target(region, unit)))
            .collect(),
        bake: spec.bake.one_box.clone(),
        rollback_alarms: with_one_box_alarms(&spec.alarms.rollback, &spec.alarms.one_box_rollback),
        // The seed: at most ten percent of the requests of the Region or Availability Zone;
        // a production one-box stands for its region.
        one_box_of: Some(OneBoxScope::Region),
    }];
    let step_count = per_region.iter().map(|(_, units)| units.len()).max().unwrap_or(0);
    for k in 1..=step_count {
        let bake = if k == step_count {
            wave_bake.unwrap_or(&spec.bake.wave).clone()
        } else if k == 1 {
            spec.bake.first_zone.clone()
        } else {
            spec.bake.later_zones.clone()
        };
        let (kind, label) = match granularity {
            Granularity::Zone => (StepKind::Zone(k as u32), "zone"),
            Granularity::Cell => (StepKind::Cell(k as u32), "cell"),
        };
        steps.push(Step {
            name: format!("{wave_name}/{label}-{k}"),
            kind,
            targets: per_region
                .iter()
                .filter_map(|(region, units)| units.get(k - 1).map(|unit| target(region, unit)))
                .collect(),
            bake,
            rollback_alarms: spec.alarms.rollback.clone(),
            one_box_of: None,
        });
    }
    steps
}
