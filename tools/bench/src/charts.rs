//! SVG charts written beside the report (`docs/bench-*.svg`), which the report shows:
//!
//! - **latency distribution** of the fixed-rate run: for each leg (due → 201, due → decided by
//!   inventory-svc, due → final), the latency at every percentile, on the log-percentile axis
//!   latency plots use, so the tail gets as much room as the median;
//! - **backlog drain** over time: messages left in the backlog as inventory-svc drains it,
//!   beside the broker-only relay draining the same backlog;
//! - **CPU per process**: CPU time per order of each process in the end-to-end run, beside the
//!   broker-only ceiling's.
//!
//! Drawn with plotters' SVG backend and its built-in text estimate (no font files: the viewer
//! lays out the text). A chart whose section did not run is not drawn, and the report does not
//! link it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::Results;
use crate::ceiling::CeilingResult;
use crate::cpu::CpuUse;
use crate::drain::DrainResult;
use crate::e2e::E2eResult;
use crate::fixed_rate::Legs;

const SIZE: (u32, u32) = (900, 480);
/// The log-percentile axis ends at p99.99: four "nines".
const NINES: f64 = 4.0;
/// Points drawn per latency curve, whatever the number of orders.
const CURVE_POINTS: usize = 400;

const BLUE: RGBColor = RGBColor(31, 111, 235);
const ORANGE: RGBColor = RGBColor(212, 101, 15);
const GREY: RGBColor = RGBColor(140, 149, 159);
const LIGHT_GRID: RGBColor = RGBColor(238, 241, 244);

/// One chart, drawn.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name beside the report, e.g. `bench-latency.svg`.
    pub file: &'static str,
    /// What it shows, for the report's caption and the image's alt text.
    pub caption: &'static str,
    pub svg: String,
}

/// Every chart the results allow.
///
/// # Errors
/// plotters failed to draw (it should not, on an in-memory SVG).
pub fn draw(results: &Results) -> anyhow::Result<Vec<Chart>> {
    let mut charts = Vec::new();
    if let Some(fixed) = results.fixed_rate.done() {
        charts.push(Chart {
            file: "bench-latency.svg",
            caption: "Latency distribution at a fixed rate: each order's time from when it was due, per leg, by percentile",
            svg: latency_distribution(&fixed.legs, fixed.rate)?,
        });
    }
    let inventory = results.inventory_drain.done();
    let broker = results.broker_drain.done();
    if inventory.is_some() || broker.is_some() {
        charts.push(Chart {
            file: "bench-drain.svg",
            caption: "Backlog drain over time: messages left, inventory-svc beside the broker-only relay",
            svg: backlog_drain(inventory, broker)?,
        });
    }
    let e2e = results.e2e.done();
    let ceiling = results.ceiling.done();
    if e2e.is_some() || ceiling.is_some() {
        charts.push(Chart {
            file: "bench-cpu.svg",
            caption: "CPU per order, per process: end to end beside the broker-only ceiling",
            svg: cpu_per_process(e2e, ceiling)?,
        });
    }
    Ok(charts)
}

