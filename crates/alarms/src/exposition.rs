//! A parser for Prometheus's text exposition format (0.0.4), with OpenMetrics' `# EOF` and
//! `_total`/`_created` conventions, as scraped from boxes, load balancers and canaries.
//!
//! Written here rather than taken from a crate: the maintained Rust parsers are either stale
//! (`prometheus-parse`, last released 2023, pulls in regex and chrono) or LGPL
//! (`openmetrics-parser`), and the format is small. The parser is strict where a lenient reading
//! could silently change a value (bad escapes, duplicate series, bad numbers are errors with
//! line and column) and bounded by [`ExpositionLimits`].
//!
//! `# TYPE` decides each sample's [`SeriesKind`]: counters, and the `_bucket` and `_count`
//! series of histograms and summaries, are counters; everything else is a gauge. A `_sum` is a
//! gauge, since negative observations make it fall (OpenMetrics allows them), and a gauge
//! histogram's `_bucket`, `_gcount` and `_gsum` are gauges, since its buckets may drop.
//!
//! Values no metric can have are refused, as the OpenMetrics reference parser refuses them,
//! naming the series: a negative summary quantile, a quantile label outside [0, 1], histogram
//! buckets that decrease as `le` grows, and a `_count` other than the `+Inf` bucket.
//!
//! Timestamps: the 0.0.4 text format writes integer milliseconds; an OpenMetrics exposition
//! (one that ends with `# EOF`) writes seconds, integer or not.

use std::collections::{HashMap, HashSet};

use crate::series::{Labels, SeriesKind, format_series};

/// Limits on one exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpositionLimits {
    /// Samples in one exposition. A box exposing more is exposing per-request labels.
    pub max_samples: usize,
    /// Labels on one sample; Prometheus's own default `label_limit` is unlimited, but a series
    /// with more than this is not something an alarm selects.
    pub max_labels: usize,
    /// Characters in one line, so a corrupt body cannot make one label value huge.
    pub max_line_chars: usize,
}

/// 20 000 samples: a box with 2 000 histogram buckets across its endpoints, tenfold.
pub const DEFAULT_MAX_SAMPLES: usize = 20_000;
/// 64 labels per sample.
pub const DEFAULT_MAX_LABELS: usize = 64;
/// 16 KiB per line.
pub const DEFAULT_MAX_LINE_CHARS: usize = 16 * 1024;

impl Default for ExpositionLimits {
    fn default() -> Self {
        ExpositionLimits {
            max_samples: DEFAULT_MAX_SAMPLES,
            max_labels: DEFAULT_MAX_LABELS,
            max_line_chars: DEFAULT_MAX_LINE_CHARS,
        }
    }
}

/// One parsed sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    /// The exposition's own timestamp in milliseconds, if it gave one.
    pub timestamp: Option<i64>,
    pub kind: SeriesKind,
}

/// Why an exposition was refused: the 1-based line and column, and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ExpositionError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Other,
}

/// Parses a whole exposition; the first error refuses it all.
pub fn parse(text: &str, limits: &ExpositionLimits) -> Result<Vec<Sample>, ExpositionError> {
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut samples = Vec::new();
    let open_metrics = is_open_metrics(text);
    // Where each sample was, to report duplicates after the loop without cloning keys.
    let mut positions: Vec<(usize, usize)> = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let fail =
            |column: usize, message: String| ExpositionError { line: line_number, column, message };
        if line.chars().count() > limits.max_line_chars {
            return Err(fail(
                limits.max_line_chars + 1,
                format!("the line is longer than {} characters", limits.max_line_chars),
            ));
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("EOF") => break,
                Some("TYPE") => {
                    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                        return Err(fail(1, "expected `# TYPE <metric> <type>`".to_string()));
                    };
                    let family = match kind {
                        "counter" => Family::Counter,
                        "gauge" => Family::Gauge,
                        "histogram" => Family::Histogram,
                        "gaugehistogram" => Family::GaugeHistogram,
                        "summary" => Family::Summary,
                        "untyped" | "unknown" | "info" | "stateset" => Family::Other,
                        other => {
                            return Err(fail(
                                line.len() - trimmed.len() + trimmed.find(other).unwrap_or(0) + 1,
                                format!(
                                    "unknown metric type `{other}`: expected counter, gauge, \
                                     histogram, summary or untyped"
                                ),
                            ));
                        }
                    };
                    families.insert(name.to_string(), family);
                }
                _ => {}
            }
            continue;
        }
        let offset = line.chars().count() - trimmed.chars().count();
        let mut sample =
            parse_sample(trimmed, limits, open_metrics).map_err(|(column, message)| {
                ExpositionError { line: line_number, column: offset + column, message }
            })?;
        sample.kind = kind_of(&sample.name, &families);
        if samples.len() == limits.max_samples {
            return Err(fail(
                1,
                format!(
                    "more than {} samples in one exposition: the target probably puts \
                     unbounded values (ids, paths) in labels",
                    limits.max_samples
                ),
            ));
        }
        samples.push(sample);
        positions.push((line_number, offset + 1));
    }
    let mut seen: HashSet<(&str, &Labels)> = HashSet::with_capacity(samples.len());
    for (sample, (line, column)) in samples.iter().zip(&positions) {
        if !seen.insert((&sample.name, &sample.labels)) {
            return Err(ExpositionError {
                line: *line,
                column: *column,
                message: format!(
                    "duplicate series {}: each series appears once per exposition",
                    format_series(&sample.name, &sample.labels)
                ),
            });
        }
    }
    check_values(&samples, &positions, &families)?;
    Ok(samples)
}

