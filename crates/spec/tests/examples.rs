//! The example organisation in `examples/`: its expansions are pinned as snapshots, the sample
//! production pipeline has the seed's shape, and the topology is really central.

use std::path::{Path, PathBuf};

use gantry_model::{Plan, StageKind, StepKind};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every pipeline file of the example services, sorted.
fn pipeline_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for service in std::fs::read_dir(root.join("services")).unwrap() {
        for file in std::fs::read_dir(service.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    files
}

fn load(path: &Path) -> Plan {
    match gantry_spec::load(path) {
        Ok(loaded) => loaded.plan,
        Err(errors) => panic!("{}:\n{errors}", path.display()),
    }
}

/// Stages, steps, targets, bakes and alarms, one step per line.
fn shape(plan: &Plan) -> String {
    let mut text = format!("{} ({} / {})\n", plan.pipeline, plan.team, plan.service);
    for stage in &plan.stages {
        let tests: Vec<&str> = stage.tests.iter().map(|test| test.name.as_str()).collect();
        text.push_str(&format!(
            "{} promotion={:?} tests=[{}]\n",
            stage.name,
            stage.promotion,
            tests.join(",")
        ));
        for step in &stage.steps {
            let targets: Vec<String> = step.targets.iter().map(ToString::to_string).collect();
            let points: Vec<String> = step
                .bake
                .data_points
                .iter()
                .map(|(metric, count)| format!("{metric}>={count}"))
                .collect();
            text.push_str(&format!(
                "  {} bake={} [{}] alarms=[{}]\n    {}\n",
                step.name,
                step.bake.duration,
                points.join(" "),
                step.rollback_alarms.join(","),
                targets.join(" ")
            ));
        }
    }
    text
}

#[test]
fn example_expansions_are_pinned() {
    for file in pipeline_files(&examples()) {
        let plan = load(&file);
        insta::assert_snapshot!(plan.pipeline.clone(), shape(&plan));
    }
}

#[test]
fn the_sample_production_pipeline_has_the_seeds_shape() {
    let plan = load(&examples().join("services/cart-service/config.yaml"));
    let waves: Vec<_> = plan.production_stages().collect();
    assert_eq!(waves.len(), 5);
    let regions = |wave: usize| -> Vec<&str> {
        let mut names: Vec<&str> = waves[wave]
            .steps
            .iter()
            .flat_map(|step| &step.targets)
            .map(|target| target.region.as_str())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    // Wave 1: the lowest-traffic region, wave 2: the highest, then 3, up to 12, and the rest.
    assert_eq!(regions(0), ["mx-central-1"]);
    assert_eq!(regions(1), ["us-east-1"]);
    assert_eq!(regions(2).len(), 3);
    assert_eq!(regions(3).len(), 12);
    assert_eq!(regions(4).len(), 24 - 1 - 1 - 3 - 12);
    for wave in &waves {
        assert_eq!(
            wave.steps[0].kind,
            StepKind::OneBox,
            "{} starts with a one-box step",
            wave.name
        );
        assert!(wave.steps[0].bake.duration.as_seconds() >= 3600, "one-box bake is at least 1h");
        for step in &wave.steps[1..] {
            let mut seen = std::collections::BTreeSet::new();
            for target in &step.targets {
                assert!(
                    seen.insert(&target.region),
                    "{} touches {} twice",
                    step.name,
                    target.region
                );
            }
        }
        for step in &wave.steps {
            assert!(!step.rollback_alarms.is_empty(), "{} watches a rollback alarm", step.name);
        }
    }
    // Waves 1 and 2 go one AZ at a time through their single region.
    assert!(waves[0].steps[1..].iter().all(|step| step.targets.len() == 1));
    assert!(waves[1].steps[1..].iter().all(|step| step.targets.len() == 1));
    assert!(waves[0].steps.last().unwrap().bake.duration.as_seconds() >= 12 * 3600);
    assert!(matches!(waves[4].kind, StageKind::Wave { number: 5 }));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn adding_a_region_changes_every_last_wave_and_nothing_else() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path().join("examples");
    copy_tree(&examples(), &root);
    let before: Vec<Plan> = pipeline_files(&root).iter().map(|file| load(file)).collect();

    let topology = root.join("topology.yaml");
    let mut text = std::fs::read_to_string(&topology).unwrap();
    let new_region = "
  - name: eu-central-2
    traffic: 200000
    time_zone: Europe/Zurich
    zones: [{name: euc2-az1}, {name: euc2-az2}, {name: euc2-az3}]
";
    let at =
        text.find("environments:").expect("the example topology lists environments after regions");
    text.insert_str(at, &new_region[1..]);
    std::fs::write(&topology, text).unwrap();
    let after: Vec<Plan> = pipeline_files(&root).iter().map(|file| load(file)).collect();

    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        let last = old.stages.len() - 1;
        assert_eq!(
            old.stages[..last],
            new.stages[..last],
            "{}: only the last wave changes",
            old.pipeline
        );
        let added: Vec<String> = new.stages[last]
            .steps
            .iter()
            .flat_map(|step| &step.targets)
            .filter(|target| {
                !old.stages[last].steps.iter().any(|step| step.targets.contains(target))
            })
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            added,
            [
                "prod/eu-central-2/euc2-az1",
                "prod/eu-central-2/euc2-az1",
                "prod/eu-central-2/euc2-az2",
                "prod/eu-central-2/euc2-az3"
            ],
            "{}: the last wave gains the new region's one box and its zones",
            old.pipeline
        );
    }
}
