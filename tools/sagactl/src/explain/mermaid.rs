//! The journey as a Mermaid sequence diagram (`sagactl explain --mermaid`), e.g. for a lab
//! report: one participant per lane, one arrow per step, the notes at the end.

use std::fmt::Write as _;

use super::journey::{Journey, Lane, StepKind};

impl Journey {
    /// The journey as a Mermaid sequence diagram, e.g. for a lab report.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("sequenceDiagram\n");
        for lane in Lane::ALL {
            let _ = writeln!(
                out,
                "    participant {} as {}",
                participant(lane),
                lane.name()
            );
        }
        let start = self.steps.iter().find_map(|s| s.at);
        for step in &self.steps {
            let arrow = match step.kind {
                StepKind::DeadLetter => "-x",
                StepKind::Duplicate | StepKind::Late => "-->>",
                // Announced for whoever listens: nobody waits for it.
                StepKind::StatusEvent => "-)",
                _ => "->>",
            };
            let when = match (step.at, start) {
                (Some(at), Some(start)) => {
                    format!("+{:.3}s ", at.saturating_sub(start) as f64 / 1000.0)
                }
                _ => String::new(),
            };
            let id = step
                .event_id
                .as_deref()
                .map(|id| format!(" [{}]", short_id(id)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {}{arrow}{}: {}",
                participant(step.from),
                participant(step.to),
                mermaid_text(&format!("{when}{}{id}", step.what))
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "    Note over C,N: {}", mermaid_text(note));
        }
        out
    }
}

/// The participant's id in the diagram: one letter per lane.
fn participant(lane: Lane) -> &'static str {
    match lane {
        Lane::Client => "C",
        Lane::OrderSvc => "O",
        Lane::Broker => "B",
        Lane::InventorySvc => "I",
        Lane::NotificationSvc => "N",
    }
}

/// The start of an id: enough to tell events apart in a diagram.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Text Mermaid shows as it is: no statement separators, entity codes or HTML.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ';' => ',',
            '#' => ' ',
            '<' => '(',
            '>' => ')',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_text_cannot_break_the_diagram() {
        assert_eq!(mermaid_text("a;b#c<d>\ne"), "a,b c(d) e");
    }
}