/// An OpenMetrics exposition ends with `# EOF` (optionally followed by nothing but blank lines).
fn is_open_metrics(text: &str) -> bool {
    text.lines().rev().map(|line| line.trim_end_matches('\r')).find(|line| !line.trim().is_empty())
        == Some("# EOF")
}

/// One histogram bucket: its `le` bound, its value and the sample's index.
type Bucket = (f64, f64, usize);

/// Refuses values no histogram or summary can have, naming the series and its line.
fn check_values(
    samples: &[Sample],
    positions: &[(usize, usize)],
    families: &HashMap<String, Family>,
) -> Result<(), ExpositionError> {
    let refuse = |index: usize, message: String| {
        let (line, column) = positions[index];
        ExpositionError { line, column, message }
    };
    // Buckets of each histogram series (family and labels other than `le`): (le, value, index).
    let mut buckets: HashMap<(&str, Labels), Vec<Bucket>> = HashMap::new();
    let mut counts: HashMap<(&str, Labels), (f64, usize)> = HashMap::new();
    for (index, sample) in samples.iter().enumerate() {
        let series = || format_series(&sample.name, &sample.labels);
        if families.get(sample.name.as_str()) == Some(&Family::Summary)
            && let Some(quantile) = sample.labels.get("quantile")
        {
            match parse_value(quantile) {
                Some(q) if (0.0..=1.0).contains(&q) => {}
                _ => {
                    return Err(refuse(
                        index,
                        format!(
                            "summary {}: quantile `{quantile}` is not between 0 and 1",
                            series()
                        ),
                    ));
                }
            }
            if sample.value < 0.0 {
                return Err(refuse(
                    index,
                    format!(
                        "summary {}: a quantile of {} is impossible; quantiles of a summary are \
                         never negative",
                        series(),
                        sample.value
                    ),
                ));
            }
        }
        for (suffix, count_suffix) in
            [("_bucket", None), ("_count", Some(false)), ("_gcount", Some(true))]
        {
            let Some(base) = sample.name.strip_suffix(suffix) else { continue };
            let family = families.get(base).copied();
            if !matches!(family, Some(Family::Histogram | Family::GaugeHistogram)) {
                continue;
            }
            match count_suffix {
                None => {
                    let mut labels = sample.labels.clone();
                    let Some(le) = labels.remove("le") else {
                        return Err(refuse(
                            index,
                            format!("histogram bucket {} has no `le` label", series()),
                        ));
                    };
                    let Some(bound) = parse_value(&le).filter(|bound| !bound.is_nan()) else {
                        return Err(refuse(
                            index,
                            format!("histogram bucket {}: `le` is `{le}`, not a number", series()),
                        ));
                    };
                    buckets.entry((base, labels)).or_default().push((bound, sample.value, index));
                }
                Some(gauge) => {
                    if gauge == (family == Some(Family::GaugeHistogram)) {
                        counts.insert((base, sample.labels.clone()), (sample.value, index));
                    }
                }
            }
        }
    }
    let mut keys: Vec<&(&str, Labels)> = buckets.keys().collect();
    keys.sort_by_key(|key| buckets[*key][0].2);
    for key in keys {
        let mut series = buckets[key].clone();
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in series.windows(2) {
            let ((low_le, low, _), (high_le, high, index)) = (pair[0], pair[1]);
            if high < low {
                return Err(refuse(
                    index,
                    format!(
                        "histogram {}: bucket le={} holds {high}, fewer than bucket le={} with \
                         {low}; buckets are cumulative and never decrease as `le` grows",
                        format_series(key.0, &key.1),
                        format_bound(high_le),
                        format_bound(low_le),
                    ),
                ));
            }
        }
        if let Some(&(infinite, value, _)) = series.last()
            && infinite == f64::INFINITY
            && let Some(&(count, count_index)) = counts.get(key)
            && count != value
            && !(count.is_nan() && value.is_nan())
        {
            return Err(refuse(
                count_index,
                format!(
                    "histogram {}: the count is {count} but the +Inf bucket holds {value}; they \
                     count the same observations and must agree",
                    format_series(key.0, &key.1),
                ),
            ));
        }
    }
    Ok(())
}

