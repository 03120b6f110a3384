//! The PNG plot: per run, accepted requests per second and p50/p99 latency per second.

use crate::report::Row;
use plotters::prelude::*;
use std::path::Path;

/// Registers a TrueType font for the plot's text (Debian's fonts-dejavu-core by default).
fn register_font() -> anyhow::Result<()> {
    let path = std::env::var("TALLY_PLOT_FONT")
        .unwrap_or_else(|_| "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_owned());
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("font {path}: {e} (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("font {path} is not a TrueType font"))?;
    Ok(())
}

pub fn draw(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    register_font()?;
    let height = 260 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1400, height.max(260))).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, row) in root.split_evenly((rows.len(), 1)).iter().zip(rows) {
        let (left, right) = area.split_horizontally(700);
        let seconds = row.timeline.last().map_or(1.0, |s| s.t + 0.1);
        let most = row
            .timeline
            .iter()
            .map(|s| s.accepted_per_s)
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&left)
            .caption(
                format!("{}: accepted requests/s over time", row.name),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..seconds, 0f64..most * 1.1)?;
        chart.configure_mesh().x_desc("s").draw()?;
        chart.draw_series(LineSeries::new(
            row.timeline.iter().map(|s| (s.t, s.accepted_per_s)),
            &BLUE,
        ))?;
        let worst = row.timeline.iter().map(|s| s.p99_ms).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&right)
            .caption(
                format!("{}: latency over time (ms)", row.name),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..seconds, 0f64..worst * 1.1)?;
        chart.configure_mesh().x_desc("s").draw()?;
        chart
            .draw_series(LineSeries::new(
                row.timeline.iter().map(|s| (s.t, s.p99_ms)),
                &RED,
            ))?
            .label("p99")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .draw_series(LineSeries::new(
                row.timeline.iter().map(|s| (s.t, s.p50_ms)),
                &GREEN,
            ))?
            .label("p50")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN));
        chart.configure_series_labels().border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
