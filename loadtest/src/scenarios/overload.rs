//! Overload: a sustainable rate, then three times it, then the sustainable rate again, as one
//! open-loop schedule, while ingest's resident memory is sampled. A service that sheds well
//! answers the excess with 429/503 quickly, keeps its memory flat, and accepts the sustainable
//! rate again as soon as the load drops (the recovery time).

use super::{Clients, Harness, answer_of_request, run_name};
use crate::open_loop::{self, SLICE_MS, Slice};
use crate::outcome::Stores;
use crate::report::Row;
use serde::Serialize;
use std::fmt::Write;
use std::time::{Duration, Instant};
use tally_schema::api::PollVoteBody;

/// The timeline's slice width, in seconds.
const SLICE_S: f64 = SLICE_MS as f64 / 1000.0;

/// The overload run's shape on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct OverloadArgs {
    /// The rate ingest sustains on this machine (requests per second).
    #[arg(long, default_value_t = 4000.0)]
    pub sustainable_rate: f64,
    /// How many times the sustainable rate the middle phase offers.
    #[arg(long, default_value_t = 3.0)]
    pub factor: f64,
    /// Length of each of the three phases.
    #[arg(long, default_value_t = 10.0)]
    pub phase_seconds: f64,
    /// Ingest's process id, to sample its resident memory.
    #[arg(long)]
    pub ingest_pid: Option<u32>,
}

/// The `overload` subcommand: the run's row; the phases printed and written to
/// `overload.md` and `overload.json` in `--out`.
pub async fn run(h: &Harness<'_>, args: &OverloadArgs) -> anyhow::Result<Vec<Row>> {
    let s = h.settings;
    let shape = Shape {
        sustainable_per_s: args.sustainable_rate,
        seconds: args.phase_seconds * s.scale,
        factor: args.factor,
    };
    let (row, overload) =
        overload(&h.clients, &h.stores, shape, s.connections, args.ingest_pid).await?;
    let summary = overload.summary();
    println!("\n{summary}");
    std::fs::create_dir_all(&s.out)?;
    std::fs::write(s.out.join("overload.md"), &summary)?;
    std::fs::write(
        s.out.join("overload.json"),
        serde_json::to_string_pretty(&overload)?,
    )?;
    Ok(vec![row])
}

/// The three phases, each `seconds` long.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Shape {
    pub sustainable_per_s: f64,
    pub seconds: f64,
    pub factor: f64,
}

/// One phase as the clients saw it, by when answers arrived.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub offered_per_s: f64,
    pub answered_per_s: f64,
    pub accepted_per_s: f64,
    pub refused_per_s: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overload {
    pub shape: Shape,
    pub phases: Vec<Phase>,
    /// Seconds from the load dropping until every slice accepts ≥ 90 % of the sustainable rate.
    pub recovery_s: Option<f64>,
    /// Ingest's resident memory, (seconds since start, MiB), every 250 ms.
    pub rss_mib: Vec<(f64, f64)>,
}

impl Overload {
    pub fn peak_rss_mib(&self) -> f64 {
        self.rss_mib.iter().map(|(_, m)| *m).fold(0.0, f64::max)
    }

    /// A Markdown summary: the phases, recovery and memory.
    pub fn summary(&self) -> String {
        let mut out = String::from(
            "| phase | offered/s | answered/s | accepted/s | refused/s | p99 (ms) |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for p in &self.phases {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                p.name,
                p.offered_per_s,
                p.answered_per_s,
                p.accepted_per_s,
                p.refused_per_s,
                p.p99_ms
            );
        }
        let _ = writeln!(
            out,
            "\nrecovery after the load dropped: {}",
            self.recovery_s
                .map_or("not within the run".to_owned(), |s| format!("{s:.1} s"))
        );
        if let (Some(first), Some(last)) = (self.rss_mib.first(), self.rss_mib.last()) {
            let per_second: Vec<String> = self
                .rss_mib
                .iter()
                .step_by(4)
                .map(|(_, m)| format!("{m:.0}"))
                .collect();
            let _ = writeln!(
                out,
                "ingest RSS (MiB): start {:.0}, peak {:.0}, end {:.0}; each second: {}",
                first.1,
                self.peak_rss_mib(),
                last.1,
                per_second.join(" ")
            );
        }
        out
    }
}

