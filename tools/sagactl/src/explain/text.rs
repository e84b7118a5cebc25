//! The journey as text for a terminal (`sagactl explain`, the default): a headline, when it
//! started, then one block per step with its time, lanes, event id and why it was safe.

use std::fmt::Write as _;

use super::journey::Journey;

impl Journey {
    /// The journey as text for a terminal: one block per step with its time, lanes, event id
    /// and why it was safe.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline);
        let start = self.steps.iter().find_map(|s| s.at);
        if let Some(start) = start {
            let _ = writeln!(out, "started {} UTC", utc(start));
        }
        for step in &self.steps {
            let when = match (step.at, start) {
                (Some(at), Some(start)) => format!(
                    "{} +{:.3}s",
                    &utc(at)[11..],
                    at.saturating_sub(start) as f64 / 1000.0
                ),
                _ => "(no time recorded)".to_owned(),
            };
            let lanes = format!("{} → {}", step.from.name(), step.to.name());
            let _ = writeln!(out);
            let _ = writeln!(out, "{when:<23} {lanes:<34} {}", step.what);
            if let Some(id) = &step.event_id {
                let event = step.event.as_deref().unwrap_or("event");
                let _ = writeln!(out, "{:<23} event  {event} {id}", "");
            }
            let _ = writeln!(out, "{:<23} safe   {}", "", step.why);
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nnote: {note}");
        }
        out
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn utc(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    at.ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
            ))
            .ok()
        })
        // Beyond year 9999 (time's range): no stamp of ours, so say so rather than guess.
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(utc(T0), "2023-11-14 22:13:20.000");
        assert_eq!(
            utc(u64::MAX),
            "18446744073709551615 ms after the Unix epoch"
        );
    }
}
