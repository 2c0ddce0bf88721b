//! Capacity arithmetic: CodeDeploy's minimum-healthy-hosts rules, exactly.
//!
//! This module owns the numbers only: the floor of a target, how many boxes a batch may take
//! now, and whether a finished deployment succeeded. Which boxes count as healthy is decided in
//! [`crate::fleet`]; when to apply these numbers is decided in [`crate::engine`].
//!
//! The rules (CodeDeploy user guide, "Minimum healthy instances and deployments"):
//! - a `FLEET_PERCENT` floor is converted to a count of boxes, rounding fractional boxes *up*;
//! - a deployment never takes the healthy count below the floor; if the target already starts
//!   below it, nothing healthy is taken at all;
//! - concurrency is the most boxes that can be taken without crossing the floor (capped here by
//!   the strategy's batch size, a `FLEET_PERCENT` batch rounding *down*, at least one box);
//! - a floor that leaves no box to take fails the deployment before anything is deployed;
//! - success needs at least the floor's count of boxes on the new artifact, and at least one.

use gantry_model::pipeline::{HostCount, HostCountKind};

/// The smallest number of healthy boxes a target of `fleet` boxes may have during a deployment.
pub fn minimum_healthy(rule: HostCount, fleet: u32) -> u32 {
    match rule.kind {
        HostCountKind::HostCount => rule.value,
        HostCountKind::FleetPercent => {
            (u64::from(rule.value) * u64::from(fleet)).div_ceil(100).min(u64::from(u32::MAX)) as u32
        }
    }
}

/// The largest number of boxes a batch may hold at once: a percentage rounds down, never below 1.
pub fn batch_limit(rule: HostCount, fleet: u32) -> u32 {
    let boxes = match rule.kind {
        HostCountKind::HostCount => rule.value,
        HostCountKind::FleetPercent => (u64::from(rule.value) * u64::from(fleet) / 100) as u32,
    };
    boxes.max(1)
}

/// Whether a deployment to `fleet` boxes with this floor can ever take a healthy box.
/// CodeDeploy fails such a deployment at once (`HEALTH_CONSTRAINTS_INVALID`).
pub fn floor_allows_progress(floor: u32, fleet: u32) -> bool {
    fleet > floor
}

/// How many *healthy* boxes may be taken out of service now.
///
/// `healthy` counts boxes in service and healthy (boxes already commanded are not healthy);
/// `in_flight` counts boxes of this deployment still being replaced. Taking an unhealthy box
/// costs no capacity, so callers take those first and count them in `in_flight` only.
pub fn healthy_boxes_to_take(healthy: u32, floor: u32, in_flight: u32, batch: u32) -> u32 {
    let room_in_batch = batch.saturating_sub(in_flight);
    let room_above_floor = healthy.saturating_sub(floor);
    room_in_batch.min(room_above_floor)
}

/// Whether a deployment in which every box has been attempted succeeded.
pub fn succeeded(boxes_on_artifact: u32, floor: u32) -> bool {
    boxes_on_artifact >= floor.max(1)
}

#[cfg(test)]
mod tests {
    //! CodeDeploy's worked examples, replayed box by box through the same functions the engine
    //! uses. `check` runs a one-target deployment where `failing` boxes (1-based, in deployment
    //! order) fail their install, and compares the batches taken and the outcome.
    use super::*;

    /// Replays a deployment of `fleet` healthy boxes, one batch per round, every box in a batch
    /// finishing before the next round (the slowest schedule CodeDeploy allows).
    fn replay(
        fleet: u32,
        rule: HostCount,
        batch: HostCount,
        failing: &[u32],
    ) -> (Vec<u32>, &'static str) {
        let floor = minimum_healthy(rule, fleet);
        if !floor_allows_progress(floor, fleet) {
            return (vec![], "failed before deploying: HEALTH_CONSTRAINTS_INVALID");
        }
        let batch = batch_limit(batch, fleet);
        let mut healthy = fleet;
        let mut next_box = 1;
        let mut on_artifact = 0;
        let mut batches = vec![];
        while next_box <= fleet {
            let take = healthy_boxes_to_take(healthy, floor, 0, batch).min(fleet - next_box + 1);
            if take == 0 {
                return (batches, "failed: the floor leaves no box to take");
            }
            batches.push(take);
            healthy -= take;
            for number in next_box..next_box + take {
                if !failing.contains(&number) {
                    healthy += 1;
                    on_artifact += 1;
                }
            }
            next_box += take;
        }
        (
            batches,
            if succeeded(on_artifact, floor) {
                "succeeded"
            } else {
                "failed: too few boxes succeeded"
            },
        )
    }