/// Write the charts into `dir`; the paths written.
///
/// # Errors
/// A file could not be written.
pub fn write(charts: &[Chart], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    charts
        .iter()
        .map(|chart| {
            let path = dir.join(chart.file);
            std::fs::write(&path, &chart.svg)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// plotters' errors carry the backend's error type; one readable line is all a report needs.
fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// One chart of [`SIZE`] on a white ground, with the caption, margin and label areas every chart
/// here shares; `plot` builds its axes on that and draws the rest.
fn svg<F>(caption: &str, y_label_area: u32, plot: F) -> anyhow::Result<String>
where
    F: FnOnce(&mut ChartBuilder<'_, '_, SVGBackend<'_>>) -> anyhow::Result<()>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        plot(
            ChartBuilder::on(&root)
                .caption(caption, ("sans-serif", 22))
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(y_label_area),
        )?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// The legend box at `position`, which each chart picks to keep clear of its data.
fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(GREY)
        .draw()
        .map_err(drawing)
}

/// A line series' key in the legend: a short stroke of its colour.
fn line_key(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
}

// --- latency distribution --------------------------------------------------------------------

/// The latency at each of [`CURVE_POINTS`] positions of the log-percentile axis: position x is
/// percentile `1 - 10^-x` (0 → p0, 1 → p90, 2 → p99, ...).
fn percentile_curve(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len() - 1;
    (0..=CURVE_POINTS)
        .map(|k| {
            let x = NINES * k as f64 / CURVE_POINTS as f64;
            let quantile = 1.0 - 10f64.powf(-x);
            let index = ((quantile * last as f64).round() as usize).min(last);
            (x, sorted[index])
        })
        .collect()
}

/// The label of a position on the log-percentile axis.
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    if x <= 0.0 {
        "p0 (fastest)".to_owned()
    } else {
        // As many decimals as the position has nines past the second: p90, p99, p99.9.
        let decimals = (x.round() as usize).saturating_sub(2);
        format!("p{percent:.decimals$}")
    }
}

fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((q * last as f64).round() as usize).min(last)])
}