fn format_bound(bound: f64) -> String {
    if bound == f64::INFINITY { "+Inf".to_string() } else { bound.to_string() }
}

fn kind_of(name: &str, families: &HashMap<String, Family>) -> SeriesKind {
    let family_of = |base: &str| families.get(base).copied();
    if let Some(family) = family_of(name) {
        return match family {
            Family::Counter => SeriesKind::Counter,
            _ => SeriesKind::Gauge,
        };
    }
    for suffix in ["_total", "_created"] {
        if let Some(base) = name.strip_suffix(suffix)
            && family_of(base) == Some(Family::Counter)
        {
            return if suffix == "_total" { SeriesKind::Counter } else { SeriesKind::Gauge };
        }
    }
    for suffix in ["_bucket", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(family_of(base), Some(Family::Histogram | Family::Summary))
        {
            return SeriesKind::Counter;
        }
    }
    // `_sum` may fall (negative observations) and a gauge histogram's series may drop: gauges.
    SeriesKind::Gauge
}

/// Parses `name{labels} value [timestamp]`; errors carry a 1-based column within `line`.
fn parse_sample(
    line: &str,
    limits: &ExpositionLimits,
    open_metrics: bool,
) -> Result<Sample, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut position = 0;
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if !chars.first().is_some_and(|c| is_name_start(*c)) {
        return Err((1, format!("expected a metric name, found {}", describe(&chars, 0))));
    }
    while chars.get(position).is_some_and(|c| is_name_char(*c)) {
        position += 1;
    }
    let name: String = chars[..position].iter().collect();
    let mut labels = Labels::new();
    if chars.get(position) == Some(&'{') {
        let open = position + 1;
        position += 1;
        loop {
            skip_blanks(&chars, &mut position);
            if chars.get(position) == Some(&'}') {
                position += 1;
                break;
            }
            let start = position;
            if !chars.get(position).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') {
                return Err((
                    position + 1,
                    format!(
                        "expected a label name or `}}` to close `{{` at column {open}, found {}",
                        describe(&chars, position)
                    ),
                ));
            }
            while chars.get(position).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                position += 1;
            }
            let label: String = chars[start..position].iter().collect();
            skip_blanks(&chars, &mut position);
            if chars.get(position) != Some(&'=') {
                return Err((
                    position + 1,
                    format!(
                        "expected `=` after label `{label}`, found {}",
                        describe(&chars, position)
                    ),
                ));
            }
            position += 1;
            skip_blanks(&chars, &mut position);
            if chars.get(position) != Some(&'"') {
                return Err((
                    position + 1,
                    format!(
                        "expected `\"` to open the value of label `{label}`, found {}",
                        describe(&chars, position)
                    ),
                ));
            }
            let quote = position + 1;
            position += 1;
            let mut value = String::new();
            loop {
                match chars.get(position) {
                    None => {
                        return Err((
                            position + 1,
                            format!("expected `\"` to close the value opened at column {quote}"),
                        ));
                    }
                    Some('"') => break,
                    Some('\\') => {
                        match chars.get(position + 1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => {
                                return Err((
                                    position + 1,
                                    "unknown escape: label values allow `\\\\`, `\\\"` and `\\n`"
                                        .to_string(),
                                ));
                            }
                        }
                        position += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        position += 1;
                    }
                }
            }
            position += 1;
            if labels.insert(label.clone(), value).is_some() {
                return Err((start + 1, format!("label `{label}` appears twice")));
            }
            if labels.len() > limits.max_labels {
                return Err((
                    start + 1,
                    format!("more than {} labels on one sample", limits.max_labels),
                ));
            }
            skip_blanks(&chars, &mut position);
            match chars.get(position) {
                Some(',') => position += 1,
                Some('}') => {}
                _ => {
                    return Err((
                        position + 1,
                        format!(
                            "expected `,` or `}}` to close `{{` at column {open}, found {}",
                            describe(&chars, position)
                        ),
                    ));
                }
            }
        }
    }
    if !chars.get(position).is_some_and(|c| *c == ' ' || *c == '\t') {
        return Err((
            position + 1,
            format!(
                "expected a space and a value after the series, found {}",
                describe(&chars, position)
            ),
        ));
    }
    let rest: String = chars[position..].iter().collect();
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().unwrap_or_default();
    let value_column = position + 1 + rest.find(value_text).unwrap_or(0);
    let value = parse_value(value_text).ok_or_else(|| {
        (value_column, format!("expected a number, `NaN`, `+Inf` or `-Inf`, found `{value_text}`"))
    })?;
    // OpenMetrics may end a sample with an exemplar, `# {trace_id="..."} 0.67`: not needed for
    // alarms, so everything from a `#` token on is skipped.
    let mut fields = fields.take_while(|field| !field.starts_with('#'));
    let timestamp = match fields.next() {
        None => None,
        Some(text) => {
            let column = position + 1 + rest.rfind(text).unwrap_or(0);
            // The 0.0.4 format writes integer milliseconds; OpenMetrics writes seconds, with or
            // without a fraction. The scraper stores samples at the scrape's time anyway; the
            // timestamp is kept for other readers.
            let seconds = |text: &str| {
                text.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| (s * 1000.0).round() as i64)
            };
            let millis = if open_metrics {
                seconds(text)
            } else {
                text.parse::<i64>().ok().or_else(|| seconds(text))
            };
            match millis {
                Some(millis) => Some(millis),
                None => return Err((column, format!("expected a timestamp, found `{text}`"))),
            }
        }
    };
    if let Some(extra) = fields.next() {
        let column = position + 1 + rest.rfind(extra).unwrap_or(0);
        return Err((column, format!("expected end of line after the value, found `{extra}`")));
    }
    Ok(Sample { name, labels, value, timestamp, kind: SeriesKind::Gauge })
}

