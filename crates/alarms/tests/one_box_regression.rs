//! The acceptance case: a latency regression on the one box that the fleet-wide alarm
//! misses is caught by the one-box alarm and by the statistical judge, and a healthy one box is
//! not flagged over many seeded runs (the false-positive rates are printed).

use std::collections::BTreeMap;

use gantry_alarms::AlarmState;
use gantry_alarms::alarm_set::AlarmSet;
use gantry_alarms::judge::{Direction, JudgeConfig, judge_scopes};
use gantry_alarms::series::{Labels, SeriesKind, Store, StoreLimits};
use gantry_model::pipeline::AlarmDefinition;

/// SplitMix64 with Box–Muller: seeded, reproducible latencies.
struct Seeded(u64);

impl Seeded {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 0.5 / (1u64 << 53) as f64
    }
    /// Log-normal around `median`, spread like real request latencies.
    fn latency(&mut self, median: f64) -> f64 {
        let normal =
            (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos();
        median * (0.3 * normal).exp()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const ALARMS: &str = "
fleet_p50_latency:
  metric: {metric: latency_seconds, statistic: p50, period: 1m, evaluation_periods: 5,
           datapoints_to_alarm: 3, comparison: GreaterThanThreshold, threshold: 0.15}
one_box_p50_latency:
  metric: {metric: latency_seconds, labels: {role: one-box}, statistic: p50, period: 1m,
           evaluation_periods: 5, datapoints_to_alarm: 3, comparison: GreaterThanThreshold,
           threshold: 0.15}
";

struct Outcome {
    fleet: AlarmState,
    one_box: AlarmState,
    judge: AlarmState,
}

/// Ten boxes scraped every 10 s for 10 minutes (one sample = that scrape's median latency);
/// the one box's latency is `slowdown` times the others'.
fn run(seed: u64, slowdown: f64) -> Outcome {
    let mut random = Seeded(seed);
    let mut store = Store::new(StoreLimits::default());
    for step in 0..60 {
        for index in 0..10 {
            let role = if index == 0 { "one-box" } else { "fleet" };
            let name = format!("b{index}");
            let key = labels(&[("region", "eu"), ("role", role), ("box", &name)]);
            let median = if index == 0 { 0.1 * slowdown } else { 0.1 };
            store
                .ingest(
                    "latency_seconds",
                    &key,
                    SeriesKind::Gauge,
                    step * 10_000,
                    random.latency(median),
                )
                .unwrap();
        }
    }
    let definitions: BTreeMap<String, AlarmDefinition> = serde_saphyr::from_str(ALARMS).unwrap();
    let mut alarms = AlarmSet::new(&definitions, labels(&[("region", "eu")])).unwrap();
    let now = 600_000;
    alarms.evaluate(&store, now);
    let config = JudgeConfig {
        direction: Direction::Increase,
        allowed_increase: 1.1,
        ..JudgeConfig::default()
    };
    let judgement = judge_scopes(
        &store,
        "latency_seconds",
        &labels(&[("role", "one-box")]),
        &labels(&[("role", "fleet")]),
        0,
        now,
        &config,
    );
    Outcome {
        fleet: alarms.status("fleet_p50_latency").unwrap().state,
        one_box: alarms.status("one_box_p50_latency").unwrap().state,
        judge: judgement.state(),
    }
}

#[test]
fn one_box_regression_is_caught_where_the_fleet_alarm_misses_it() {
    let slow = run(7, 2.0);
    assert_eq!(slow.fleet, AlarmState::Ok, "the fleet-wide alarm misses one slow box of ten");
    assert_eq!(slow.one_box, AlarmState::Alarm);
    assert_eq!(slow.judge, AlarmState::Alarm);

    let runs = 200;
    let (mut alarm_false, mut judge_false, mut alarm_caught, mut judge_caught) = (0, 0, 0, 0);
    for seed in 0..runs {
        let healthy = run(seed, 1.0);
        alarm_false += usize::from(healthy.one_box == AlarmState::Alarm);
        judge_false += usize::from(healthy.judge == AlarmState::Alarm);
        let slow = run(10_000 + seed, 1.5);
        alarm_caught += usize::from(slow.one_box == AlarmState::Alarm);
        judge_caught += usize::from(slow.judge == AlarmState::Alarm);
    }
    let share = |count: usize| count as f64 / runs as f64;
    println!(
        "healthy one box over {runs} seeded runs: one-box alarm false positives {}, judge false positives {}",
        share(alarm_false),
        share(judge_false)
    );
    println!(
        "one box 1.5x slower over {runs} seeded runs: one-box alarm caught {}, judge caught {}",
        share(alarm_caught),
        share(judge_caught)
    );
    assert!(share(judge_false) <= 0.01, "judge false-positive rate {}", share(judge_false));
    assert!(share(alarm_false) <= 0.01, "one-box alarm false-positive rate {}", share(alarm_false));
    assert!(share(judge_caught) >= 0.95, "judge detection rate {}", share(judge_caught));
}
