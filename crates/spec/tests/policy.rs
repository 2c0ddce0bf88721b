//! Best-practice checks: each rule firing and not firing, levels, enforcement dates, exemptions,
//! automation levels, policy-file errors, and the example organisation's promised findings.
//!
//! Pipelines are small YAML files over a three-region topology, written into a temporary
//! directory and loaded as `gantry check` loads them. A case is a pipeline override on top of
//! `base.yaml` (which breaks no rule), a policy and a date; its expectation is the rendered
//! findings, one line each.

use std::path::{Path, PathBuf};

use gantry_spec::policy::{self, AutomationLevel, Policy};
use jiff::civil::{Date, date};

const TOPOLOGY: &str = "
regions:
  - { name: small-1, traffic: 10, time_zone: Europe/Paris, zones: [{ name: s1a }, { name: s1b }] }
  - { name: mid-1, traffic: 100, time_zone: Asia/Tokyo, zones: [{ name: m1a }, { name: m1b }] }
  - { name: big-1, traffic: 1000, time_zone: America/New_York,
      zones: [{ name: b1a }, { name: b1b }, { name: b1c }] }
environments:
  - { name: beta, regions: [mid-1] }
  - { name: gamma, regions: [mid-1, big-1] }
";

/// A pipeline's defaults that break no rule.
const BASE: &str = r#"
abstract: true
topology: topology.yaml
team: storefront
service: shop
kind: code
sources: [{ repository: https://git.example.com/shop.git }]
build: { command: make, outputs: [out] }
preprod:
  beta: {}
  gamma: { one_box: true, bake: { duration: 1h, data_points: { requests: 10 } } }
waves:
  - lowest_traffic: 1
    bake: { duration: 12h, data_points: { requests: 1000 } }
  - highest_traffic: 1
  - rest: true
bake:
  one_box: { duration: 1h, data_points: { requests: 10 } }
  first_zone: { duration: 1h, data_points: { requests: 100 } }
  later_zones: { duration: 30m, data_points: { requests: 100 } }
  wave: { duration: 2h, data_points: { requests: 1000 } }
alarms:
  definitions:
    Shop_Faults:
      metric: { metric: faults, statistic: Sum, period: 1m, evaluation_periods: 1,
                comparison: GreaterThanThreshold, threshold: 5 }
  rollback: [Shop_Faults]
time_windows:
  allow: [{ cron: "* 9-14 * * MON-THU" }]
  holidays: { dates: [2026-12-25] }
"#;

const TODAY: Date = date(2026, 11, 21);

struct Case {
    name: &'static str,
    /// Appended to `extends: base.yaml` and `pipeline: shop-code`.
    pipeline: &'static str,
    /// The policy file; `rules: {}` leaves every rule at `warn`.
    policy: &'static str,
    today: Date,
    /// Rendered findings, one per line; empty for none.
    expected: &'static str,
    enforced: bool,
}

const DEFAULT_POLICY: &str = "rules: {}";

fn case(name: &'static str, pipeline: &'static str, expected: &'static str) -> Case {
    Case { name, pipeline, policy: DEFAULT_POLICY, today: TODAY, expected, enforced: false }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads the case's pipeline and policy, checks it, and compares the rendered findings.
fn check(case: &Case) -> policy::Report {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "topology.yaml", TOPOLOGY);
    write(dir.path(), "base.yaml", BASE);
    let file = write(
        dir.path(),
        "shop.yaml",
        &format!("extends: base.yaml\npipeline: shop-code\n{}", case.pipeline),
    );
    let loaded = gantry_spec::load(&file)
        .unwrap_or_else(|errors| panic!("case `{}` does not load:\n{errors}", case.name));
    let policy_file = write(dir.path(), "policy.yaml", case.policy);
    let policy = policy::load_policy(&policy_file)
        .unwrap_or_else(|errors| panic!("case `{}`: policy refused:\n{errors}", case.name));
    let report = policy::check(&policy, &[loaded], case.today);
    let actual: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    let expected: Vec<&str> =
        case.expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(actual, expected, "case `{}`", case.name);
    assert_eq!(report.has_enforced_violations(), case.enforced, "case `{}`: enforced", case.name);
    report
}

#[test]
fn each_rule_fires_and_stays_quiet() {
    let cases = [
        case("a pipeline that follows every rule", "", ""),
        case(
            "one box too large",
            "deployment: { one_box_percent: 25 }",
            "shop-code: warning [prod-waves-start-with-one-box] the one box takes 25% of a \
             target's traffic; the rule asks for a one box of at most 10%",
        ),
        case(
            "first wave covers two regions",
            "waves:
               - { count: 2, bake: { duration: 12h, data_points: { requests: 1000 } } }
               - { rest: true }",
            "shop-code: warning [first-wave-single-region-zone-by-zone] wave-1 deploys to 2 \
             regions (mid-1, small-1); the rule asks for a single region",
        ),
        case(
            "a first wave named explicitly",
            "waves:
               - { regions: [small-1], bake: { duration: 12h, data_points: { requests: 1 } } }
               - { rest: true }",
            "",
        ),
        case(
            "one-box bake of 30 minutes",
            "bake: { one_box: { duration: 30m } }",
            "shop-code: warning [one-box-bake-at-least-1h] one-box bake is 30m; the rule asks \
             for at least 1h",
        ),
        case("one-box bake of exactly 1h passes", "bake: { one_box: { duration: 60m } }", ""),
        case(
            "first wave bakes 4h",
            "waves:
               - { lowest_traffic: 1, bake: { duration: 4h, data_points: { requests: 1 } } }
               - { rest: true }",
            "shop-code: warning [first-wave-bake-at-least-12h] wave-1 bakes 4h after its last \
             step; the rule asks for at least 12h",
        ),
        case(
            "no rollback alarm",
            "alarms: { rollback: [] }",
            "shop-code: warning [rollback-alarm-on-every-prod-stage] no production step has a \
             rollback alarm; the rule asks for one in every production step",
        ),
        case(
            "one-box alarms only: the zone steps watch nothing",
            "alarms: { rollback: [], one_box_rollback: [Shop_Faults] }",
            "shop-code: warning [rollback-alarm-on-every-prod-stage] 7 production steps \
             (wave-1/zone-1, wave-1/zone-2, wave-2/zone-1, wave-2/zone-2 and 3 more) have no \
             rollback alarm; the rule asks for one in every production step",
        ),
        case(
            "windows open every day",
            r#"time_windows: { allow: [{ cron: "* 9-14 * * *" }] }"#,
            "shop-code: warning [windows-exclude-weekends-and-holidays] allow-window \
             `* 9-14 * * *` opens on Saturday; the rule asks that no deployment start at \
             weekends or on holidays",
        ),
        case(
            "windows open every day but weekends are excluded",
            r#"time_windows:
                 allow: [{ cron: "* 9-14 * * *" }]
                 exclude_weekdays: [saturday, sunday]"#,
            "",
        ),
        case(
            "a Friday-night window lasting into Saturday",
            r#"time_windows: { allow: [{ cron: "0 22 * * FRI", duration: 4h }] }"#,
            "shop-code: warning [windows-exclude-weekends-and-holidays] allow-window \
             `0 22 * * FRI` opens on Saturday; the rule asks that no deployment start at \
             weekends or on holidays",
        ),
        case(
            "no windows and no holidays",
            "time_windows: null",
            "shop-code: warning [windows-exclude-weekends-and-holidays] deployments may start \
             at any time, weekends included (no allow-window, and `exclude_weekdays` leaves \
             out neither Saturday nor Sunday); no holidays are listed; the rule asks that no \
             deployment start at weekends or on holidays",
        ),
        case(
            "gamma deploys one host at a time",
            "preprod: { gamma: { deployment: { batch_size: { type: HOST_COUNT, value: 1 } } } }",
            "shop-code: warning [gamma-mirrors-prod] batch_size is 1 host in gamma but 33% in \
             production; the rule asks for gamma's deployment configuration and alarms to \
             equal production's",
        ),
        case(
            "gamma without its one-box and alarms",
            "preprod: { gamma: { one_box: false, rollback_alarms: [] } }",
            "shop-code: warning [gamma-mirrors-prod] gamma has no one-box step, gamma rolls \
             back on no alarm but production on `Shop_Faults`; the rule asks for gamma's \
             deployment configuration and alarms to equal production's",
        ),
        case(
            "no gamma",
            "preprod: { gamma: null }",
            "shop-code: warning [gamma-mirrors-prod] the pipeline has no gamma stage; the rule \
             asks for a production-like gamma",
        ),
        case(
            "code review optional",
            "code_review: optional",
            "shop-code: warning [code-review-required] code review is optional; the rule asks \
             that every commit be approved by someone other than its author",
        ),
        case(
            "build with network",
            "build: { network: true }",
            "shop-code: warning [hermetic-build] the build may reach the network \
             (`build.network: true`); the rule asks for builds without network access",
        ),
        case(
            "automatic rollback off",
            "deployment: { auto_rollback: false }",
            "shop-code: warning [auto-rollback-on] automatic rollback is off in every stage; \
             the rule asks that a firing rollback alarm roll the change back",
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn levels_dates_and_exemptions() {
    const NETWORK: &str = "build: { network: true }";
    const FINDING: &str = "[hermetic-build] the build may reach the network \
                           (`build.network: true`); the rule asks for builds without network \
                           access";
    let exemption = |expires: &str| -> &'static str {
        format!(
            "rules: {{ hermetic-build: enforce }}\n\
             exemptions:\n\
             \x20 - {{ pipeline: shop-code, rule: hermetic-build, reason: provider mirror, \
             expires: {expires} }}\n"
        )
        .leak()
    };
    let cases = [
        Case { policy: "rules: { hermetic-build: off }", ..case("off skips", NETWORK, "") },
        Case {
            policy: "rules: { hermetic-build: enforce }",
            enforced: true,
            ..case("enforce fails", NETWORK, format!("shop-code: enforced {FINDING}").leak())
        },
        Case {
            policy: "rules: { hermetic-build: { level: warn, enforce_from: 2027-03-01 } }",
            today: date(2027, 2, 28),
            ..case(
                "the day before enforcement",
                NETWORK,
                format!("shop-code: warning {FINDING} (enforced from 2027-03-01)").leak(),
            )
        },
        Case {
            policy: "rules: { hermetic-build: { level: warn, enforce_from: 2027-03-01 } }",
            today: date(2027, 3, 1),
            enforced: true,
            ..case(
                "on the enforcement date",
                NETWORK,
                format!("shop-code: enforced {FINDING}").leak(),
            )
        },
        Case {
            policy: "rules: { hermetic-build: { level: off, enforce_from: 2027-03-01 } }",
            today: date(2027, 2, 28),
            ..case("off until enforcement", NETWORK, "")
        },
        Case {
            policy: exemption("2026-11-21"),
            ..case(
                "an exemption on its last day",
                NETWORK,
                format!("shop-code: exempted {FINDING} (exempt until 2026-11-21: provider mirror)")
                    .leak(),
            )
        },
        Case {
            policy: exemption("2026-11-20"),
            enforced: true,
            ..case(
                "an expired exemption",
                NETWORK,
                format!("shop-code: enforced {FINDING} (its exemption expired on 2026-11-20)")
                    .leak(),
            )
        },
        Case {
            policy: "exemptions:\n\
                     \x20 - { pipeline: other-code, rule: hermetic-build, reason: x, \
                     expires: 2030-01-01 }",
            ..case(
                "an exemption for another pipeline",
                NETWORK,
                format!("shop-code: warning {FINDING}").leak(),
            )
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn automation_levels() {
    let cases = [
        ("", 0, AutomationLevel::FullyAutomated),
        ("preprod: { gamma: { promotion: manual } }", 1, AutomationLevel::PartlyManual),
        (
            "preprod: { beta: { promotion: manual }, gamma: { promotion: manual } }",
            2,
            AutomationLevel::PartlyManual,
        ),
    ];
    for (pipeline, manual, level) in cases {
        let report = check(&case("automation", pipeline, ""));
        let automation = &report.automation[0];
        // beta, gamma and three waves: four promotions.
        assert_eq!(
            (automation.manual_promotions, automation.total_promotions, automation.level),
            (manual, 4, level),
            "{pipeline}"
        );
    }
}

#[test]
fn policy_file_errors() {
    let cases = [
        (
            "rules:\n  one-box-bake-at-least-2h: warn\n",
            "policy.yaml:2:3: error: unknown rule `one-box-bake-at-least-2h`\n  hint: did you \
             mean `one-box-bake-at-least-1h`?",
        ),
        (
            "rules:\n  hermetic-build: enforced\n",
            "policy.yaml:2:19: error: unknown value `enforced`\n  hint: did you mean \
             `enforce`? Expected one of `off`, `warn`, `enforce`",
        ),
        (
            "rules:\n  hermetic-build: { level: warn, enforce_for: 2027-03-01 }\n",
            "policy.yaml:2:34: error: unknown field `enforce_for`, expected `level` or \
             `enforce_from`",
        ),
        (
            "rules:\n  hermetic-build: { level: enforce, enforce_from: 2027-03-01 }\n",
            "policy.yaml:2:51: error: rule `hermetic-build` is already enforced, so \
             `enforce_from` has no effect\n  hint: write `{level: warn, enforce_from: DATE}` \
             to warn until DATE",
        ),
        (
            "exemptions:\n  - pipeline: a\n    rule: hermetic-biuld\n    expires: 2027-01-01\n",
            "policy.yaml:3:11: error: unknown rule `hermetic-biuld`\n  hint: did you mean \
             `hermetic-build`?\n\
             policy.yaml:2:5: error: the exemption of `a` from `hermetic-biuld` gives no \
             reason\n  hint: add `reason:` saying why the pipeline cannot follow the rule yet",
        ),
        (
            "exemptions:\n  - { pipeline: a, rule: hermetic-build, reason: x, expires: soon }\n",
            "policy.yaml:2:62: error: failed to parse four digit integer as year: invalid \
             digit, expected 0-9 but got s",
        ),
        (
            "rulez: {}\n",
            "policy.yaml:1:1: error: unknown field `rulez`\n  hint: did you mean `rules`?",
        ),
    ];
    for (policy, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "policy.yaml", policy);
        let errors = policy::load_policy(&path).expect_err(policy).to_string();
        let errors = errors.replace(&format!("{}/", dir.path().display()), "");
        assert!(errors.starts_with(expected), "policy:\n{policy}\nerrors:\n{errors}");
    }
}

/// examples/README.md, "Expected `gantry check` findings".
#[test]
fn example_organisation_findings() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut pipelines = Vec::new();
    let mut services: Vec<PathBuf> = std::fs::read_dir(examples.join("services"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    services.sort();
    for service in services {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&service).unwrap().map(|entry| entry.unwrap().path()).collect();
        files.sort();
        for file in files {
            match gantry_spec::load_definition(&file) {
                Ok(gantry_spec::Definition::Pipeline(loaded)) => pipelines.push(*loaded),
                Ok(gantry_spec::Definition::Abstract { .. }) => {}
                Err(errors) => panic!("{} does not load:\n{errors}", file.display()),
            }
        }
    }
    let policy: Policy = policy::load_policy(&examples.join("policy.yaml")).unwrap();
    let render = |today: Date| {
        let report = policy::check(&policy, &pipelines, today);
        let lines: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        (lines, report)
    };

    let (findings, report) = render(TODAY);
    assert_eq!(
        findings,
        [
            "cart-service-infra: warning [gamma-mirrors-prod] minimum_healthy_hosts is 1 host in \
             gamma but 66% in production, batch_size is 1 host in gamma but 33% in production; \
             the rule asks for gamma's deployment configuration and alarms to equal \
             production's (its exemption expired on 2026-10-01)",
            "payments-ledger-infra: exempted [hermetic-build] the build may reach the network \
             (`build.network: true`); the rule asks for builds without network access (exempt \
             until 2027-06-30: terraform init fetches provider plugins from the network; the \
             vendored provider mirror (PAY-1432) is scheduled for Q2 2027. Providers are pinned \
             by hash in .terraform.lock.hcl.)",
            "payments-ledger-tools: warning [one-box-bake-at-least-1h] one-box bake is 30m; the \
             rule asks for at least 1h (enforced from 2027-03-01)",
        ]
    );
    assert!(!report.has_enforced_violations());
    let automation: Vec<String> = report.automation.iter().map(ToString::to_string).collect();
    assert_eq!(pipelines.len(), 10);
    for line in &automation {
        if line.starts_with("payments-ledger-infra:") {
            assert!(line.contains("partly manual (1 of"), "{line}");
        } else {
            assert!(line.contains("fully automated (0 of"), "{line}");
        }
    }

    // From 2027-03-01 the tools pipeline's finding is enforced; after 2027-06-30 so is the
    // infra pipeline's build.
    let enforced = |today: Date| -> Vec<String> {
        let (_, report) = render(today);
        report
            .findings
            .iter()
            .filter(|finding| finding.is_enforced_violation())
            .map(|finding| format!("{} {}", finding.pipeline, finding.rule))
            .collect()
    };
    assert_eq!(enforced(date(2027, 2, 28)), Vec::<String>::new());
    assert_eq!(enforced(date(2027, 3, 1)), ["payments-ledger-tools one-box-bake-at-least-1h"]);
    assert_eq!(
        enforced(date(2027, 7, 1)),
        ["payments-ledger-infra hermetic-build", "payments-ledger-tools one-box-bake-at-least-1h"]
    );
}

/// Loading refuses a production bake without data points, so the rule only guards plans that
/// changed after loading: it still fires on one.
#[test]
fn bake_requires_data_points_fires_on_a_plan_without_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "topology.yaml", TOPOLOGY);
    write(dir.path(), "base.yaml", BASE);
    let file = write(dir.path(), "shop.yaml", "extends: base.yaml\npipeline: shop-code\n");
    let mut loaded = gantry_spec::load(&file).unwrap();
    for stage in loaded.plan.stages.iter_mut().filter(|stage| stage.kind.is_production()) {
        stage.steps[1].bake.data_points.clear();
    }
    let policy_file = write(dir.path(), "policy.yaml", DEFAULT_POLICY);
    let policy = policy::load_policy(&policy_file).unwrap();
    let report = policy::check(&policy, &[loaded], TODAY);
    let actual: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        actual,
        ["shop-code: warning [bake-requires-data-points] 3 production steps (wave-1/zone-1, \
          wave-2/zone-1, wave-3/zone-1) bake for a time without a minimum of data points; \
          the rule asks for both a time and data points"]
    );
}
