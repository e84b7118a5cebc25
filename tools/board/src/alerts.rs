//! The alert lights: the Prometheus rules of deploy/prometheus/alerts.yml that the board can
//! judge from what it already samples (every queue's depth and consumers each second, unacked
//! counts from the management API), with the same thresholds and `for:` times, each light named
//! after its rule's `alert:`.
//!
//! Green: the rule's condition does not hold. Amber: it holds, but not yet for the rule's `for:`
//! time (Prometheus calls that *pending*), or the board cannot tell. Red: it holds and has held
//! long enough; Prometheus would fire it now. The rules about the services' own metrics
//! (retries giving up, the outbox not draining, ...) need Prometheus: with `--prometheus-url`
//! (a Prometheus that loads the same alerts.yml) the board lights them from its rules API
//! ([`from_prometheus`]: inactive green, pending amber, firing red); without it the panel names
//! them.
//!
//! [`RULES`] is the one table of thresholds here; a unit test checks each against alerts.yml.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::lock;
use crate::page::{LightState, QueueRow};

/// What a rule measures, per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Messages ready, on every queue.
    Ready,
    /// Consumers, on every queue a consumer should read (not the DLQ, not a `.retry` queue).
    Consumers,
    /// Messages delivered and not acked, on every queue.
    Unacked,
    /// Messages (ready and unacked) in the DLQ.
    DeadLetters,
}

/// How a measured value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Above,
    Equal,
}

/// One rule of alerts.yml as the board judges it.
#[derive(Debug, Clone, Copy)]
pub struct AlertRule {
    /// Its `alert:` name.
    pub alert: &'static str,
    pub severity: &'static str,
    pub measure: Measure,
    pub compare: Compare,
    pub threshold: u64,
    /// Its `for:` (0: it fires at once).
    pub for_secs: u64,
    /// What it says, for the page.
    pub title: &'static str,
}

/// The rules the board lights, as deploy/prometheus/alerts.yml writes them.
pub const RULES: [AlertRule; 4] = [
    AlertRule {
        alert: "QueueDepthHigh",
        severity: "warning",
        measure: Measure::Ready,
        compare: Compare::Above,
        threshold: 10_000,
        for_secs: 300,
        title: "a queue holds over 10,000 messages ready",
    },
    AlertRule {
        alert: "QueueNoConsumers",
        severity: "critical",
        measure: Measure::Consumers,
        compare: Compare::Equal,
        threshold: 0,
        for_secs: 60,
        title: "a consumed queue has no consumer",
    },
    AlertRule {
        alert: "QueueUnackedHigh",
        severity: "warning",
        measure: Measure::Unacked,
        compare: Compare::Above,
        threshold: 1_000,
        for_secs: 300,
        title: "a queue has over 1,000 deliveries unacked",
    },
    AlertRule {
        alert: "SagaDeadLetters",
        severity: "warning",
        measure: Measure::DeadLetters,
        compare: Compare::Above,
        threshold: 0,
        for_secs: 0,
        title: "a message is in the DLQ",
    },
];

/// The rules of alerts.yml only Prometheus can judge (they read the services' /metrics), with
/// what each says, for the page.
pub const NEEDS_PROMETHEUS: [(&str, &str); 8] = [
    (
        "SagaRetriesGivingUp",
        "messages dead-lettered after their retries",
    ),
    ("SagaOutboxNotDraining", "an outbox is not draining"),
    (
        "SagaOrdersMissedTheirDeadline",
        "orders missed their decision deadline",
    ),
    ("SagaPartDown", "a watched part of a service is down"),
    (
        "SagaTaskRestarted",
        "a task ended or panicked and was restarted",
    ),
    ("SagaPublishesFailing", "publishes keep failing"),
    ("SagaOutboxParked", "outbox entries parked"),
    ("SagaTargetDown", "a service does not answer /metrics"),
];

/// One light of the panel.
#[derive(Debug, Clone, Serialize)]
pub struct AlertLight {
    pub alert: &'static str,
    /// Who judged it: `board` (from its own samples) or `prometheus` (from its rules API).
    pub judged_by: &'static str,
    pub severity: &'static str,
    pub title: &'static str,
    pub for_secs: u64,
    pub state: LightState,
    pub detail: Vec<String>,
}

/// The `alerts` topic: the lights, and the rules the board leaves to Prometheus when it has
/// none to ask.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    pub lights: Vec<AlertLight>,
    pub needs_prometheus: Vec<&'static str>,
    /// The Prometheus the lights of its rules come from (`--prometheus-url`), if any.
    pub prometheus: Option<String>,
}

/// Since when each (rule, queue) condition has held without a break.
#[derive(Default)]
pub struct Pending {
    since: Mutex<HashMap<(&'static str, String), Instant>>,
}

impl AlertRule {
    fn holds(&self, value: u64) -> bool {
        match self.compare {
            Compare::Above => value > self.threshold,
            Compare::Equal => value == self.threshold,
        }
    }

