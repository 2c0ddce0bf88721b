//! Gantry's histogram quantiles against Prometheus's own `histogram_quantile`: seeded random
//! histograms, Gantry's answers written as `promtool test rules` expectations, and promtool must
//! agree. Needs `promtool` on PATH (Debian's `prometheus` package); skipped without it unless
//! `GANTRY_REQUIRE_PROMETHEUS=1`.

use std::fmt::Write as _;
use std::path::PathBuf;

use gantry_alarms::statistic::histogram_quantile;

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

/// A small seeded generator (SplitMix64).
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

#[test]
fn histogram_quantiles_match_prometheus() {
    let Some(promtool) = find_on_path("promtool") else {
        if std::env::var("GANTRY_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "GANTRY_REQUIRE_PROMETHEUS=1 but `promtool` is not on PATH (apt-get install prometheus)"
            );
        }
        eprintln!(
            "skipped: `promtool` is not on PATH; set GANTRY_REQUIRE_PROMETHEUS=1 to require it"
        );
        return;
    };
    let bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    let quantiles = [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999];
    let mut random = Seeded(42);
    let mut test = String::from("rule_files: []\nevaluation_interval: 1m\ntests:\n");
    let mut cases = 0;
    for _ in 0..20 {
        // Cumulative counts; some buckets empty, some histograms nearly all in one bucket.
        let mut running = 0u64;
        let counts: Vec<u64> = bounds
            .iter()
            .map(|_| {
                running += if random.below(4) == 0 { 0 } else { random.below(200) };
                running
            })
            .collect();
        if running == 0 {
            continue;
        }
        let _ = writeln!(test, "  - interval: 1m\n    input_series:");
        for (bound, count) in bounds.iter().zip(&counts) {
            let _ =
                writeln!(test, "      - series: 'h{{le=\"{bound}\"}}'\n        values: '{count}'");
        }
        let _ = writeln!(test, "    promql_expr_test:");
        for q in quantiles {
            let mut buckets: Vec<(f64, f64)> = bounds
                .iter()
                .zip(&counts)
                .map(|(bound, count)| {
                    let bound =
                        if *bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap() };
                    (bound, *count as f64)
                })
                .collect();
            let expected = histogram_quantile(q, &mut buckets).unwrap();
            let _ = writeln!(
                test,
                "      - expr: histogram_quantile({q}, h)\n        eval_time: 0m\n        exp_samples:\n          - labels: '{{}}'\n            value: {expected:e}"
            );
            cases += 1;
        }
    }
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("quantiles.yml");
    std::fs::write(&file, &test).unwrap();
    let output =
        std::process::Command::new(promtool).args(["test", "rules"]).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "promtool disagrees with Gantry on some of {cases} quantiles:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("promtool agrees on {cases} histogram quantiles");
}
