//! An external Prometheus server as a metric source, over its HTTP API (`/api/v1/query` and
//! `/api/v1/query_range`), for teams that already run Prometheus.
//!
//! Each configured [`PrometheusQuery`] names a PromQL expression and the series name and kind
//! Gantry stores its results under. Querying a raw counter (`http_requests_total{job="api"}`)
//! and storing it as a counter gives the same increments, and so the same alarm states, as
//! Gantry's own scraper; `rate(...)` or `histogram_quantile(...)` results are stored as gauges.
//! The result's labels, less `__name__`, become the series' labels.

use serde_json::Value;

use crate::Error;
use crate::fetch::Client;
use crate::series::{Labels, SeriesKind, Store, TimestampMs};

/// Series one query may return. A query that selects more is missing a label matcher, and
/// storing it all would crowd out the series alarms need.
pub const MAX_RESULT_SERIES: usize = 5_000;
/// Points per series in a range query: Prometheus's own limit is 11 000.
pub const MAX_RANGE_POINTS: i64 = 11_000;

/// One expression to fetch, and where to store it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusQuery {
    /// The series name results are stored under.
    pub name: String,
    pub promql: String,
    pub kind: SeriesKind,
}

/// One series of a query result: its labels and `(time, value)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    pub labels: Labels,
    pub points: Vec<(TimestampMs, f64)>,
}

/// A Prometheus server and the queries to run against it.
#[derive(Clone, Debug)]
pub struct PrometheusSource {
    client: Client,
    base_url: String,
    queries: Vec<PrometheusQuery>,
}

impl PrometheusSource {
    /// `base_url` is the server's root, e.g. `http://127.0.0.1:9090`.
    pub fn new(client: Client, base_url: &str, queries: Vec<PrometheusQuery>) -> PrometheusSource {
        PrometheusSource { client, base_url: base_url.trim_end_matches('/').to_string(), queries }
    }

    /// Evaluates `promql` at `time`.
    pub fn instant(&self, promql: &str, time: TimestampMs) -> Result<Vec<ResultSeries>, Error> {
        let time = seconds(time);
        let data = self.call("/api/v1/query", &[("query", promql), ("time", &time)])?;
        parse_result(&data).map_err(|reason| self.error(reason))
    }

    /// Evaluates `promql` from `start` to `end` every `step_ms`.
    pub fn range(
        &self,
        promql: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: i64,
    ) -> Result<Vec<ResultSeries>, Error> {
        if step_ms <= 0 || end < start || (end - start) / step_ms >= MAX_RANGE_POINTS {
            return Err(self.error(format!(
                "a range query needs a positive step and at most {MAX_RANGE_POINTS} points"
            )));
        }
        let step = format!("{}", step_ms as f64 / 1000.0);
        let data = self.call(
            "/api/v1/query_range",
            &[
                ("query", promql),
                ("start", &seconds(start)),
                ("end", &seconds(end)),
                ("step", &step),
            ],
        )?;
        parse_result(&data).map_err(|reason| self.error(reason))
    }

    /// Runs every query at `now` and stores the results at the time Prometheus reports.
    pub fn collect(&self, store: &mut Store, now: TimestampMs) -> Result<usize, Error> {
        let mut stored = 0;
        for query in &self.queries {
            for series in self.instant(&query.promql, now)? {
                stored += store_points(store, query, &series)?;
            }
        }
        Ok(stored)
    }

    /// Fills the store from range queries over `[start, end]`: after a restart, or to evaluate
    /// alarms over history.
    pub fn backfill(
        &self,
        store: &mut Store,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: i64,
    ) -> Result<usize, Error> {
        let mut stored = 0;
        for query in &self.queries {
            for series in self.range(&query.promql, start, end, step_ms)? {
                stored += store_points(store, query, &series)?;
            }
        }
        Ok(stored)
    }

    fn error(&self, reason: String) -> Error {
        Error::Prometheus { url: self.base_url.clone(), reason }
    }

