//! The sweep's SVG plot: throughput and p99 against concurrency (log-log),
//! ours and (when measured) the official TS facilitator's, and `/settle`
//! against the number of signers.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

/// Nothing on a log axis may be zero: an empty point (every request
/// failed) is drawn at this floor.
const FLOOR: f64 = 0.01;

/// One named line of the plot.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The points of `points[i][kind][key]` against `points[i][x]`.
fn extract(points: &Value, x: &str, kind: &str, key: &str) -> Vec<(f64, f64)> {
    points
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p[x].as_f64().unwrap_or(1.0).max(FLOOR),
                p[kind][key].as_f64().unwrap_or_default().max(FLOOR),
            )
        })
        .collect()
}

fn series(name: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        color,
        points,
    }
}

/// The series of one panel, keyed by the JSON field they plot.
fn concurrency_series(report: &Value, key: &str, unit: &str) -> Vec<Series> {
    let ours = &report["concurrency_points"];
    let mut all = vec![
        series(
            &format!("/verify {unit}"),
            BLUE,
            extract(ours, "concurrency", "verify", key),
        ),
        series(
            &format!("/settle {unit}"),
            RED,
            extract(ours, "concurrency", "settle", key),
        ),
    ];
    let ts = &report["ts"]["concurrency_points"];
    if ts.is_array() {
        all.push(series(
            &format!("TS /verify {unit}"),
            CYAN,
            extract(ts, "concurrency", "verify", key),
        ));
        all.push(series(
            &format!("TS /settle {unit}"),
            MAGENTA,
            extract(ts, "concurrency", "settle", key),
        ));
    }
    all
}

/// Writes the plot of a sweep report to `path`.
pub(crate) fn write(path: &Path, report: &Value) -> Result<(), String> {
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, 3));
    let signers = &report["signer_points"];
    let by_signers = vec![
        series(
            "/settle req/s by signers",
            RED,
            extract(signers, "signers", "settle", "per_second"),
        ),
        series(
            "/settle p99 ms by signers",
            BLACK,
            extract(signers, "signers", "settle", "p99_ms"),
        ),
    ];
    let panels_spec = [
        (
            "throughput against concurrency".to_owned(),
            "concurrency",
            "requests per second",
            concurrency_series(report, "per_second", "req/s"),
        ),
        (
            "p99 latency against concurrency".to_owned(),
            "concurrency",
            "p99 (ms)",
            concurrency_series(report, "p99_ms", "p99 ms"),
        ),
        (
            format!(
                "/settle at concurrency {} against signers",
                report["signers_concurrency"]
            ),
            "signers",
            "req/s and p99 (ms)",
            by_signers,
        ),
    ];
    for (area, (title, x_desc, y_desc, lines)) in panels.iter().zip(panels_spec) {
        panel(area, &title, x_desc, y_desc, &lines)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The log range covering `values`, with some room around them.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return 1.0..10.0;
    }
    (low / 1.5).max(FLOOR)..(high * 1.5).max(low * 2.0)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Series],
) -> Result<(), String> {
    let all = || lines.iter().flat_map(|s| s.points.iter().copied());
    let x = log_range(all().map(|(x, _)| x));
    let y = log_range(all().map(|(_, y)| y));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.log_scale(), y.log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 3, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
