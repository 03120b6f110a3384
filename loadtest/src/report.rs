//! What a run reports: one summary line per scenario or reference, a table, a JSON file and
//! a PNG plot of latency and throughput over time.

use crate::open_loop::{Run, Slice};
use crate::plot;
use anyhow::bail;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub what: String,
    pub offered_per_second: f64,
    pub requests: usize,
    pub accepted: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub accepted_per_second: f64,
    /// Events per accepted request (1, or a batch's size).
    pub events_per_request: usize,
    /// Events acknowledged, where the answers name them.
    pub events_acknowledged: Option<usize>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Ingest to Redis, p99, when measured (the aggregator's lag while the scenario ran).
    pub lag_p99_ms: Option<f64>,
    /// What the outcome check found ("ok: …" or the mismatch).
    pub outcome: String,
    pub timeline: Vec<Slice>,
}

impl Row {
    pub fn new(name: &str, what: &str, run: &Run, events_per_request: usize) -> Self {
        Self {
            name: name.to_owned(),
            what: what.to_owned(),
            offered_per_second: run.plan.rate,
            requests: run.plan.requests,
            accepted: run.accepted(),
            statuses: run.statuses.clone(),
            accepted_per_second: run.accepted_per_second(),
            events_per_request,
            events_acknowledged: (!run.acknowledged.is_empty()).then_some(run.acknowledged.len()),
            p50_ms: run.quantile_ms(0.5),
            p95_ms: run.quantile_ms(0.95),
            p99_ms: run.quantile_ms(0.99),
            max_ms: run.latency.max() as f64 / 1000.0,
            lag_p99_ms: None,
            outcome: String::new(),
            timeline: run.timeline.clone(),
        }
    }

    /// Acknowledged events per second: a batch's acknowledged items, not its size.
    pub fn events_per_second(&self) -> f64 {
        match self.events_acknowledged {
            Some(events) => self.accepted_per_second * events as f64 / self.accepted.max(1) as f64,
            None => self.accepted_per_second * self.events_per_request as f64,
        }
    }
}

/// The Markdown table of a run (also printed), with each row's events/s as a ratio to the
/// references named in `ratios_to`.
pub fn table(rows: &[Row], ratios_to: &[&str]) -> String {
    let reference = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(Row::events_per_second)
    };
    let mut out = String::from(
        "| run | offered | accepted | statuses | events/s | p50 | p95 | p99 | max | lag p99 |",
    );
    for r in ratios_to {
        out.push_str(&format!(" ÷ {r} |"));
    }
    out.push_str(" outcome |\n|");
    for _ in 0..(11 + ratios_to.len()) {
        out.push_str(" --- |");
    }
    out.push('\n');
    for row in rows {
        let statuses: Vec<String> = row
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        // A closed loop offers no rate: everything at once, as fast as answers come.
        let offered = if row.offered_per_second.is_finite() {
            format!("{:.0}/s × {}", row.offered_per_second, row.requests)
        } else {
            format!("closed loop × {}", row.requests)
        };
        out.push_str(&format!(
            "| {} ({}) | {offered} | {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            row.name,
            row.what,
            row.accepted,
            statuses.join(", "),
            row.events_per_second(),
            row.p50_ms,
            row.p95_ms,
            row.p99_ms,
            row.max_ms,
            row.lag_p99_ms.map_or("–".to_owned(), |l| format!("{l:.0} ms")),
        ));
        for r in ratios_to {
            let ratio = reference(r).map(|v| row.events_per_second() / v.max(1e-9));
            out.push_str(&ratio.map_or(" – |".to_owned(), |x| format!(" {x:.2}× |")));
        }
        out.push_str(&format!(" {} |\n", row.outcome));
    }
    out
}

pub fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(rows)?)?;
    Ok(())
}

/// The end of a run: the table printed, and written with the JSON and the plot to `out` as
/// `{prefix}summary.md`, `{prefix}run.json` and `{prefix}plot.png`; an error naming the rows
/// whose outcome check failed.
pub fn finish(out: &Path, prefix: &str, rows: &[Row], ratios_to: &[&str]) -> anyhow::Result<()> {
    let table = table(rows, ratios_to);
    println!("\n{table}");
    std::fs::create_dir_all(out)?;
    let [summary, json, png] =
        ["summary.md", "run.json", "plot.png"].map(|f| format!("{prefix}{f}"));
    std::fs::write(out.join(&summary), &table)?;
    write_json(&out.join(&json), rows)?;
    match plot::draw(&out.join(&png), rows) {
        Ok(()) => println!("wrote {}/{json}, {summary} and {png}", out.display()),
        Err(e) => println!(
            "wrote {}/{json} and {summary}; no plot: {e:#}",
            out.display()
        ),
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome.starts_with("MISMATCH"))
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("outcome check failed for {failed:?}");
    }
    Ok(())
}