/// Resident memory of `pid` in MiB, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Sustainable, then `factor` times it, then sustainable again: single votes on one poll.
pub async fn overload(
    clients: &Clients,
    stores: &Stores,
    shape: Shape,
    connections: usize,
    ingest_pid: Option<u32>,
) -> anyhow::Result<(Row, Overload)> {
    let poll = run_name("overload");
    clients
        .define(
            "polls",
            serde_json::json!({"id": poll, "options": ["a", "b"], "title": "overload"}),
        )
        .await?;
    let rate = shape.sustainable_per_s;
    let (plan, due) = open_loop::phases(
        &[
            (shape.seconds, rate),
            (shape.seconds, rate * shape.factor),
            (shape.seconds, rate),
        ],
        connections,
    );
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let start = Instant::now();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => return samples,
            }
            if let Some(mib) = ingest_pid.and_then(rss_mib) {
                samples.push((start.elapsed().as_secs_f64(), mib));
            }
        }
    });
    let url = format!("{}/v1/polls/{poll}/votes", clients.ingest);
    let run = open_loop::run_schedule("overload", plan, due, |i| {
        let body = PollVoteBody {
            id: None,
            voter: format!("v{i}").try_into().expect("voter id"),
            options: vec!["a".try_into().expect("option")],
        };
        answer_of_request(clients.for_request(i).post(&url).json(&body))
    })
    .await;
    let _ = stop.send(());
    let rss_mib = sampler.await.unwrap_or_default();

    let mut row = Row::new(
        "overload",
        &format!("{:.0}/s, ×{}, {:.0}/s", rate, shape.factor, rate),
        &run,
        1,
    );
    let stored = stores
        .postgres_exactly("poll_votes", "poll", &poll, &run.acknowledged)
        .await;
    row.outcome = match stored {
        Ok(n) => format!("ok: Postgres holds exactly the {n} acknowledged"),
        Err(e) => format!("MISMATCH: {e:#}"),
    };
    let phases = phase_stats(&run.timeline, shape, &run);
    let recovery_s = recovery(&run.timeline, shape);
    Ok((
        row,
        Overload {
            shape,
            phases,
            recovery_s,
            rss_mib,
        },
    ))
}

fn phase_stats(timeline: &[Slice], shape: Shape, run: &open_loop::Run) -> Vec<Phase> {
    let s = shape.seconds;
    let end = run.elapsed.as_secs_f64().max(3.0 * s);
    [
        ("sustainable", 0.0, s, shape.sustainable_per_s),
        (
            "overload",
            s,
            2.0 * s,
            shape.sustainable_per_s * shape.factor,
        ),
        ("after", 2.0 * s, end, shape.sustainable_per_s),
    ]
    .into_iter()
    .map(|(name, from, to, offered)| {
        let slices: Vec<&Slice> = timeline
            .iter()
            .filter(|x| x.t >= from && x.t < to)
            .collect();
        let mean = |f: fn(&Slice) -> f64| {
            slices.iter().map(|x| f(x)).sum::<f64>() / ((to - from) / SLICE_S).round().max(1.0)
        };
        Phase {
            name,
            offered_per_s: offered,
            answered_per_s: mean(|x| x.answered_per_s),
            accepted_per_s: mean(|x| x.accepted_per_s),
            refused_per_s: mean(|x| x.answered_per_s - x.accepted_per_s),
            p99_ms: slices.iter().map(|x| x.p99_ms).fold(0.0, f64::max),
        }
    })
    .collect()
}

/// From the load dropping (2 × seconds) to the first slice from which every slice before the
/// schedule's end accepts at least 90 % of the sustainable rate.
fn recovery(timeline: &[Slice], shape: Shape) -> Option<f64> {
    let dropped = 2.0 * shape.seconds;
    // The last slice of the schedule starts one slice before its end.
    let end = 3.0 * shape.seconds - SLICE_S / 2.0;
    let after: Vec<&Slice> = timeline
        .iter()
        .filter(|x| x.t >= dropped && x.t < end)
        .collect();
    let ok = |x: &Slice| x.accepted_per_s >= 0.9 * shape.sustainable_per_s;
    (0..after.len())
        .find(|&i| after[i..].iter().all(|x| ok(x)))
        .map(|i| after[i].t - dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(t: f64, accepted: f64) -> Slice {
        Slice {
            t,
            answered_per_s: accepted,
            accepted_per_s: accepted,
            ..Slice::default()
        }
    }

    #[test]
    fn recovery_is_when_every_later_slice_accepts_the_sustainable_rate() {
        let shape = Shape {
            sustainable_per_s: 100.0,
            seconds: 1.0,
            factor: 3.0,
        };
        let mut timeline: Vec<Slice> = (0..30).map(|i| slice(i as f64 / 10.0, 100.0)).collect();
        // After the drop at 2.0 s: still struggling until 2.3 s, one dip at 2.2 s.
        timeline[20].accepted_per_s = 10.0;
        timeline[22].accepted_per_s = 50.0;
        let recovered = recovery(&timeline, shape).unwrap();
        assert!((recovered - 0.3).abs() < 1e-9, "{recovered}");
        timeline[29].accepted_per_s = 0.0;
        assert_eq!(recovery(&timeline, shape), None);
    }
}
