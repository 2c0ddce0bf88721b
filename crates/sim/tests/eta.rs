//! What-if ETA on a pipeline with the seed's defaults: one-box bakes of an hour, twelve hours
//! after the first wave, two to four after the later ones, business-hours windows in each
//! region's zone. The seed says such a change reaches every region "in about four or five
//! business days".

use gantry_sim::{eta, scenario};

const SEED_DEFAULTS: &str = r#"{
  "start": "2026-11-23T14:00:00Z", "until": "1h",
  "regions": [
    {"name": "sa-east-1", "time_zone": "America/Sao_Paulo", "zones": 3, "boxes": 10},
    {"name": "us-east-1", "time_zone": "America/New_York", "zones": 3, "boxes": 10},
    {"name": "eu-west-1", "time_zone": "Europe/Dublin", "zones": 3, "boxes": 10},
    {"name": "eu-central-1", "time_zone": "Europe/Berlin", "zones": 3, "boxes": 10},
    {"name": "ap-northeast-1", "time_zone": "Asia/Tokyo", "zones": 3, "boxes": 10},
    {"name": "ap-southeast-2", "time_zone": "Australia/Sydney", "zones": 3, "boxes": 10},
    {"name": "us-west-2", "time_zone": "America/Los_Angeles", "zones": 3, "boxes": 10},
    {"name": "ap-south-1", "time_zone": "Asia/Kolkata", "zones": 3, "boxes": 10}
  ],
  "pipelines": [{
    "name": "checkout-api-code", "gamma": true,
    "waves": [["sa-east-1"], ["us-east-1"], ["eu-west-1", "eu-central-1", "ap-northeast-1"],
              ["ap-southeast-2", "us-west-2"], ["ap-south-1"]],
    "bake": {"one_box": "1h", "zone": "1h", "waves": ["12h", "4h", "4h", "2h", "2h"]},
    "time_windows": {"allow": [{"cron": "0 9 * * MON-FRI", "duration": "8h"}],
                     "exclude_weekdays": ["friday"], "not_after": "16:00"}
  }]
}"#;

#[test]
fn the_seed_defaults_reach_every_region_in_about_four_or_five_business_days() {
    let parsed = scenario::parse(SEED_DEFAULTS).unwrap();
    let world = scenario::world(&parsed).unwrap();
    // The first computation also loads the time-zone database; time the second.
    eta::eta(&world.plans[0], &world.region_zones, parsed.start).unwrap();
    let started = std::time::Instant::now();
    let report = eta::eta(&world.plans[0], &world.region_zones, parsed.start).unwrap();
    let compute = started.elapsed();
    eprintln!(
        "ETA {} from {} to {} in {compute:?} of compute ({} engine steps); stages {:?}; longest waits: {:#?}",
        report.total,
        report.start,
        report.finish,
        report.engine_steps,
        report.stages,
        &report.waits[..report.waits.len().min(5)]
    );
    // Monday 09:00 New York start: done on the fourth or fifth business day.
    assert!((4..=5).contains(&report.business_days), "took {} business days", report.business_days);
    assert_eq!(report.regions.len(), 8, "every region finished: {:?}", report.regions);
    assert!(report.waits.iter().any(|wait| wait.what.contains("TimeWindow")
        || wait.what.contains("local time")
        || wait.what.contains("window")));
}