    /// The value this rule reads from a queue's row: `None` when the rule does not apply to
    /// that queue, `Some(None)` when the value is not known.
    fn value(&self, row: &QueueRow, dlq: &str) -> Option<Option<u64>> {
        let is_dlq = row.name == dlq;
        match self.measure {
            Measure::Ready => Some(row.messages.map(u64::from)),
            Measure::Consumers => {
                (!is_dlq && !row.name.ends_with(".retry")).then(|| row.consumers.map(u64::from))
            }
            Measure::Unacked => Some(row.unacked),
            Measure::DeadLetters => is_dlq.then(|| {
                row.messages
                    .map(|ready| u64::from(ready) + row.unacked.unwrap_or(0))
            }),
        }
    }
}

/// Judge every rule on one sample of the queue table.
pub fn judge(rows: &[QueueRow], dlq: &str, pending: &Pending, now: Instant) -> Alerts {
    let mut since = lock(&pending.since);
    let lights = RULES
        .iter()
        .map(|rule| {
            let mut light = AlertLight {
                alert: rule.alert,
                judged_by: "board",
                severity: rule.severity,
                title: rule.title,
                for_secs: rule.for_secs,
                state: LightState::Green,
                detail: Vec::new(),
            };
            let mut unknown = Vec::new();
            for row in rows {
                let key = (rule.alert, row.name.clone());
                match rule.value(row, dlq) {
                    None => {}
                    Some(None) => {
                        since.remove(&key);
                        unknown.push(row.name.as_str());
                    }
                    Some(Some(value)) if rule.holds(value) => {
                        let held = now.duration_since(*since.entry(key).or_insert(now));
                        let firing = held >= Duration::from_secs(rule.for_secs);
                        let state = if firing {
                            LightState::Red
                        } else {
                            LightState::Amber
                        };
                        if state == LightState::Red || light.state == LightState::Green {
                            light.state = state;
                        }
                        light.detail.push(format!(
                            "{}: {value} for {} s{}",
                            row.name,
                            held.as_secs(),
                            if firing {
                                String::new()
                            } else {
                                format!(" (fires after {} s)", rule.for_secs)
                            }
                        ));
                    }
                    Some(Some(_)) => {
                        since.remove(&key);
                    }
                }
            }
            if !unknown.is_empty() {
                if light.state == LightState::Green {
                    light.state = LightState::Amber;
                }
                light
                    .detail
                    .push(format!("cannot tell for {}", unknown.join(", ")));
            }
            light
        })
        .collect();
    Alerts {
        lights,
        needs_prometheus: NEEDS_PROMETHEUS.iter().map(|(name, _)| *name).collect(),
        prometheus: None,
    }
}

/// The lights of the rules only Prometheus judges, from its `GET /api/v1/rules?type=alert`
/// answer (`Err`: why it could not be asked; every light is then amber, "cannot tell").
pub fn from_prometheus(answer: Result<&Value, &str>) -> Vec<AlertLight> {
    let rules: Vec<&Value> = match answer {
        Ok(answer) => answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect(),
        Err(_) => Vec::new(),
    };
    NEEDS_PROMETHEUS
        .iter()
        .map(|&(alert, title)| {
            let rule = rules.iter().find(|r| r["name"] == alert);
            let severity = match rule.map(|r| &r["labels"]["severity"]) {
                Some(s) if s == "critical" => "critical",
                _ => "warning",
            };
            let mut light = AlertLight {
                alert,
                judged_by: "prometheus",
                severity,
                title,
                for_secs: rule.and_then(|r| r["duration"].as_f64()).unwrap_or(0.0) as u64,
                state: LightState::Amber,
                detail: Vec::new(),
            };
            match (answer, rule) {
                (Err(why), _) => light.detail.push(format!("cannot tell: {why}")),
                (Ok(_), None) => light.detail.push(
                    "cannot tell: this Prometheus has no such rule (is alerts.yml loaded?)".into(),
                ),
                (Ok(_), Some(rule)) => {
                    light.state = match rule["state"].as_str() {
                        Some("firing") => LightState::Red,
                        Some("pending") => LightState::Amber,
                        _ => LightState::Green,
                    };
                    for alert in rule["alerts"].as_array().into_iter().flatten() {
                        light.detail.push(format!(
                            "{}: {}",
                            alert["state"].as_str().unwrap_or("?"),
                            alert["annotations"]["summary"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
            light
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, messages: u32, consumers: u32, unacked: u64) -> QueueRow {
        QueueRow {
            name: name.into(),
            retry: name.ends_with(".retry"),
            messages: Some(messages),
            consumers: Some(consumers),
            unacked: Some(unacked),
            publish: None,
            deliver: None,
        }
    }

    /// Each rule's block of alerts.yml: from its `- alert:` line to the next.
    fn rule_text<'a>(yml: &'a str, alert: &str) -> &'a str {
        let start = yml
            .find(&format!("- alert: {alert}\n"))
            .unwrap_or_else(|| panic!("alerts.yml has no rule {alert}"));
        let rest = &yml[start + 1..];
        let end = rest.find("- alert: ").unwrap_or(rest.len());
        &yml[start..start + 1 + end]
    }

    #[test]
    fn every_threshold_is_the_one_alerts_yml_writes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/prometheus/alerts.yml"
        );
        let yml = std::fs::read_to_string(path).expect("deploy/prometheus/alerts.yml");
        for rule in RULES {
            let text = rule_text(&yml, rule.alert);
            let compare = match rule.compare {
                Compare::Above => format!("> {}", rule.threshold),
                Compare::Equal => format!("== {}", rule.threshold),
            };
            assert!(
                text.contains(&compare),
                "{}: {compare} in\n{text}",
                rule.alert
            );
            let metric = match rule.measure {
                Measure::Ready => "rabbitmq_detailed_queue_messages_ready",
                Measure::Consumers => {
                    "rabbitmq_detailed_queue_consumers{queue!=\"dlq_queue\", queue!~\".+\\\\.retry\"}"
                }
                Measure::Unacked => "rabbitmq_detailed_queue_messages_unacked",
                Measure::DeadLetters => "rabbitmq_detailed_queue_messages{queue=\"dlq_queue\"}",
            };
            assert!(text.contains(metric), "{}: {metric} in\n{text}", rule.alert);
            let written_for = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("for: "))
                .map(|f| match f.split_at(f.len() - 1) {
                    (n, "m") => n.parse::<u64>().unwrap() * 60,
                    (n, "s") => n.parse::<u64>().unwrap(),
                    _ => panic!("{}: for: {f}", rule.alert),
                })
                .unwrap_or(0);
            assert_eq!(written_for, rule.for_secs, "{}: for:", rule.alert);
            assert!(
                text.contains(&format!("severity: {}", rule.severity)),
                "{}",
                rule.alert
            );
        }
        for (alert, _) in NEEDS_PROMETHEUS {
            rule_text(&yml, alert);
        }
        let named = yml.matches("- alert: ").count();
        assert_eq!(
            named,
            RULES.len() + NEEDS_PROMETHEUS.len(),
            "every rule is lit or named"
        );
    }

    #[test]
    fn prometheus_rules_light_as_its_rules_api_says() {
        let answer = serde_json::json!({"status": "success", "data": {"groups": [{"rules": [
            {"name": "SagaTargetDown", "state": "firing", "duration": 60,
             "labels": {"severity": "critical"},
             "alerts": [{"state": "firing",
                         "annotations": {"summary": "inventory-svc at 127.0.0.1:5002 does not answer /metrics"}}]},
            {"name": "SagaPartDown", "state": "pending", "duration": 60, "labels": {"severity": "critical"},
             "alerts": [{"state": "pending", "annotations": {"summary": "relay is down"}}]},
            {"name": "SagaOutboxParked", "state": "inactive", "duration": 0, "alerts": []},
        ]}]}});
        let lights = from_prometheus(Ok(&answer));
        assert_eq!(lights.len(), NEEDS_PROMETHEUS.len());
        let light = |name: &str| lights.iter().find(|l| l.alert == name).expect(name);
        let down = light("SagaTargetDown");
        assert_eq!(
            (down.state, down.severity, down.for_secs),
            (LightState::Red, "critical", 60)
        );
        assert_eq!(down.judged_by, "prometheus");
        assert!(
            down.detail[0].contains("inventory-svc"),
            "{:?}",
            down.detail
        );
        assert_eq!(light("SagaPartDown").state, LightState::Amber);
        assert_eq!(light("SagaOutboxParked").state, LightState::Green);
        // A rule this Prometheus does not have, and a Prometheus that does not answer: cannot tell.
        assert_eq!(light("SagaRetriesGivingUp").state, LightState::Amber);
        let away = from_prometheus(Err("connection refused"));
        assert!(
            away.iter().all(|l| l.state == LightState::Amber
                && l.detail[0] == "cannot tell: connection refused")
        );
    }

    #[test]
    fn a_dead_letter_is_red_at_once_and_a_missing_consumer_only_after_its_for_time() {
        let pending = Pending::default();
        let t = Instant::now();
        let rows = [
            row("inventory_queue", 3, 0, 0),
            row("inventory_queue.retry", 0, 0, 0),
            row("dlq_queue", 1, 0, 0),
        ];
        let state = |alerts: &Alerts, name: &str| {
            alerts
                .lights
                .iter()
                .find(|l| l.alert == name)
                .unwrap()
                .state
        };
        let first = judge(&rows, "dlq_queue", &pending, t);
        assert_eq!(state(&first, "SagaDeadLetters"), LightState::Red);
        assert_eq!(state(&first, "QueueNoConsumers"), LightState::Amber);
        assert_eq!(state(&first, "QueueDepthHigh"), LightState::Green);
        let later = judge(&rows, "dlq_queue", &pending, t + Duration::from_secs(61));
        assert_eq!(state(&later, "QueueNoConsumers"), LightState::Red);
        let detail = &later.lights[1].detail;
        assert_eq!(
            detail.len(),
            1,
            "not the retry queue nor the DLQ: {detail:?}"
        );
        let healed = [row("inventory_queue", 0, 1, 0), row("dlq_queue", 0, 0, 0)];
        let after = judge(&healed, "dlq_queue", &pending, t + Duration::from_secs(62));
        assert!(after.lights.iter().all(|l| l.state == LightState::Green));
    }
}
