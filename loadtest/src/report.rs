//! What a run reports: one summary line per scenario or reference, a table, a JSON file and
//! a PNG plot of latency and throughput over time; for rows whose CPU was sampled, a second
//! table of CPU µs per acknowledged event by process.

use crate::cost::{Cost, Group};
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
    /// CPU per acknowledged event by process, when the row's window was sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
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
            cost: None,
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

/// The Markdown table of CPU µs per acknowledged event, one row per row with a [`Cost`]:
/// each process group, the pipeline's total (with the part its idle CPU over the same window
/// explains), the generator, the do-nothing handler's process, and the do-nothing handler's
/// CPU per request at the same rate. `–`: no process of the group was running.
pub fn cost_table(rows: &[Row]) -> Option<String> {
    let costed: Vec<(&Row, &Cost)> = rows
        .iter()
        .filter_map(|r| r.cost.as_ref().map(|c| (r, c)))
        .collect();
    if costed.is_empty() {
        return None;
    }
    let pipeline: Vec<Group> = Group::ALL.into_iter().filter(|g| g.in_pipeline()).collect();
    let mut out = String::from("| run | events | window |");
    for g in &pipeline {
        out.push_str(&format!(" {} |", g.label()));
    }
    out.push_str(" **pipeline** (idle) | generator | tally-noop | do-nothing handler |\n|");
    out.push_str(&" --- |".repeat(3));
    out.push_str(&" ---: |".repeat(pipeline.len() + 4));
    out.push('\n');
    let figure = |cost: &Cost, g: Group| {
        let c = cost.group(g);
        if c.processes == 0 {
            "–".to_owned()
        } else {
            format!("{:.1}", c.us_per_event)
        }
    };
    for (row, cost) in costed {
        out.push_str(&format!(
            "| {} ({}) | {} | {:.1} s |",
            row.name, row.what, cost.events, cost.window_s
        ));
        for g in &pipeline {
            out.push_str(&format!(" {} |", figure(cost, *g)));
        }
        let idle = cost
            .pipeline_idle_us_per_event
            .map_or(String::new(), |i| format!(" ({i:.1})"));
        out.push_str(&format!(
            " **{:.1}**{idle} | {} | {} | {} |\n",
            cost.pipeline_us_per_event,
            figure(cost, Group::Generator),
            figure(cost, Group::Noop),
            cost.do_nothing_us_per_request
                .map_or("–".to_owned(), |d| format!("{d:.1}")),
        ));
    }
    Some(out)
}

pub fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(rows)?)?;
    Ok(())
}

/// The end of a run: the table printed, and written with the JSON and the plot to `out` as
/// `{prefix}summary.md`, `{prefix}run.json` and `{prefix}plot.png`; an error naming the rows
/// whose outcome check failed.
pub fn finish(out: &Path, prefix: &str, rows: &[Row], ratios_to: &[&str]) -> anyhow::Result<()> {
    let mut table = table(rows, ratios_to);
    if let Some(cost) = cost_table(rows) {
        table.push_str("\nCPU µs per acknowledged event (do-nothing handler: per request), ");
        table.push_str("from /proc, from the first request until the stores caught up:\n\n");
        table.push_str(&cost);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::GroupCost;
    use crate::open_loop::Plan;

    fn row(name: &str) -> Row {
        let plan = Plan {
            requests: 0,
            rate: 100.0,
            connections: 1,
        };
        let run = Run::merged(plan, Vec::new());
        Row::new(name, "what", &run, 1)
    }

    #[test]
    fn the_cost_table_has_a_line_per_costed_row_and_dashes_for_absent_processes() {
        let mut rows = vec![row("plain"), row("costed")];
        assert_eq!(cost_table(&rows), None);
        let groups = Group::ALL
            .iter()
            .map(|g| GroupCost {
                group: g.label(),
                processes: usize::from(*g != Group::Noop),
                cpu_ms: 1.0,
                us_per_event: 12.34,
                idle_us_per_event: None,
            })
            .collect();
        rows[1].cost = Some(Cost {
            events: 1000,
            window_s: 2.5,
            groups,
            pipeline_us_per_event: 86.4,
            pipeline_idle_us_per_event: Some(3.0),
            do_nothing_us_per_request: Some(14.0),
        });
        let table = cost_table(&rows).expect("a costed row");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("| run | events | window | ingest | nats-server |"));
        assert_eq!(
            lines[2],
            "| costed (what) | 1000 | 2.5 s | 12.3 | 12.3 | 12.3 | 12.3 | 12.3 | 12.3 | 12.3 | **86.4** (3.0) | 12.3 | – | 14.0 |"
        );
        // The JSON carries it; a row without one has no `cost` key.
        let json = serde_json::to_value(&rows).unwrap();
        assert!(json[0].get("cost").is_none());
        assert_eq!(json[1]["cost"]["groups"][0]["group"], "ingest");
    }
}
