//! The alarm test files in `examples/alarm-tests/` (the golden cases: AWS's missing-data tables and
//! composite examples, M-of-N, counters and percentiles, one-box and aggregate alarms) all pass,
//! and a failing file reports every mismatch.

use std::path::Path;

use gantry_alarms::alarm_test;

#[test]
fn golden_alarm_test_files_pass() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/alarm-tests");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the golden files in {}", directory.display());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        match alarm_test::run(&text, &file.display().to_string()) {
            Ok(report) => {
                assert!(report.checks > 0, "{} checks nothing", file.display());
                failures
                    .extend(report.mismatches.iter().map(|m| format!("{}: {m}", file.display())));
            }
            Err(error) => failures.push(error.to_string()),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Runs an inline test file and compares its mismatches (or error) with `expected`.
#[track_caller]
fn check(text: &str, expected: &str) {
    let actual = match alarm_test::run(text, "inline.yaml") {
        Ok(report) => {
            let mut lines = vec![format!("{} tests, {} checks", report.tests, report.checks)];
            lines.extend(report.mismatches.iter().map(ToString::to_string));
            lines.join("\n")
        }
        Err(error) => format!("error: {error}"),
    };
    assert_eq!(actual, expected);
}

const ALARMS: &str = "
alarms:
  high:
    metric: {metric: x, statistic: Maximum, period: 1m, evaluation_periods: 1,
             comparison: GreaterThanThreshold, threshold: 5}
  any:
    composite: ALARM(high)
";

#[test]
fn every_mismatch_is_reported() {
    check(
        &format!(
            "{ALARMS}
tests:
  - name: wrong twice
    series: [{{series: x, values: 1 9 1}}]
    expect:
      - at: 2m
        states: {{high: OK, any: OK}}
      - at: 3m
        states: {{high: ALARM}}
        gates: {{any: fail}}
"
        ),
        "1 tests, 4 checks\n\
         test `wrong twice` at 2m: alarm `any` is ALARM, expected OK (the rule holds: high is ALARM)\n\
         test `wrong twice` at 2m: alarm `high` is ALARM, expected OK (1 of 1 data points was greater than the threshold 5 (1 of 1 needed to alarm): [9])\n\
         test `wrong twice` at 3m: alarm `high` is OK, expected ALARM (0 of 1 data points was greater than the threshold 5 (1 of 1 needed to alarm): [1])\n\
         test `wrong twice` at 3m: the gate on `any` is pass, expected fail (the alarm is OK on fresh, usable data)",
    );
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    check(
        &format!(
            "{ALARMS}\ntests:\n  - name: t\n    expect:\n      - at: 1m\n        states: {{nope: OK}}\n"
        ),
        "error: inline.yaml: test `t`: expectation at 1m names alarm `nope`, which is not defined",
    );
    check(
        &format!(
            "{ALARMS}\ntests:\n  - name: t\n    expect:\n      - at: 1m\n        states: {{high: FIRING}}\n"
        ),
        "error: inline.yaml: test `t`: expectation at 1m for `high`: unknown state `FIRING`: expected OK, ALARM or INSUFFICIENT_DATA",
    );
    check(
        &format!(
            "{ALARMS}\ntests:\n  - name: t\n    expect:\n      - at: 90s\n        states: {{high: OK}}\n"
        ),
        "error: inline.yaml: test `t`: expectation at 1m30s is not a multiple of the evaluation interval 1m",
    );
    check(
        &format!(
            "{ALARMS}\ntests:\n  - name: t\n    series: [{{series: 'x{{a=1}}', values: 1}}]\n    expect: []\n"
        ),
        "error: inline.yaml: test `t`: series `x{a=1}`: expected `\"` to open the value of label `a`, found `1`",
    );
    let typo = alarm_test::run(
        "alarms:\n  a:\n    metric: {metric: x, statistc: Sum}\ntests: []\n",
        "inline.yaml",
    );
    let typo = typo.unwrap_err().to_string();
    assert!(typo.starts_with("inline.yaml: line 3 column 25: unknown field `statistc`"), "{typo}");
    check(
        "alarms:\n  loop:\n    composite: ALARM(loop)\ntests: []\n",
        "error: inline.yaml: invalid alarms:\nalarm `loop`: composite alarms form a cycle: loop -> loop; break it by removing one reference",
    );
}

#[test]
fn run_files_prints_a_line_per_file_and_mismatch() {
    let directory = tempfile::tempdir().unwrap();
    let good = directory.path().join("good.yaml");
    let bad = directory.path().join("bad.yaml");
    let missing = directory.path().join("missing.yaml");
    let test = |state: &str| {
        format!(
            "{ALARMS}\ntests:\n  - name: t\n    series: [{{series: x, values: 9}}]\n    expect:\n      - at: 1m\n        states: {{high: {state}}}\n"
        )
    };
    std::fs::write(&good, test("ALARM")).unwrap();
    std::fs::write(&bad, test("OK")).unwrap();
    let mut out = Vec::new();
    let passed =
        alarm_test::run_files(&[good.clone(), bad.clone(), missing.clone()], &mut out).unwrap();
    assert!(!passed);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        format!(
            "ok    {}: 1 tests, 1 checks\n\
             FAIL  {}: 1 of 1 checks failed\n      \
             test `t` at 1m: alarm `high` is ALARM, expected OK (1 of 1 data points was greater than the threshold 5 (1 of 1 needed to alarm): [9])\n\
             ERROR {}: No such file or directory (os error 2)\n",
            good.display(),
            bad.display(),
            missing.display()
        )
    );
    let mut out = Vec::new();
    assert!(alarm_test::run_files(&[good], &mut out).unwrap());
}

#[test]
fn the_format_example_in_the_readme_passes() {
    let readme = include_str!("../../../examples/alarm-tests/README.md");
    let start = readme.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("the example's end");
    let report = alarm_test::run(&readme[start..end], "README.md").unwrap();
    assert_eq!((report.tests, report.checks, report.mismatches), (1, 5, vec![]));
}

#[test]
fn the_alarm_kinds_in_the_readme_show_their_defaults() {
    use std::collections::BTreeMap;

    use gantry_model::pipeline::AlarmDefinition;

    let readme = include_str!("../../../examples/alarm-tests/README.md");
    let section = &readme[readme.find("Besides `metric`").expect("the alarm kinds")..];
    let start = section.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
    let end = start + section[start..].find("```").expect("the example's end");
    let documented: BTreeMap<String, AlarmDefinition> =
        serde_saphyr::from_str(&section[start..end]).unwrap();
    let required_only: BTreeMap<String, AlarmDefinition> = serde_saphyr::from_str(
        "OneBox_Latency_Judge:
  judge: {metric: latency_p99, canary: {role: one-box}, baseline: {role: fleet}}
OneBox_Latency_Anomaly:
  anomaly: {check: above_baseline, metric: latency_p99, baseline: {fleet: {role: fleet}},
            labels: {role: one-box}}
",
    )
    .unwrap();
    assert_eq!(documented, required_only);
}
