//! A pipeline's alarms across the topology: one [`AlarmSet`] per region (scope
//! `{region: <name>}`) and one organisation-wide set (no scope) for the organisation's blocker
//! alarms, read out as the observations the engine consumes: alarm, region (none for
//! organisation-wide), state, time.

use std::collections::BTreeMap;

use gantry_model::pipeline::AlarmDefinition;

use crate::alarm_set::{AlarmSet, Transition};
use crate::series::{Labels, Store, TimestampMs};
use crate::{AlarmState, DefinitionError, Error};

/// The label that places a series in a region.
pub const REGION_LABEL: &str = "region";

/// One alarm's state in one region (or organisation-wide), as the engine reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub alarm: String,
    /// `None` for an organisation-wide alarm.
    pub region: Option<String>,
    pub state: AlarmState,
    pub reason: String,
    pub evaluated_at: Option<TimestampMs>,
}

/// Regional and organisation-wide alarm sets over one store.
#[derive(Clone, Debug)]
pub struct RegionalAlarms {
    regions: BTreeMap<String, AlarmSet>,
    organisation: AlarmSet,
    organisation_alarms: Vec<String>,
}

impl RegionalAlarms {
    /// Every definition is evaluated in every region; `organisation_alarms` (names among the
    /// definitions) are also evaluated once over all regions.
    pub fn new(
        definitions: &BTreeMap<String, AlarmDefinition>,
        regions: impl IntoIterator<Item = String>,
        organisation_alarms: &[String],
    ) -> Result<RegionalAlarms, Error> {
        RegionalAlarms::within(definitions, regions, organisation_alarms, &Labels::new())
    }

    /// As [`RegionalAlarms::new`], with every region's scope narrowed by `base` as well (a
    /// controller scopes a pipeline's alarms to its service's series: `{service: ...}`). The
    /// organisation-wide set reads every series, whatever `base` says.
    pub fn within(
        definitions: &BTreeMap<String, AlarmDefinition>,
        regions: impl IntoIterator<Item = String>,
        organisation_alarms: &[String],
        base: &Labels,
    ) -> Result<RegionalAlarms, Error> {
        let unknown: Vec<DefinitionError> = organisation_alarms
            .iter()
            .filter(|name| !definitions.contains_key(*name))
            .map(|name| DefinitionError {
                alarm: name.clone(),
                message: "listed as an organisation alarm but not defined".to_string(),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidDefinitions(unknown));
        }
        let organisation = AlarmSet::new(definitions, Labels::new())?;
        let regions = regions
            .into_iter()
            .map(|region| {
                let mut scope = base.clone();
                scope.insert(REGION_LABEL.to_string(), region.clone());
                Ok((region, AlarmSet::new(definitions, scope)?))
            })
            .collect::<Result<_, Error>>()?;
        Ok(RegionalAlarms {
            regions,
            organisation,
            organisation_alarms: organisation_alarms.to_vec(),
        })
    }

    /// Evaluates every set at `now`; transitions carry their region (`None` organisation-wide).
    pub fn evaluate(
        &mut self,
        store: &Store,
        now: TimestampMs,
    ) -> Vec<(Option<String>, Transition)> {
        let mut transitions: Vec<(Option<String>, Transition)> = Vec::new();
        for (region, set) in &mut self.regions {
            transitions
                .extend(set.evaluate(store, now).into_iter().map(|t| (Some(region.clone()), t)));
        }
        let organisation = self.organisation.evaluate(store, now);
        transitions.extend(
            organisation
                .into_iter()
                .filter(|t| self.organisation_alarms.contains(&t.alarm))
                .map(|t| (None, t)),
        );
        transitions
    }

