//! The bursts Tally's users face, each offered open-loop and checked after it drains.

use crate::open_loop::{self, Answer, Plan, Run, answer_of};
use crate::outcome::{Stores, lag_p99_ms};
use crate::report::Row;
use anyhow::{Context, bail};
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tally_schema::api::{BatchItem, PairVoteBody, PollVoteBody, RegistrationBody, ScoreBody};

/// HTTP clients spread over loopback addresses (127.0.0.1–127.0.0.N), so many connections do
/// not exhaust one source address's ports; each request picks one by its index.
#[derive(Clone)]
pub struct Clients {
    clients: Arc<Vec<reqwest::Client>>,
    pub ingest: String,
    api_key: String,
}

impl Clients {
    pub fn new(ingest: &str, api_key: &str, addresses: u8) -> anyhow::Result<Self> {
        let clients = (1..=addresses.max(1))
            .map(|i| {
                reqwest::Client::builder()
                    .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                    .timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(4096)
                    .build()
            })
            .collect::<Result<_, _>>()?;
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

const OPTIONS: [&str; 3] = ["red", "green", "blue"];

/// flash-poll: `plan.requests` single votes from distinct voters on one poll.
pub async fn flash_poll(clients: &Clients, stores: &Stores, plan: Plan) -> anyhow::Result<Row> {
    let poll = run_name("flash");
    clients
        .define(
            "polls",
            serde_json::json!({"id": poll, "options": OPTIONS, "title": "flash poll"}),
        )
        .await?;
    let url = format!("{}/v1/polls/{poll}/votes", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("flash-poll", plan, |i| {
            let body = PollVoteBody {
                id: None,
                voter: format!("v{i}").try_into().expect("voter id"),
                options: vec![OPTIONS[i % 3].try_into().expect("option")],
            };
            answer_of_request(clients.for_request(i).post(&url).json(&body))
        }),
    )
    .await;
    let mut row = Row::new("flash-poll", "single votes, one poll", &run, 1);
    row.lag_p99_ms = lag;
    let outcome = async {
        let n = stores
            .postgres_exactly("poll_votes", "poll", &poll, &run.acknowledged)
            .await?;
        let tally_key = stores.keys.poll_tally(&poll);
        let tally = stores
            .redis_matches(
                "poll tally",
                async |redis| {
                    let mut counts: std::collections::BTreeMap<String, i64> =
                        redis::AsyncCommands::hgetall(redis, &tally_key).await?;
                    counts.retain(|_, n| *n != 0);
                    Ok(counts)
                },
                async |pg| {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT o, count(*) FROM poll_choices, unnest(options) o WHERE poll = $1 GROUP BY o",
                    )
                    .bind(&poll)
                    .fetch_all(pg)
                    .await?;
                    Ok(rows.into_iter().collect())
                },
            )
            .await?;
        stores.clickhouse_count("poll_vote", &poll, n).await?;
        Ok(format!(
            "{n} rows in Postgres, Redis tally {tally:?} = Postgres, ClickHouse {n}"
        ))
    };
    checked(&mut row, outcome.await).await;
    Ok(row)
}

pub async fn answer_of_request(request: reqwest::RequestBuilder) -> Answer {
    answer_of(request.send().await).await
}

/// arena: each pair voter votes once in a session of their own, then reads their personal
/// ranking; the interaction is one request of the plan.
pub async fn arena(clients: &Clients, stores: &Stores, plan: Plan) -> anyhow::Result<Row> {
    let arena = define_arena(clients, "arena").await?;
    let base = format!("{}/v1/arenas/{arena}", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("arena", plan, |i| {
            vote_and_read(clients.for_request(i).clone(), &base, i, i)
        }),
    )
    .await;
    let mut row = Row::new("arena", "pair vote + personal ranking read", &run, 1);
    row.lag_p99_ms = lag;
    let outcome = arena_outcome(stores, &arena, &run);
    checked(&mut row, outcome.await).await;
    Ok(row)
}

/// Defines an arena of 20 items for a run.
pub async fn define_arena(clients: &Clients, kind: &str) -> anyhow::Result<String> {
    let arena = run_name(kind);
    let items: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    clients
        .define("arenas", serde_json::json!({"id": arena, "items": items}))
        .await?;
    Ok(arena)
}

/// Pair vote `i` of session `session` on the arena at `base`, then (when accepted) that
/// session's personal ranking: one interaction, one answer.
pub fn vote_and_read(
    client: reqwest::Client,
    base: &str,
    session: usize,
    i: usize,
) -> impl Future<Output = Answer> + Send + 'static {
    let (winner, loser) = (i % 20, (i * 7 + 3) % 20);
    let loser = if loser == winner {
        (loser + 1) % 20
    } else {
        loser
    };
    let body = PairVoteBody {
        id: None,
        session: format!("s{session}").try_into().expect("session id"),
        winner: format!("m{winner}").try_into().expect("item"),
        loser: format!("m{loser}").try_into().expect("item"),
    };
    let (vote, read) = (
        format!("{base}/votes"),
        format!("{base}/sessions/s{session}/ranking"),
    );
    async move {
        let answer = answer_of(client.post(vote).json(&body).send().await).await;
        if answer.status != 202 {
            return answer;
        }
        match client.get(read).send().await {
            Ok(r) if r.status() == 200 => answer,
            Ok(r) => Answer {
                status: r.status().as_u16(),
                acknowledged: answer.acknowledged,
            },
            Err(_) => Answer {
                status: 0,
                acknowledged: answer.acknowledged,
            },
        }
    }
}