    fn call(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Error> {
        let fetched = self.client.get(&format!("{}{path}", self.base_url), query)?;
        let body: Value = serde_json::from_str(&fetched.body).map_err(|error| {
            self.error(format!("HTTP {}: the answer is not JSON ({error})", fetched.status))
        })?;
        if body["status"] != "success" {
            let kind = body["errorType"].as_str().unwrap_or("unknown");
            let message = body["error"].as_str().unwrap_or("no message");
            return Err(self.error(format!("HTTP {}: {kind} error: {message}", fetched.status)));
        }
        Ok(body["data"].clone())
    }
}

/// Stores one result series; points not newer than what the store holds are skipped (a
/// repeated collect sees the same instant again, a backfill overlaps what was collected).
fn store_points(
    store: &mut Store,
    query: &PrometheusQuery,
    series: &ResultSeries,
) -> Result<usize, Error> {
    let newest = store
        .select(&query.name, &series.labels)
        .find(|candidate| candidate.labels == series.labels)
        .and_then(|candidate| candidate.last_seen());
    let mut stored = 0;
    for &(time, value) in &series.points {
        if newest.is_some_and(|newest| time <= newest) {
            continue;
        }
        store.ingest(&query.name, &series.labels, query.kind, time, value)?;
        stored += 1;
    }
    Ok(stored)
}

/// Prometheus's time parameter: seconds with millisecond decimals.
fn seconds(time: TimestampMs) -> String {
    format!("{:.3}", time as f64 / 1000.0)
}

/// Reads a `vector`, `matrix` or `scalar` result.
fn parse_result(data: &Value) -> Result<Vec<ResultSeries>, String> {
    let point = |pair: &Value| -> Result<(TimestampMs, f64), String> {
        let time = pair[0].as_f64().ok_or("a point's time is not a number")?;
        let text = pair[1].as_str().ok_or("a point's value is not a string")?;
        let value = match text {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => text.parse().map_err(|_| format!("a point's value `{text}` is not a number"))?,
        };
        Ok(((time * 1000.0).round() as TimestampMs, value))
    };
    let labels = |metric: &Value| -> Labels {
        metric
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| *key != "__name__")
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
            .collect()
    };
    let result = &data["result"];
    let series: Vec<ResultSeries> = match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .ok_or("`result` is not a list")?
            .iter()
            .map(|item| {
                Ok(ResultSeries {
                    labels: labels(&item["metric"]),
                    points: vec![point(&item["value"])?],
                })
            })
            .collect::<Result<_, String>>()?,
        Some("matrix") => result
            .as_array()
            .ok_or("`result` is not a list")?
            .iter()
            .map(|item| {
                let points = item["values"]
                    .as_array()
                    .ok_or("`values` is not a list")?
                    .iter()
                    .map(point)
                    .collect::<Result<_, String>>()?;
                Ok(ResultSeries { labels: labels(&item["metric"]), points })
            })
            .collect::<Result<_, String>>()?,
        Some("scalar") => {
            vec![ResultSeries { labels: Labels::new(), points: vec![point(result)?] }]
        }
        other => return Err(format!("unexpected result type {other:?}")),
    };
    if series.len() > MAX_RESULT_SERIES {
        return Err(format!(
            "the query returned {} series, more than {MAX_RESULT_SERIES}: add label matchers",
            series.len()
        ));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, expected: &str) {
        let data: Value = serde_json::from_str(json).unwrap();
        let actual = match parse_result(&data) {
            Ok(series) => series
                .iter()
                .map(|series| format!("{:?} {:?}", series.labels, series.points))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn results_parse() {
        check(
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[1435781451.781,"1"]}]}"#,
            r#"{"job": "api"} [(1435781451781, 1.0)]"#,
        );
        check(
            r#"{"resultType":"matrix","result":[{"metric":{"box":"b1"},"values":[[1.5,"2"],[3,"NaN"]]}]}"#,
            r#"{"box": "b1"} [(1500, 2.0), (3000, NaN)]"#,
        );
        check(r#"{"resultType":"scalar","result":[10,"+Inf"]}"#, "{} [(10000, inf)]");
        check(
            r#"{"resultType":"string","result":[10,"x"]}"#,
            r#"error: unexpected result type Some("string")"#,
        );
        check(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}"#,
            "error: a point's value `one` is not a number",
        );
        assert_eq!(seconds(1_700_000_000_005), "1700000000.005");
    }
}