    /// Every alarm's current reading: each alarm in each region, then the organisation alarms.
    pub fn readings(&self) -> Vec<Reading> {
        let reading = |set: &AlarmSet, name: &str, region: Option<&String>| {
            let status = set.status(name).expect("names come from the set");
            Reading {
                alarm: name.to_string(),
                region: region.cloned(),
                state: status.state,
                reason: status.reason.clone(),
                evaluated_at: status.evaluated_at,
            }
        };
        let mut readings: Vec<Reading> = self
            .regions
            .iter()
            .flat_map(|(region, set)| set.names().map(move |name| reading(set, name, Some(region))))
            .collect();
        readings.extend(
            self.organisation_alarms.iter().map(|name| reading(&self.organisation, name, None)),
        );
        readings
    }

    /// The set of one region, for gates and causes.
    pub fn region(&self, region: &str) -> Option<&AlarmSet> {
        self.regions.get(region)
    }

    /// The organisation-wide set.
    pub fn organisation(&self) -> &AlarmSet {
        &self.organisation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{SeriesKind, StoreLimits};

    const DEFINITIONS: &str = "
faults:
  metric: {metric: faults, statistic: Sum, period: 1m, evaluation_periods: 1,
           comparison: GreaterThanThreshold, threshold: 10}
high_severity:
  composite: ALARM(faults)
";

    fn definitions() -> BTreeMap<String, AlarmDefinition> {
        serde_saphyr::from_str(DEFINITIONS).unwrap()
    }

    #[test]
    fn regions_and_the_organisation_are_read_separately() {
        let regions = ["eu".to_string(), "us".to_string()];
        let mut alarms =
            RegionalAlarms::new(&definitions(), regions, &["faults".to_string()]).unwrap();
        let mut store = Store::new(StoreLimits::default());
        for (region, faults) in [("eu", 8.0), ("us", 7.0)] {
            let key = Labels::from([(REGION_LABEL.to_string(), region.to_string())]);
            store.ingest("faults", &key, SeriesKind::Gauge, 30_000, faults).unwrap();
        }
        alarms.evaluate(&store, 60_000);
        let summary: Vec<String> = alarms
            .readings()
            .iter()
            .map(|r| format!("{} {} {}", r.alarm, r.region.as_deref().unwrap_or("*"), r.state))
            .collect();
        // Each region is under 10; together they are 15.
        assert_eq!(
            summary,
            [
                "faults eu OK",
                "high_severity eu OK",
                "faults us OK",
                "high_severity us OK",
                "faults * ALARM"
            ]
        );
        assert!(alarms.region("eu").is_some() && alarms.region("ap").is_none());
        assert_eq!(alarms.organisation().status("faults").unwrap().state, AlarmState::Alarm);
    }

    #[test]
    fn a_base_scope_narrows_every_region_but_not_the_organisation() {
        let base = Labels::from([("service".to_string(), "shop".to_string())]);
        let mut alarms = RegionalAlarms::within(
            &definitions(),
            ["eu".to_string()],
            &["faults".to_string()],
            &base,
        )
        .unwrap();
        let mut store = Store::new(StoreLimits::default());
        for (service, faults) in [("shop", 4.0), ("search", 20.0)] {
            let key = Labels::from([
                (REGION_LABEL.to_string(), "eu".to_string()),
                ("service".to_string(), service.to_string()),
            ]);
            store.ingest("faults", &key, SeriesKind::Gauge, 30_000, faults).unwrap();
        }
        alarms.evaluate(&store, 60_000);
        // The shop's region reads only its own 4 faults; the organisation reads all 24.
        assert_eq!(alarms.region("eu").unwrap().status("faults").unwrap().state, AlarmState::Ok);
        assert_eq!(alarms.organisation().status("faults").unwrap().state, AlarmState::Alarm);
    }

    #[test]
    fn unknown_organisation_alarms_are_refused() {
        let error = RegionalAlarms::new(&definitions(), ["eu".to_string()], &["lse".to_string()]);
        assert_eq!(
            error.unwrap_err().to_string(),
            "alarm `lse`: listed as an organisation alarm but not defined"
        );
    }
}
