//! `gantry alarm import`'s library: the committed CDK-synthesised template and
//! `describe-alarms` output (in the formats AWS documents) translate into Gantry definitions
//! that load with no hand edits and evaluate like the CloudWatch originals on recorded series;
//! whatever cannot be translated is reported.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_alarms::import::{ImportOptions, Imported, import};
use gantry_model::pipeline::AlarmDefinition;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import").join(name);
    std::fs::read_to_string(path).unwrap()
}

fn options(region: Option<&str>, account: Option<&str>) -> ImportOptions {
    ImportOptions { region: region.map(str::to_string), account: account.map(str::to_string) }
}

/// The import as text: one `name: definition` line per alarm (JSON), then what was skipped
/// and what was dropped.
fn render(imported: &Imported) -> String {
    let mut lines: Vec<String> = imported
        .definitions
        .iter()
        .map(|(name, definition)| format!("{name}: {}", serde_json::to_string(definition).unwrap()))
        .collect();
    lines.extend(imported.skipped.iter().map(|finding| format!("skipped {finding}")));
    lines.extend(imported.notes.iter().map(|finding| format!("dropped {finding}")));
    lines.join("\n")
}

#[track_caller]
fn check(file: &str, options: &ImportOptions, expected: &str) -> Imported {
    let imported = import(&fixture(file), options).unwrap();
    let got = render(&imported);
    assert_eq!(got.trim(), expected.trim(), "\n--- got ---\n{got}\n");
    imported
}

/// Runs an alarm test file made of the imported definitions and `tests`, and asserts every
/// expectation held.
#[track_caller]
fn evaluates(definitions: &BTreeMap<String, AlarmDefinition>, tests: &str) {
    let text = format!(
        "evaluation_interval: 1m\nalarms: {}\ntests:\n{tests}",
        serde_json::to_string(definitions).unwrap()
    );
    let report = gantry_alarms::alarm_test::run(&text, "imported").unwrap();
    let mismatches: Vec<String> = report.mismatches.iter().map(ToString::to_string).collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(report.checks > 0);
}

/// Recorded series of the checkout service (one sample a minute), with the states CloudWatch
/// gives its alarms, worked by hand from CloudWatch's documented semantics:
/// - faults: Sum > 5 in 2 of 3 minutes; latency: p99 (or tm99) ≥ 250 in 3 of 3;
/// - error rate: errors / requests > 0.05 in 1 of 1.
const RECORDED: &str = r#"
  - name: recorded checkout series
    series:
      - {series: 'Faults{namespace="Checkout",Service="checkout"}', values: 0 0 9 0 9 0 0 0}
      - {series: 'Latency{namespace="Checkout",Service="checkout"}', values: 100 100 300 300 300 300 100 100}
      - {series: 'Errors{namespace="Checkout",Service="checkout"}', values: 0 0 0 0 10 0 0 0}
      - {series: 'Requests{namespace="Checkout",Service="checkout"}', values: 100x7}
    expect:
"#;