fn latency_distribution(legs: &Legs, rate: f64) -> anyhow::Result<String> {
    let series = [
        ("due → 201 Created", &legs.accept, GREY),
        ("due → decided by inventory-svc", &legs.decided, ORANGE),
        (
            "due → final (order-svc applied the outcome)",
            &legs.finals,
            BLUE,
        ),
    ];
    let curves: Vec<_> = series
        .iter()
        .map(|(name, samples, color)| (*name, percentile_curve(samples), *color, *samples))
        .collect();
    let values = curves
        .iter()
        .flat_map(|(_, c, _, _)| c.iter().map(|(_, v)| *v));
    let max = values.clone().fold(1.0_f64, f64::max);
    // Log scale: the floor is a tenth of a millisecond, below anything the saga does.
    let min = values.fold(f64::INFINITY, f64::min).clamp(0.1, max / 2.0);

    let caption = format!("Latency at a fixed {rate:.0} orders/s, by percentile");
    svg(&caption, 64, |builder| {
        let mut chart = builder
            .build_cartesian_2d(0.0..NINES, (min..max * 1.3).log_scale())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|ms| milliseconds(*ms))
            .x_desc("percentile of orders (log scale: each step is another nine)")
            .y_desc("latency (log scale)")
            .light_line_style(LIGHT_GRID)
            .draw()
            .map_err(drawing)?;
        for (name, curve, color, samples) in &curves {
            if curve.is_empty() {
                continue;
            }
            let p50 = quantile(samples, 0.5).unwrap_or_default();
            let p99 = quantile(samples, 0.99).unwrap_or_default();
            chart
                .draw_series(LineSeries::new(
                    curve.iter().copied(),
                    color.stroke_width(3),
                ))
                .map_err(drawing)?
                .label(format!(
                    "{name}: p50 {}, p99 {}",
                    milliseconds(p50),
                    milliseconds(p99)
                ))
                .legend(line_key(*color));
        }
        // The curves rise to the right: the lower right stays clear.
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

fn milliseconds(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

// --- backlog drain ---------------------------------------------------------------------------

fn backlog_drain(
    inventory: Option<&DrainResult>,
    broker: Option<&DrainResult>,
) -> anyhow::Result<String> {
    let lines = [
        ("inventory-svc", inventory, BLUE),
        ("broker-only relay (the ceiling)", broker, GREY),
    ];
    let messages = lines
        .iter()
        .filter_map(|(_, d, _)| d.map(|d| d.messages))
        .max()
        .unwrap_or(1) as f64;
    let seconds = lines
        .iter()
        .filter_map(|(_, d, _)| d.and_then(|d| d.progress.last().map(|(t, _)| *t)))
        .fold(1.0_f64, f64::max);

    svg(
        &format!("Draining a backlog of {messages:.0} orders"),
        72,
        |builder| {
            let mut chart = builder
                .build_cartesian_2d(0.0..seconds * 1.02, 0.0..messages * 1.05)
                .map_err(drawing)?;
            chart
                .configure_mesh()
                .x_desc("seconds since the consumer started")
                .y_desc("messages left in the backlog")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .light_line_style(LIGHT_GRID)
                .draw()
                .map_err(drawing)?;
            for (name, drain, color) in lines {
                let Some(drain) = drain else { continue };
                let left = drain
                    .progress
                    .iter()
                    .map(|(t, done)| (*t, (drain.messages as f64 - *done as f64).max(0.0)));
                chart
                    .draw_series(LineSeries::new(left, color.stroke_width(3)))
                    .map_err(drawing)?
                    .label(format!("{name}: {:.0} msg/s", drain.per_sec))
                    .legend(line_key(color));
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight)
        },
    )
}

// --- CPU per process -------------------------------------------------------------------------

/// A process's label without its explanation in parentheses, to fit an axis.
fn short_label(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

fn cpu_per_process(
    e2e: Option<&E2eResult>,
    ceiling: Option<&CeilingResult>,
) -> anyhow::Result<String> {
    let per_order = |cpu: &[CpuUse], orders: usize, label: &str| {
        cpu.iter()
            .find(|u| u.label == label)
            .filter(|_| orders > 0)
            .map(|u| u.seconds * 1e6 / orders as f64)
    };
    let runs = [e2e.map(|e| &e.cpu[..]), ceiling.map(|c| &c.cpu[..])];
    let labels = crate::cpu::labels(runs.into_iter().flatten());
    let bars: Vec<(&str, Option<f64>, Option<f64>)> = labels
        .iter()
        .map(|label| {
            (
                short_label(label),
                e2e.and_then(|e| per_order(&e.cpu, e.accepted, label)),
                ceiling.and_then(|c| per_order(&c.cpu, c.orders, label)),
            )
        })
        .collect();
    let max = bars
        .iter()
        .flat_map(|(_, a, b)| [*a, *b])
        .flatten()
        .fold(1.0_f64, f64::max);
    let n = bars.len().max(1) as i32;
    // The first process on top: segment n-1 is the top row.
    let row = |i: usize| n - 1 - i as i32;

    svg("CPU time per order, by process", 150, |builder| {
        let mut chart = builder
            // A segmented range has one segment per value, both ends included.
            .build_cartesian_2d(0.0..max * 1.15, (0..n - 1).into_segmented())
            .map_err(drawing)?;
        let names: Vec<&str> = bars.iter().map(|(name, _, _)| *name).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(names.len())
            .y_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(i) => names
                    .get(usize::try_from(n - 1 - *i).unwrap_or(usize::MAX))
                    .map_or_else(String::new, |name| (*name).to_owned()),
                _ => String::new(),
            })
            .x_label_formatter(&|us| format!("{us:.0}"))
            .x_desc("µs of CPU per order (user + system)")
            .light_line_style(LIGHT_GRID)
            .draw()
            .map_err(drawing)?;
        // Two bars per process: the saga in the lower half of its row, the ceiling above.
        for (series, color, pick) in [
            ("end to end (the saga)", BLUE, 0),
            ("broker-only ceiling", GREY, 1),
        ] {
            let rects = bars
                .iter()
                .enumerate()
                .filter_map(|(i, (_, saga, ceiling))| {
                    let value = if pick == 0 { *saga } else { *ceiling }?;
                    let i = row(i);
                    let (from, to) = if pick == 0 {
                        (SegmentValue::Exact(i), SegmentValue::CenterOf(i))
                    } else {
                        (SegmentValue::CenterOf(i), SegmentValue::Exact(i + 1))
                    };
                    Some(Rectangle::new([(0.0, from), (value, to)], color.filled()))
                });
            chart
                .draw_series(rects)
                .map_err(drawing)?
                .label(series)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 20, y + 6)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The report's section showing the charts, linked by file name (they sit beside it).
pub fn markdown(charts: &[Chart]) -> String {
    if charts.is_empty() {
        return String::new();
    }
    let mut doc = String::from("## Charts\n\n");
    for chart in charts {
        doc.push_str(&format!(
            "![{caption}]({file})\n\n*{caption}.*\n\n",
            caption = chart.caption,
            file = chart.file
        ));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuUse;
    use crate::stats::Latency;
    use std::time::Duration;

    #[test]
    fn the_percentile_axis_gives_the_tail_room() {
        let samples: Vec<f64> = (1..=10_000).map(f64::from).collect();
        let curve = percentile_curve(&samples);
        assert_eq!(curve.len(), CURVE_POINTS + 1);
        assert_eq!(curve[0], (0.0, 1.0));
        let at = |x: f64| {
            curve
                .iter()
                .find(|(px, _)| (*px - x).abs() < 1e-9)
                .unwrap()
                .1
        };
        assert_eq!(at(1.0), 9000.0);
        assert_eq!(at(2.0), 9900.0);
        assert_eq!(at(NINES), 9999.0);
        assert_eq!(percentile_label(0.0), "p0 (fastest)");
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(2.0), "p99");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert!(percentile_curve(&[]).is_empty());
    }

    fn drain(per_sec: f64) -> DrainResult {
        DrainResult {
            messages: 1000,
            prefill_per_sec: 5000.0,
            startup: Duration::from_millis(300),
            per_sec,
            rss: None,
            progress: vec![(0.1, 0), (0.3, 200), (0.6, 700), (0.8, 1000)],
        }
    }

    #[test]
    fn each_chart_is_an_svg_that_says_what_it_shows() {
        let legs = Legs {
            accept: vec![1.0, 2.0, 3.0],
            decided: vec![4.0, 5.0, 9.0],
            finals: vec![6.0, 8.0, 30.0],
        };
        let latency = latency_distribution(&legs, 1000.0).unwrap();
        assert!(latency.starts_with("<svg"));
        assert!(latency.contains("Latency at a fixed 1000 orders/s"));
        assert!(latency.contains("due → decided by inventory-svc: p50 5.0 ms"));
        assert!(latency.contains("p99"));

        let drained = backlog_drain(Some(&drain(2000.0)), Some(&drain(3000.0))).unwrap();
        assert!(drained.contains("inventory-svc: 2000 msg/s"));
        assert!(drained.contains("broker-only relay (the ceiling): 3000 msg/s"));
        assert!(drained.contains("messages left in the backlog"));

        let cpu = |seconds: f64| {
            vec![
                CpuUse {
                    label: "RabbitMQ".into(),
                    seconds,
                },
                CpuUse {
                    label: "saga-bench (this process: HTTP load)".into(),
                    seconds: 1.0,
                },
            ]
        };
        let e2e = E2eResult {
            inventories: 1,
            lines_per_order: 1,
            concurrency: 8,
            accepted: 1000,
            refused: 0,
            first_error: None,
            accept_per_sec: 0.0,
            orders_per_sec: 0.0,
            elapsed: Duration::from_secs(1),
            settled_after: Duration::from_secs(1),
            latency: Latency::default(),
            missing: 0,
            memory: Vec::new(),
            cpu: cpu(2.0),
            redis: None,
        };
        let bars = cpu_per_process(Some(&e2e), None).unwrap();
        assert!(bars.contains("RabbitMQ"));
        assert!(
            bars.contains("\nsaga-bench\n"),
            "labels lose their explanation"
        );
        assert!(bars.contains("end to end (the saga)"));
    }

    #[test]
    fn the_report_links_the_charts_beside_it() {
        let charts = [Chart {
            file: "bench-cpu.svg",
            caption: "CPU",
            svg: String::new(),
        }];
        assert_eq!(
            markdown(&charts),
            "## Charts\n\n![CPU](bench-cpu.svg)\n\n*CPU.*\n\n"
        );
        assert_eq!(markdown(&[]), "");
    }
}