fn skip_blanks(chars: &[char], position: &mut usize) {
    while chars.get(*position).is_some_and(|c| *c == ' ' || *c == '\t') {
        *position += 1;
    }
}

fn describe(chars: &[char], position: usize) -> String {
    match chars.get(position) {
        None => "end of line".to_string(),
        Some(c) => format!("`{c}`"),
    }
}

/// Go's `ParseFloat` as Prometheus uses it: decimals, exponents, `NaN`, `±Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" | "nan" => return Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if body.chars().any(|c| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and prints each sample as `kind name{labels} value [@timestamp]`, one a
    /// line, or the error.
    #[track_caller]
    fn check(text: &str, expected: &str) {
        let actual = match parse(text, &ExpositionLimits::default()) {
            Ok(samples) => samples
                .iter()
                .map(|sample| {
                    let kind = match sample.kind {
                        SeriesKind::Counter => "counter",
                        SeriesKind::Gauge => "gauge",
                    };
                    let mut line = format!(
                        "{kind} {} {}",
                        format_series(&sample.name, &sample.labels),
                        sample.value
                    );
                    if let Some(timestamp) = sample.timestamp {
                        line.push_str(&format!(" @{timestamp}"));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn prometheus_text_format() {
        check(
            r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#,
            r#"counter http_requests_total{code="200",method="post"} 1027 @1395066363000
counter http_requests_total{code="400",method="post"} 3 @1395066363000
gauge msdos_file_access_time_seconds{error="Cannot find file:\n\"FILE.TXT\"",path="C:\\DIR\\FILE.TXT"} 1458255915
gauge metric_without_timestamp_and_labels 12.47
gauge something_weird{problem="division by zero"} inf @-3982045
counter http_request_duration_seconds_bucket{le="0.05"} 24054
counter http_request_duration_seconds_bucket{le="+Inf"} 144320
gauge http_request_duration_seconds_sum 53423
counter http_request_duration_seconds_count 144320
gauge rpc_duration_seconds{quantile="0.99"} 76656
gauge rpc_duration_seconds_sum 17560473
counter rpc_duration_seconds_count 2693"#,
        );
    }

    #[test]
    fn openmetrics_conventions() {
        check(
            "# TYPE requests counter\nrequests_total{a=\"b\",} 5\nrequests_created 1.7e9\n# EOF\nignored 1\n",
            "counter requests_total{a=\"b\"} 5\ngauge requests_created 1700000000",
        );
        check("up 1 1700000000.5\r\n", "gauge up 1 @1700000000500");
        check(
            "# TYPE rpc counter\nrpc_total 17 # {trace_id=\"abc\"} 0.67 1700000000\nrpc_created 5 1 #x",
            "counter rpc_total 17\ngauge rpc_created 5 @1",
        );
        check(
            "x NaN\ny -Inf\nz 0x10",
            "error: line 3, column 3: expected a number, `NaN`, `+Inf` or `-Inf`, found `0x10`",
        );
    }

    #[test]
    fn open_metrics_timestamps_are_seconds() {
        check("a 1 1700000000\n# EOF\n", "gauge a 1 @1700000000000");
        check("a 1 1700000000.25\n# EOF", "gauge a 1 @1700000000250");
        // The 0.0.4 text format (no `# EOF`) writes integer milliseconds.
        check("a 1 1700000000\n", "gauge a 1 @1700000000");
    }

    #[test]
    fn sums_may_fall_and_gauge_histograms_are_gauges() {
        check(
            "# TYPE t histogram\nt_bucket{le=\"0\"} 3\nt_bucket{le=\"+Inf\"} 4\nt_sum -2.5\nt_count 4\n\
             # TYPE s summary\ns_sum -7\ns_count 2\n\
             # TYPE q gaugehistogram\nq_bucket{le=\"1\"} 2\nq_bucket{le=\"+Inf\"} 5\nq_gcount 5\nq_gsum 3\n# EOF\n",
            "counter t_bucket{le=\"0\"} 3\ncounter t_bucket{le=\"+Inf\"} 4\ngauge t_sum -2.5\ncounter t_count 4\n\
             gauge s_sum -7\ncounter s_count 2\n\
             gauge q_bucket{le=\"1\"} 2\ngauge q_bucket{le=\"+Inf\"} 5\ngauge q_gcount 5\ngauge q_gsum 3",
        );
    }

    #[test]
    fn impossible_histogram_and_summary_values_are_refused() {
        check(
            "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc{quantile=\"0.99\"} -1\n",
            "error: line 3, column 1: summary rpc{quantile=\"0.99\"}: a quantile of -1 is impossible; quantiles of a summary are never negative",
        );
        check(
            "# TYPE rpc summary\nrpc{quantile=\"1.5\"} 1\n",
            "error: line 2, column 1: summary rpc{quantile=\"1.5\"}: quantile `1.5` is not between 0 and 1",
        );
        check(
            "# TYPE h histogram\nh_bucket{le=\"+Inf\",x=\"a\"} 9\nh_bucket{le=\"1\",x=\"a\"} 10\nh_count{x=\"a\"} 9\n",
            "error: line 2, column 1: histogram h{x=\"a\"}: bucket le=+Inf holds 9, fewer than bucket le=1 with 10; buckets are cumulative and never decrease as `le` grows",
        );
        check(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 9\nh_count 8\n",
            "error: line 4, column 1: histogram h: the count is 8 but the +Inf bucket holds 9; they count the same observations and must agree",
        );
        check(
            "# TYPE h histogram\nh_bucket{le=\"soon\"} 3\n",
            "error: line 2, column 1: histogram bucket h_bucket{le=\"soon\"}: `le` is `soon`, not a number",
        );
        // A gauge histogram's count is `_gcount`; decreasing buckets are refused there too.
        check(
            "# TYPE g gaugehistogram\ng_bucket{le=\"1\"} 3\ng_bucket{le=\"+Inf\"} 4\ng_gcount 5\n",
            "error: line 4, column 1: histogram g: the count is 5 but the +Inf bucket holds 4; they count the same observations and must agree",
        );
    }

    #[test]
    fn errors_say_where() {
        check("1abc 1", "error: line 1, column 1: expected a metric name, found `1`");
        check(
            "a{b=\"c\" 1",
            "error: line 1, column 9: expected `,` or `}` to close `{` at column 2, found `1`",
        );
        check(
            "a{b=\"c} 1",
            "error: line 1, column 10: expected `\"` to close the value opened at column 5",
        );
        check(
            "a{b=c} 1",
            "error: line 1, column 5: expected `\"` to open the value of label `b`, found `c`",
        );
        check("a{b} 1", "error: line 1, column 4: expected `=` after label `b`, found `}`");
        check(
            "a{b=\"\\t\"} 1",
            "error: line 1, column 6: unknown escape: label values allow `\\\\`, `\\\"` and `\\n`",
        );
        check("a{b=\"1\",b=\"2\"} 1", "error: line 1, column 9: label `b` appears twice");
        check(
            "a",
            "error: line 1, column 2: expected a space and a value after the series, found end of line",
        );
        check(
            "a 1 2 3",
            "error: line 1, column 7: expected end of line after the value, found `3`",
        );
        check("a 1 soon", "error: line 1, column 5: expected a timestamp, found `soon`");
        check(
            "ok 1\na{x=\"1\"} 1\na{x=\"1\"} 2",
            "error: line 3, column 1: duplicate series a{x=\"1\"}: each series appears once per exposition",
        );
        check(
            "# TYPE a countr\n",
            "error: line 1, column 10: unknown metric type `countr`: expected counter, gauge, histogram, summary or untyped",
        );
        check("  a{} 1", "gauge a 1");
        check(
            "a{} 1x",
            "error: line 1, column 5: expected a number, `NaN`, `+Inf` or `-Inf`, found `1x`",
        );
    }

    #[test]
    fn limits_hold() {
        let limits = ExpositionLimits { max_samples: 2, max_labels: 2, max_line_chars: 20 };
        let refuse = |text: &str| parse(text, &limits).unwrap_err().to_string();
        assert_eq!(
            refuse("a 1\nb 1\nc 1"),
            "line 3, column 1: more than 2 samples in one exposition: the target probably puts unbounded values (ids, paths) in labels"
        );
        assert_eq!(
            refuse("a{x=\"1\",y=\"2\",z=\"3\"} 1"),
            "line 1, column 21: the line is longer than 20 characters"
        );
        assert_eq!(
            refuse("a{x=\"1\",y=\"2\",z=\"\"}1"),
            "line 1, column 15: more than 2 labels on one sample"
        );
    }

    /// Writes a sample as Prometheus's client libraries do, escaping label values.
    fn render(name: &str, labels: &Labels, value: f64) -> String {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(key, value)| {
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                format!("{key}=\"{escaped}\"")
            })
            .collect();
        format!("{name}{{{}}} {value:?}\n", pairs.join(","))
    }

    proptest::proptest! {
        /// Whatever a client library writes, the parser reads back: names, any label values
        /// (quotes, backslashes, newlines, non-ASCII), any finite value.
        #[test]
        fn rendered_samples_parse_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}|[\"\\\\\n]{1,3}", 0..5),
            value in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
        ) {
            let text = render(&name, &labels, value);
            let samples = parse(&text, &ExpositionLimits::default()).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{e} in {text:?}"))
            })?;
            proptest::prop_assert_eq!(samples.len(), 1);
            proptest::prop_assert_eq!(&samples[0].name, &name);
            proptest::prop_assert_eq!(&samples[0].labels, &labels);
            proptest::prop_assert_eq!(samples[0].value, value);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,300}") {
            let _ = parse(&text, &ExpositionLimits::default());
        }

        #[test]
        fn parse_never_panics_on_exposition_like_text(
            text in "([a-z_]{1,5}(\\{([a-z]{1,3}=\"([a-z\\\\\"n ]{0,4})\",?){0,3}\\})? (-?[0-9.e+]{1,6}|NaN|\\+Inf)( -?[0-9]{1,5})?\n|# (TYPE|HELP) [a-z]{1,3} [a-z]{1,8}\n){0,6}"
        ) {
            let _ = parse(&text, &ExpositionLimits::default());
        }
    }
}