/// Every acknowledged pair vote in Postgres once, Elo in Redis zero-sum over the items
/// Postgres saw, ClickHouse the same count.
pub async fn arena_outcome(stores: &Stores, arena: &str, run: &Run) -> anyhow::Result<String> {
    let n = stores
        .postgres_exactly("pair_votes", "arena", arena, &run.acknowledged)
        .await?;
    // Elo moves points from loser to winner: the ratings' sum stays items × initial.
    let elo_key = stores.keys.arena_elo(arena);
    let (rated, sum) = stores
        .redis_matches(
            "Elo items and rating sum",
            async |redis| {
                let ratings: Vec<(String, f64)> =
                    redis::AsyncCommands::zrange_withscores(redis, &elo_key, 0, -1).await?;
                let sum: f64 = ratings.iter().map(|(_, r)| r).sum();
                Ok((ratings.len() as i64, sum.round() as i64))
            },
            async |pg| {
                let (items,): (i64,) = sqlx::query_as(
                    "SELECT count(DISTINCT i) FROM pair_votes, unnest(ARRAY[winner, loser]) i WHERE arena = $1",
                )
                .bind(arena)
                .fetch_one(pg)
                .await?;
                Ok((items, items * 1000))
            },
        )
        .await?;
    stores.clickhouse_count("pair_vote", arena, n).await?;
    Ok(format!(
        "{n} rows in Postgres, {rated} items rated in Redis summing to {sum} (zero-sum Elo), ClickHouse {n}"
    ))
}

/// tournament: a burst of scores while readers fetch the top 10 and `streams` clients hold
/// the live standings stream. Returns the scores' row and the reads' row.
pub async fn tournament(
    clients: &Clients,
    stores: &Stores,
    scores: Plan,
    reads: Plan,
    streams: usize,
) -> anyhow::Result<(Row, Row)> {
    let tournament = run_name("cup");
    clients
        .define(
            "tournaments",
            serde_json::json!({"id": tournament, "title": "load cup"}),
        )
        .await?;
    let base = format!("{}/v1/tournaments/{tournament}", clients.ingest);
    // The followers: each counts the updates it received.
    let updates = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = (0..streams)
        .map(|i| {
            let (client, url, updates) = (
                clients.for_request(i).clone(),
                format!("{base}/standings/stream"),
                updates.clone(),
            );
            tokio::spawn(async move {
                let Ok(response) = client
                    .get(url)
                    .timeout(Duration::from_secs(3600))
                    .send()
                    .await
                else {
                    return false;
                };
                let mut body = response.bytes_stream();
                let mut seen = 0;
                while let Some(Ok(chunk)) = body.next().await {
                    let events = chunk.windows(5).filter(|w| w == b"data:").count();
                    seen += events;
                    updates.fetch_add(events, Ordering::Relaxed);
                }
                seen > 0
            })
        })
        .collect();
    let teams = 50;
    let score_url = format!("{base}/scores");
    let standings_url = format!("{base}/standings?limit=10");
    let ((score_run, lag), read_run) = tokio::join!(
        with_lag(
            stores,
            open_loop::run("tournament scores", scores, |i| {
                let body = ScoreBody {
                    id: None,
                    match_id: format!("r{}", i / 1000).try_into().expect("match"),
                    team: format!("team{}", i % teams).try_into().expect("team"),
                    points: (i % 3) as i64 + 1,
                };
                answer_of_request(clients.for_request(i).post(&score_url).json(&body))
            }),
        ),
        open_loop::run("standings reads", reads, |i| {
            let request = clients.for_request(i).get(&standings_url);
            async move {
                match request.send().await {
                    Ok(r) => Answer {
                        status: r.status().as_u16(),
                        acknowledged: Vec::new(),
                    },
                    Err(_) => Answer::default(),
                }
            }
        })
    );
    let mut score_row = Row::new(
        "tournament",
        "scores during reads and live streams",
        &score_run,
        1,
    );
    score_row.lag_p99_ms = lag;
    let mut read_row = Row::new("tournament reads", "standings top 10", &read_run, 1);
    let outcome = async {
        let n = stores
            .postgres_exactly("scores", "tournament", &tournament, &score_run.acknowledged)
            .await?;
        let key = stores.keys.standings(&tournament);
        stores
            .redis_matches(
                "standings",
                async |redis| {
                    let points: Vec<(String, f64)> = redis::AsyncCommands::zrange_withscores(redis, &key, 0, -1).await?;
                    Ok(points.into_iter().map(|(t, p)| (t, p as i64)).collect::<std::collections::BTreeMap<_, _>>())
                },
                async |pg| {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT team, sum(points)::bigint FROM scores WHERE tournament = $1 GROUP BY team",
                    )
                    .bind(&tournament)
                    .fetch_all(pg)
                    .await?;
                    Ok(rows.into_iter().collect())
                },
            )
            .await?;
        stores.clickhouse_count("score", &tournament, n).await?;
        Ok(format!(
            "{n} rows in Postgres, Redis standings = Postgres sums for {teams} teams, ClickHouse {n}"
        ))
    };
    checked(&mut score_row, outcome.await).await;
    // Followers saw the burst live; then they are let go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut live = 0;
    for follower in &followers {
        if follower.is_finished() {
            continue;
        }
        live += 1;
    }
    let received = updates.load(Ordering::Relaxed);
    for follower in followers {
        follower.abort();
    }
    read_row.outcome = if live == streams && received >= streams {
        format!("ok: {streams} live streams held throughout, {received} updates delivered")
    } else {
        format!("MISMATCH: {live} of {streams} streams alive, {received} updates")
    };
    Ok((score_row, read_row))
}