#[test]
fn a_cdk_synthesised_template_imports_and_evaluates_like_cloudwatch() {
    let imported = check(
        "checkout-stack.template.json",
        &options(Some("eu-west-1"), Some("111122223333")),
        r#"
ApiLatencyAlarm3B9C0A11: {"metric":{"metric":"Latency","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"p99","period":"1m","evaluation_periods":3,"comparison":"GreaterThanOrEqualToThreshold","threshold":250.0,"treat_missing_data":"missing"}}
checkout-api-faults: {"metric":{"metric":"Faults","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"Sum","period":"1m","evaluation_periods":3,"datapoints_to_alarm":2,"comparison":"GreaterThanThreshold","threshold":5.0,"treat_missing_data":"breaching"}}
checkout-error-rate-eu-west-1: {"metric":{"metric":"Errors","divide_by":"Requests","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"Sum","period":"1m","evaluation_periods":1,"comparison":"GreaterThanThreshold","threshold":0.05,"treat_missing_data":"notBreaching"}}
checkout-high-severity: {"composite":"ALARM(\"checkout-api-faults\") OR ALARM(\"ApiLatencyAlarm3B9C0A11\")"}
checkout-two-of-three: {"composite":"AT_LEAST(2, ALARM, (\"checkout-api-faults\", \"ApiLatencyAlarm3B9C0A11\", \"checkout-error-rate-eu-west-1\"))"}
skipped `CpuAnomalyAlarmE1F2A3B4`: the threshold is an anomaly-detection band (`ThresholdMetricId`), which Gantry does not model; use an `anomaly` alarm (docs/alarms.md)
skipped `checkout-cpu-or-faults`: its rule names `CpuAnomalyAlarmE1F2A3B4`, which was not translated
dropped `checkout-api-faults`: `AlarmActions` not imported: a Gantry alarm in ALARM rolls back or blocks, and series carry no units
dropped `checkout-high-severity`: `AlarmActions` not imported: a Gantry alarm in ALARM rolls back or blocks, and series carry no units
"#,
    );
    evaluates(
        &imported.definitions,
        &format!(
            "{RECORDED}      - at: 3m
        states: {{checkout-api-faults: OK, ApiLatencyAlarm3B9C0A11: OK, checkout-error-rate-eu-west-1: OK, checkout-high-severity: OK, checkout-two-of-three: OK}}
      - at: 5m
        states: {{checkout-api-faults: ALARM, ApiLatencyAlarm3B9C0A11: ALARM, checkout-error-rate-eu-west-1: ALARM, checkout-high-severity: ALARM, checkout-two-of-three: ALARM}}
      - at: 6m
        states: {{checkout-api-faults: OK, ApiLatencyAlarm3B9C0A11: ALARM, checkout-error-rate-eu-west-1: OK, checkout-high-severity: ALARM, checkout-two-of-three: OK}}
      - at: 8m
        states: {{checkout-api-faults: OK, ApiLatencyAlarm3B9C0A11: OK, checkout-error-rate-eu-west-1: OK, checkout-high-severity: OK, checkout-two-of-three: OK}}
"
        ),
    );
}

#[test]
fn a_yaml_template_with_fn_sub_imports_the_same() {
    check(
        "checkout-stack.template.yaml",
        &options(Some("eu-west-1"), Some("111122223333")),
        r#"
checkout-api-faults: {"metric":{"metric":"Faults","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"Sum","period":"1m","evaluation_periods":3,"datapoints_to_alarm":2,"comparison":"GreaterThanThreshold","threshold":5.0,"treat_missing_data":"breaching"}}
checkout-high-severity: {"composite":"ALARM(\"checkout-api-faults\") OR ALARM(\"checkout-api-faults\")"}
"#,
    );
}

#[test]
fn describe_alarms_output_imports_and_evaluates_like_cloudwatch() {
    let imported = check(
        "describe-alarms.json",
        &options(None, None),
        r#"
checkout-api-faults: {"metric":{"metric":"Faults","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"Sum","period":"1m","evaluation_periods":3,"datapoints_to_alarm":2,"comparison":"GreaterThanThreshold","threshold":5.0,"treat_missing_data":"breaching"}}
checkout-api-latency: {"metric":{"metric":"Latency","labels":{"Service":"checkout","namespace":"Checkout"},"statistic":"TM(:99%)","period":"1m","evaluation_periods":3,"comparison":"GreaterThanOrEqualToThreshold","threshold":250.0,"treat_missing_data":"missing"}}
checkout-high-severity: {"composite":"ALARM(\"checkout-api-faults\") OR ALARM(\"checkout-api-latency\")"}
checkout-most-not-ok: {"composite":"AT_LEAST(50%, NOT_OK, (\"checkout-api-faults\", \"checkout-api-latency\"))"}
skipped `checkout-band`: the threshold is an anomaly-detection band (`ThresholdMetricId`), which Gantry does not model; use an `anomaly` alarm (docs/alarms.md)
skipped `checkout-cross-region`: `arn:aws:cloudwatch:us-east-1:111122223333:alarm:checkout-api-faults` names an alarm in region `us-east-1`; a composite's alarms are in its own region (`eu-west-1`)
skipped `checkout-other-account`: `arn:aws:cloudwatch:eu-west-1:444455556666:alarm:checkout-api-faults` names an alarm of account `444455556666`; the configured account is `111122223333`
skipped `checkout-mixed`: rule `ALARM(checkout-api-faults) OR ALARM(checkout-api-latency) AND ALARM(checkout-band)`: column 59: `AND` after `OR` at column 28: AND and OR cannot be mixed without parentheses, since CloudWatch does not document which binds first; write `(ALARM(checkout-api-faults) OR ALARM(checkout-api-latency)) AND ALARM(checkout-band)` or `ALARM(checkout-api-faults) OR (ALARM(checkout-api-latency) AND ALARM(checkout-band))`
dropped `checkout-api-faults`: `AlarmActions` not imported: a Gantry alarm in ALARM rolls back or blocks, and series carry no units
dropped `checkout-high-severity`: `AlarmActions` not imported: a Gantry alarm in ALARM rolls back or blocks, and series carry no units
"#,
    );
    evaluates(
        &imported.definitions,
        &format!(
            "{RECORDED}      - at: 3m
        states: {{checkout-api-faults: OK, checkout-api-latency: OK, checkout-high-severity: OK, checkout-most-not-ok: OK}}
      - at: 5m
        states: {{checkout-api-faults: ALARM, checkout-api-latency: ALARM, checkout-high-severity: ALARM, checkout-most-not-ok: ALARM}}
      - at: 6m
        states: {{checkout-api-faults: OK, checkout-api-latency: ALARM, checkout-high-severity: ALARM, checkout-most-not-ok: ALARM}}
      - at: 8m
        states: {{checkout-api-faults: OK, checkout-api-latency: OK, checkout-high-severity: OK, checkout-most-not-ok: OK}}
"
        ),
    );
}

#[test]
fn alarms_of_another_account_or_region_than_configured_are_refused() {
    check(
        "describe-alarms.json",
        &options(Some("us-east-1"), None),
        r#"
skipped `checkout-api-faults`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-api-latency`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-band`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-high-severity`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-most-not-ok`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-cross-region`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-other-account`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
skipped `checkout-mixed`: the alarm is in region `eu-west-1`; the configured region is `us-east-1`
"#,
    );
    let imported =
        import(&fixture("describe-alarms.json"), &options(None, Some("444455556666"))).unwrap();
    assert!(imported.definitions.is_empty());
    assert!(
        imported
            .skipped
            .iter()
            .all(|finding| finding.message.contains("configured account is `444455556666`"))
    );
}

#[test]
fn files_of_neither_form_are_refused() {
    let refuse = |text: &str| import(text, &ImportOptions::default()).unwrap_err().to_string();
    assert_eq!(
        refuse("{\"Parameters\": {}}"),
        "not a CloudFormation template (no `Resources`) nor `aws cloudwatch describe-alarms` output (no `MetricAlarms` or `CompositeAlarms`)"
    );
    assert!(refuse("{ not json: [").starts_with("neither JSON ("), "{}", refuse("{ not json: ["));
}

#[test]
fn what_the_alarm_set_would_refuse_is_reported_not_written() {
    let text = r#"{"MetricAlarms": [{"AlarmName": "odd-period", "MetricName": "Faults", "Namespace": "Checkout",
        "Statistic": "Sum", "Period": 45, "EvaluationPeriods": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanThreshold"}],
      "CompositeAlarms": [{"AlarmName": "over-odd", "AlarmRule": "ALARM(\"odd-period\")"},
        {"AlarmName": "loop-a", "AlarmRule": "ALARM(\"loop-b\")"},
        {"AlarmName": "loop-b", "AlarmRule": "ALARM(\"loop-a\")"}]}"#;
    let imported = import(text, &ImportOptions::default()).unwrap();
    assert!(imported.definitions.is_empty(), "{}", render(&imported));
    let skipped: Vec<&str> =
        imported.skipped.iter().map(|finding| finding.alarm.as_str()).collect();
    for alarm in ["odd-period", "over-odd", "loop-a", "loop-b"] {
        assert!(skipped.contains(&alarm), "{}", render(&imported));
    }
    assert!(render(&imported).contains("skipped `odd-period`: `period` is 45s; CloudWatch allows 10s, 20s, 30s or a multiple of 60s"), "{}", render(&imported));
}

/// A metric alarm's properties in a template, named by `name` (an intrinsic function or text).
fn template_alarm(name: &str) -> String {
    format!(
        r#"{{"Type": "AWS::CloudWatch::Alarm", "Properties": {{"AlarmName": {name},
          "MetricName": "Faults", "Namespace": "Checkout", "Statistic": "Sum", "Period": 60,
          "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold"}}}}"#
    )
}

#[test]
fn alarm_names_built_from_each_other_resolve_once_and_a_cycle_falls_back_to_logical_ids() {
    // A and B name each other (CloudFormation would refuse the cycle); C's name is A's and
    // so does not resolve either. In a chain of 40 names each joining the next one twice, each
    // name resolves once, not 2^40 times, and those that would outgrow CloudWatch's longest
    // text are refused rather than built.
    let mut resources = vec![
        format!(r#""A": {}"#, template_alarm(r#"{"Ref": "B"}"#)),
        format!(r#""B": {}"#, template_alarm(r#"{"Fn::Join": ["-", [{"Ref": "A"}, "b"]]}"#)),
        format!(r#""C": {}"#, template_alarm(r#"{"Fn::Sub": "${A}-c"}"#)),
        format!(r#""Chain40": {}"#, template_alarm(r#""end""#)),
    ];
    for link in 0..40 {
        let next = format!(r#"{{"Ref": "Chain{}"}}"#, link + 1);
        let name = format!(r#"{{"Fn::Join": ["|", [{next}, {next}]]}}"#);
        resources.push(format!(r#""Chain{link}": {}"#, template_alarm(&name)));
    }
    let text = format!(r#"{{"Resources": {{{}}}}}"#, resources.join(",\n"));
    let imported = import(&text, &ImportOptions::default()).unwrap();
    let rendered = render(&imported);
    for id in ["A", "B", "C"] {
        assert!(imported.definitions.contains_key(id), "{rendered}");
    }
    assert!(rendered.contains("dropped `A`: `AlarmName` not resolved (the names refer to each other: A → B → A); the alarm is named by its logical ID"), "{rendered}");
    assert!(rendered.contains("dropped `C`: `AlarmName` not resolved"), "{rendered}");
    assert!(rendered.contains("dropped `Chain0`: `AlarmName` not resolved (`Fn::Join` builds a text longer than 10240 characters, CloudWatch's longest alarm rule)"), "{rendered:.3000}");
    assert!(imported.definitions.contains_key("end|end"), "{rendered:.3000}");
    // Names longer than CloudWatch's 255 characters resolve but do not load: reported.
    assert_eq!(imported.definitions.len() + imported.skipped.len(), 4 + 40, "{rendered:.3000}");
    for finding in &imported.skipped {
        assert!(finding.alarm.len() > 255, "{finding:.300}");
    }
}

#[test]
fn two_alarms_of_one_source_under_one_name_import_the_first_and_report_the_second() {
    let text = format!(
        r#"{{"Resources": {{"First": {}, "Second": {}}}}}"#,
        template_alarm(r#""checkout-faults""#),
        template_alarm(r#"{"Fn::Join": ["-", ["checkout", "faults"]]}"#)
    );
    let imported = import(&text, &ImportOptions::default()).unwrap();
    assert_eq!(imported.definitions.len(), 1, "{}", render(&imported));
    assert!(render(&imported).contains("skipped `checkout-faults`: resource `Second` has the same name as resource `First`; alarm names are unique in an account and region, so only the first is imported"), "{}", render(&imported));
    let text = r#"{"MetricAlarms": [], "CompositeAlarms": [
        {"AlarmName": "x", "AlarmRule": "TRUE"}, {"AlarmName": "x", "AlarmRule": "FALSE"}]}"#;
    let imported = import(text, &ImportOptions::default()).unwrap();
    assert_eq!(
        render(&imported),
        "x: {\"composite\":\"TRUE\"}\nskipped `x`: CompositeAlarms[1] has the same name as CompositeAlarms[0]; alarm names are unique in an account and region, so only the first is imported"
    );
}

#[test]
fn metric_math_that_cannot_be_translated_is_reported_not_dropped() {
    let stat = |id: &str, metric: &str, extra: &str| {
        format!(
            r#"{{"Id": "{id}", {extra} "ReturnData": false, "MetricStat": {{"Metric": {{"MetricName": "{metric}",
              "Namespace": "Checkout"}}, "Stat": "Sum", "Period": 60}}}}"#
        )
    };
    let alarm = |name: &str, metrics: &[String]| {
        format!(
            r#"{{"AlarmName": "{name}", "EvaluationPeriods": 1, "Threshold": 1,
              "ComparisonOperator": "GreaterThanThreshold", "Metrics": [{}]}}"#,
            metrics.join(", ")
        )
    };
    let expression =
        |text: &str| format!(r#"{{"Id": "e", "Expression": "{text}", "ReturnData": true}}"#);
    let text = format!(
        r#"{{"MetricAlarms": [{}, {}, {}, {}]}}"#,
        alarm(
            "percent",
            &[stat("m1", "Errors", ""), stat("m2", "Requests", ""), expression("100*m1/m2")]
        ),
        alarm("fill", &[stat("m1", "Errors", ""), expression("FILL(m1, 0)")]),
        alarm(
            "other-account",
            &[
                stat("m1", "Errors", r#""AccountId": "444455556666","#),
                stat("m2", "Requests", ""),
                expression("m1/m2")
            ]
        ),
        alarm(
            "ratio",
            &[stat("m1", "Errors", ""), stat("m2", "Requests", ""), expression("m1/m2")]
        ),
    );
    let imported = import(&text, &ImportOptions::default()).unwrap();
    assert_eq!(
        render(&imported),
        r#"ratio: {"metric":{"metric":"Errors","divide_by":"Requests","labels":{"namespace":"Checkout"},"statistic":"Sum","period":"1m","evaluation_periods":1,"comparison":"GreaterThanThreshold","threshold":1.0,"treat_missing_data":"missing"}}
skipped `percent`: metric math is translated only as one metric divided by another (`m1/m2`, same statistic, period and dimensions): `100*m1/m2` names `100*m1`, which is not one of the metrics
skipped `fill`: metric math is translated only as one metric divided by another (`m1/m2`, same statistic, period and dimensions): `FILL(m1, 0)`
skipped `other-account`: the alarm reads metrics of account `444455556666` (`AccountId`); Gantry reads the series its own scrapes store, so a cross-account alarm is not translated"#
    );
}