    fn check(
        fleet: u32,
        rule: HostCount,
        batch: HostCount,
        failing: &[u32],
        expected: (&[u32], &str),
    ) {
        let (batches, outcome) = replay(fleet, rule, batch, failing);
        assert_eq!(
            (batches.as_slice(), outcome),
            expected,
            "{fleet} boxes, minimum healthy {rule:?}, batch {batch:?}, failing {failing:?}"
        );
    }

    const ALL: HostCount = HostCount::percent(100);

    #[test]
    fn codedeploy_worked_examples() {
        // HalfAtATime on 9 boxes: batches of 4, success needs 5.
        check(9, HostCount::percent(50), ALL, &[], (&[4, 4, 1], "succeeded"));
        assert_eq!(minimum_healthy(HostCount::percent(50), 9), 5);
        // HOST_COUNT 6 on 9: up to 3 at a time, success needs 6.
        check(9, HostCount::hosts(6), ALL, &[], (&[3, 3, 3], "succeeded"));
        check(9, HostCount::hosts(6), ALL, &[7, 8, 9], (&[3, 3, 3], "succeeded"));
        check(9, HostCount::hosts(6), ALL, &[1], (&[3, 2, 2, 2], "succeeded"));
        // FLEET_PERCENT 40 on 9: floor rounds up to 4, so up to 5 at a time.
        assert_eq!(minimum_healthy(HostCount::percent(40), 9), 4);
        check(9, HostCount::percent(40), ALL, &[], (&[5, 4], "succeeded"));
        // 10 boxes, 95%: rounds up to 10, fails without deploying anything.
        check(
            10,
            HostCount::percent(95),
            ALL,
            &[],
            (&[], "failed before deploying: HEALTH_CONSTRAINTS_INVALID"),
        );
        // 10 boxes, minimum 9: one at a time; a failure fails it unless on the last box.
        check(10, HostCount::hosts(9), ALL, &[], (&[1; 10], "succeeded"));
        check(10, HostCount::hosts(9), ALL, &[10], (&[1; 10], "succeeded"));
        check(
            10,
            HostCount::hosts(9),
            ALL,
            &[4],
            (&[1, 1, 1, 1], "failed: the floor leaves no box to take"),
        );
        // 10 boxes, minimum 8: two at a time; two failures fail it unless the second is last.
        check(10, HostCount::hosts(8), ALL, &[], (&[2, 2, 2, 2, 2], "succeeded"));
        check(10, HostCount::hosts(8), ALL, &[3], (&[2, 2, 1, 1, 1, 1, 1, 1], "succeeded"));
        check(10, HostCount::hosts(8), ALL, &[3, 10], (&[2, 2, 1, 1, 1, 1, 1, 1], "succeeded"));
        check(
            10,
            HostCount::hosts(8),
            ALL,
            &[3, 5],
            (&[2, 2, 1], "failed: the floor leaves no box to take"),
        );
        // 10 boxes, minimum 0: all at once; at least one success is required.
        check(10, HostCount::hosts(0), ALL, &[], (&[10], "succeeded"));
        check(10, HostCount::hosts(0), ALL, &[1, 2, 3, 4, 5, 6, 7, 8, 9], (&[10], "succeeded"));
        check(
            10,
            HostCount::hosts(0),
            ALL,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            (&[10], "failed: too few boxes succeeded"),
        );
        // 10 boxes, 85%: rounds up to 9, so one failure fails the deployment.
        check(
            10,
            HostCount::percent(85),
            ALL,
            &[2],
            (&[1, 1], "failed: the floor leaves no box to take"),
        );
    }

    #[test]
    fn seed_defaults_keep_two_thirds_and_replace_a_third() {
        // 66% of 12 rounds up to 8; 33% batches round down to 3, and the floor allows 4.
        check(
            12,
            HostCount::percent(66),
            HostCount::percent(33),
            &[],
            (&[3, 3, 3, 3], "succeeded"),
        );
        // Deploying 5% at a time still takes at least one box.
        check(12, HostCount::percent(66), HostCount::percent(5), &[], (&[1; 12], "succeeded"));
        assert_eq!(batch_limit(HostCount::percent(5), 12), 1);
        assert_eq!(batch_limit(HostCount::hosts(0), 12), 1);
    }

    #[test]
    fn a_target_already_below_its_floor_loses_nothing() {
        assert_eq!(healthy_boxes_to_take(5, 8, 0, 3), 0);
        assert_eq!(healthy_boxes_to_take(8, 8, 0, 3), 0);
        assert_eq!(healthy_boxes_to_take(9, 8, 0, 3), 1);
        assert_eq!(healthy_boxes_to_take(12, 8, 2, 3), 1);
    }
}