/// registration-rush: distinct users register for a first-come tournament with `places`.
pub async fn registration_rush(
    clients: &Clients,
    stores: &Stores,
    plan: Plan,
    places: usize,
) -> anyhow::Result<Row> {
    let tournament = run_name("rush");
    clients
        .define(
            "tournaments",
            serde_json::json!({"id": tournament, "title": "rush", "capacity": places, "mode": "first_come"}),
        )
        .await?;
    let url = format!(
        "{}/v1/tournaments/{tournament}/registrations",
        clients.ingest
    );
    let (run, lag) = with_lag(
        stores,
        open_loop::run("registration-rush", plan, |i| {
            let body = RegistrationBody {
                id: None,
                user: format!("u{i}").try_into().expect("user"),
                group: None,
            };
            answer_of_request(clients.for_request(i).post(&url).json(&body))
        }),
    )
    .await;
    let mut row = Row::new(
        "registration-rush",
        &format!("{places} places, first come"),
        &run,
        1,
    );
    row.lag_p99_ms = lag;
    let outcome = async {
        let n = stores
            .postgres_exactly(
                "registrations",
                "tournament",
                &tournament,
                &run.acknowledged,
            )
            .await?;
        let key = stores.keys.registrations(&tournament);
        stores
            .redis_matches(
                "registrants",
                async |redis| {
                    let total: Option<i64> =
                        redis::AsyncCommands::hget(redis, &key, "_total").await?;
                    Ok(total.unwrap_or(0))
                },
                async |pg| {
                    let (n,): (i64,) = sqlx::query_as(
                        "SELECT count(DISTINCT user_id) FROM registrations WHERE tournament = $1",
                    )
                    .bind(&tournament)
                    .fetch_one(pg)
                    .await?;
                    Ok(n)
                },
            )
            .await?;
        let (placed,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM registration_positions WHERE tournament = $1 AND position <= $2",
        )
        .bind(&tournament)
        .bind(places as i64)
        .fetch_one(&stores.pg)
        .await?;
        if placed as usize != places.min(n) {
            bail!("{placed} placed for {places} places");
        }
        stores
            .clickhouse_count("registration", &tournament, n)
            .await?;
        Ok(format!(
            "{n} registrants in Postgres and Redis, {placed} placed in stream order, ClickHouse {n}"
        ))
    };
    checked(&mut row, outcome.await).await;
    Ok(row)
}

/// batch: `POST /v1/events` with `size` votes per request.
pub async fn batch(
    clients: &Clients,
    stores: &Stores,
    plan: Plan,
    size: usize,
) -> anyhow::Result<Row> {
    let poll = run_name("batch");
    clients
        .define("polls", serde_json::json!({"id": poll, "options": OPTIONS}))
        .await?;
    let poll_id: tally_schema::ids::PollId = poll
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = format!("{}/v1/events", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("batch", plan, |r| {
            let items: Vec<BatchItem> = (r * size..(r + 1) * size)
                .map(|i| BatchItem::PollVote {
                    poll: poll_id.clone(),
                    body: PollVoteBody {
                        id: None,
                        voter: format!("b{i}").try_into().expect("voter"),
                        options: vec![OPTIONS[i % 3].try_into().expect("option")],
                    },
                })
                .collect();
            answer_of_request(
                clients
                    .for_request(r)
                    .post(&url)
                    .json(&serde_json::json!({"events": items})),
            )
        }),
    )
    .await;
    let mut row = Row::new("batch", &format!("{size} votes per request"), &run, size);
    row.lag_p99_ms = lag;
    let outcome = async {
        // A 207 acknowledges some items and refuses others (each with its own status).
        let offered = run.plan.requests * size;
        let n = stores
            .postgres_exactly("poll_votes", "poll", &poll, &run.acknowledged)
            .await?;
        stores.clickhouse_count("poll_vote", &poll, n).await?;
        Ok(format!(
            "{n} of {offered} events acknowledged, each in Postgres exactly once, ClickHouse {n}"
        ))
    };
    checked(&mut row, outcome.await).await;
    Ok(row)
}
