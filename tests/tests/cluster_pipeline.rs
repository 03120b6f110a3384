//! The whole pipeline across three nats-servers on loopback (issue 20): two ingests, two
//! Postgres writers sharing their consumer, an active aggregator and a standby, the stream at
//! three replicas. Mid-burst, with careful clients on both ingests, the stream's leader is
//! SIGKILLed and so is the active aggregator. Nothing acknowledged may be lost, nothing counted
//! twice: Postgres holds exactly the acknowledged votes (and perhaps some whose answer was
//! lost), Redis and ClickHouse count what Postgres holds, once.

use std::collections::HashMap;
use std::time::Duration;
use tally_tests::checker::{Sustained, postgres_verdict};
use tally_tests::nats_cluster::NatsCluster;
use tally_tests::{Aggregator, Ingest, TestEnv, Writer, fixtures, wait_until};

const POLL: &str = "spread";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_and_the_active_aggregator_dying_mid_burst_lose_and_double_nothing() {
    let mut cluster = NatsCluster::start().await;
    let env = TestEnv::on_nats(&cluster.url(), 3).await;
    env.define([fixtures::poll(POLL)]).await;
    let ingests = [
        Ingest::start(env.ingest_config()).await,
        Ingest::start(env.ingest_config()).await,
    ];
    let writers = [
        Writer::start(env.workers_config()).await,
        Writer::start(env.workers_config()).await,
    ];
    let active = Aggregator::start(env.aggregator_config()).await;
    // The first aggregator holds the lease before the standby starts.
    let mut probe = tally_tests::checker::keyed_votes(
        &ingests[0].base_url(),
        POLL,
        1,
        1,
        Duration::from_secs(10),
    )
    .await;
    env.wait_applied(env.stream_messages().await).await;
    let standby = Aggregator::start(env.aggregator_config()).await;

    let timeout = Duration::from_secs(10);
    let clients: Vec<Sustained> = ingests
        .iter()
        .map(|ingest| Sustained::start(&ingest.base_url(), POLL, 8, timeout))
        .collect();
    wait_until(
        "the burst to get under way",
        Duration::from_secs(60),
        async || env.stream_messages().await >= 1500,
    )
    .await;
    let leader = {
        let mut stream = env.js.get_stream(&env.nats.stream).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        info.cluster.as_ref().and_then(|c| c.leader.clone())
    }
    .expect("the stream has a leader");
    let victim = cluster.index_of(&leader);
    cluster.kill(victim).await;
    active.crash().await;
    // The burst goes on through the failover and the standby's takeover.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut burst = tally_tests::checker::Burst::default();
    for clients in clients {
        burst.merge(clients.finish(Duration::from_secs(60)).await);
    }
    probe.merge(std::mem::take(&mut burst));
    let burst = probe;
    println!(
        "{leader} and the active aggregator SIGKILLed mid-burst: {} acknowledged of {} sent, \
         answers {:?}, {} retries",
        burst.acknowledged.len(),
        burst.attempted.len(),
        burst.statuses,
        burst.retries
    );
    assert!(burst.acknowledged.len() >= 1500, "{:?}", burst.statuses);

    // Postgres: every acknowledged vote, once.
    let verdict = postgres_verdict(&env, &burst, Duration::from_secs(60)).await;
    assert!(verdict.is_clean(), "{verdict}");
    let stored = env.stored_ids().await.len() as i64;

    // Redis and ClickHouse (written by the standby since the takeover): what Postgres holds.
    env.wait_applied(env.stream_messages().await).await;
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis::AsyncCommands::hgetall(
        &mut redis,
        tally_schema::redis_keys::Keys::new(env.name.clone()).poll_tally(POLL),
    )
    .await
    .unwrap();
    assert_eq!(tally.values().sum::<i64>(), stored, "{tally:?}");
    let db = format!("tally_{}", env.name);
    let what = format!("ClickHouse to hold the {stored} stored votes once");
    wait_until(what, Duration::from_secs(60), async || {
        let query = format!("SELECT count(), uniqExact(id) FROM {db}.events");
        let counts = tally_tests::try_clickhouse(&query).await?;
        match counts.first().map(|r| (r[0].as_str(), r[1].as_str())) {
            Some((n, unique)) if n == stored.to_string() && unique == n => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    cluster.restart(victim);
    standby.stop().await;
    for writer in writers {
        writer.stop().await;
    }
    for ingest in ingests {
        ingest.stop().await;
    }
}
