//! The scenarios, one module each, and what they share: the HTTP clients, the run names, the
//! lag measurement and the way a check becomes a row's outcome.
//!
//! - [`flash_poll`], [`arena`], [`tournament`], [`registration_rush`], [`batch`]: the bursts
//!   Tally's users face, each offered open-loop and checked after it drains.
//! - [`crowd`]: arena-crowd, many voters each on a connection of their own, over processes.
//! - [`followers`]: channel-followers, one channel's SSE followers over processes, fan-out
//!   latency from publish to each follower.
//! - [`overload`]: a sustainable rate, three times it, then the sustainable rate again.
//! - [`burst`]: poll votes, single or batched, closed loop (the demo's and the benches' burst).
//! - [`cost`]: CPU µs per acknowledged event by process at steady rates, beside the
//!   do-nothing handler's.
//! - [`suite`]: the references and every scenario above but overload and burst, in one run.
//!
//! Each module's `run` is what its subcommand does: the plan from the [`Settings`], the rows.

pub mod arena;
pub mod batch;
pub mod burst;
pub mod cost;
pub mod crowd;
pub mod flash_poll;
pub mod followers;
pub mod overload;
pub mod registration_rush;
pub mod suite;
pub mod tournament;

pub use arena::{arena, arena_outcome, define_arena, vote_and_read};
pub use batch::batch;
pub use flash_poll::flash_poll;
pub use registration_rush::registration_rush;
pub use tournament::tournament;

use crate::cli::Settings;
use crate::open_loop::{Answer, answer_of};
use crate::outcome::{Stores, lag_p99_ms};
use crate::report::Row;
use anyhow::{Context, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tally_schema::api::PollVoteBody;

/// HTTP clients spread over loopback addresses (127.0.0.1–127.0.0.N), so many connections do
/// not exhaust one source address's ports; each request picks one by its index. With no
/// addresses, one client whose source address the system picks (an ingest not on loopback).
#[derive(Clone)]
pub struct Clients {
    clients: Arc<Vec<reqwest::Client>>,
    pub ingest: String,
    api_key: String,
}

impl Clients {
    pub fn new(ingest: &str, api_key: &str, addresses: u8) -> anyhow::Result<Self> {
        let client = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(4096)
        };
        let clients = if addresses == 0 {
            vec![client().build()?]
        } else {
            (1..=addresses)
                .map(|i| {
                    client()
                        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                        .build()
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            clients: Arc::new(clients),
            ingest: ingest.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    pub fn for_request(&self, i: usize) -> &reqwest::Client {
        &self.clients[i % self.clients.len()]
    }

    /// Defines a resource through the admin API, as an operator would before the burst.
    pub async fn define(&self, plural: &str, definition: serde_json::Value) -> anyhow::Result<()> {
        let response = self.clients[0]
            .post(format!("{}/admin/v1/{plural}", self.ingest))
            .bearer_auth(&self.api_key)
            .json(&definition)
            .send()
            .await
            .context("reaching the admin API")?;
        if response.status() != 201 {
            bail!(
                "creating {plural} {definition}: {} {}",
                response.status(),
                response.text().await?
            );
        }
        Ok(())
    }
}

/// What a scenario run from the command line works with.
pub struct Harness<'a> {
    pub clients: Clients,
    pub stores: Stores,
    pub settings: &'a Settings,
}

impl<'a> Harness<'a> {
    /// The clients for `--ingest` and the stores the outcome is read from, connected.
    pub async fn connect(settings: &'a Settings) -> anyhow::Result<Self> {
        Ok(Self {
            clients: Clients::new(&settings.ingest, &settings.api_key, settings.addresses)?,
            stores: Stores::connect(&settings.stores).await?,
            settings,
        })
    }
}

/// A name unique to this run, so runs never mix.
pub fn run_name(kind: &str) -> String {
    format!(
        "{kind}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

pub(crate) async fn checked(row: &mut Row, outcome: anyhow::Result<String>) {
    row.outcome = match outcome {
        Ok(summary) => format!("ok: {summary}"),
        Err(e) => format!("MISMATCH: {e:#}"),
    };
}

/// Measures the lag of what the Redis sink applied during `run`.
pub(crate) async fn with_lag<T>(stores: &Stores, run: impl Future<Output = T>) -> (T, Option<f64>) {
    let before = stores.lag_buckets().await;
    let run = run.await;
    // The last batches land shortly after the last answer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    (run, lag_p99_ms(&before, &stores.lag_buckets().await))
}

pub async fn answer_of_request(request: reqwest::RequestBuilder) -> Answer {
    answer_of(request.send().await).await
}

/// The options of the polls the scenarios define.
pub(crate) const OPTIONS: [&str; 3] = ["red", "green", "blue"];

/// Vote `i` of a run on a poll with [`OPTIONS`]: voter `{voter}{i}`, the options in turn.
pub(crate) fn poll_vote(voter: &str, i: usize) -> PollVoteBody {
    PollVoteBody {
        id: None,
        voter: format!("{voter}{i}").try_into().expect("voter id"),
        options: vec![OPTIONS[i % 3].try_into().expect("option")],
    }
}
