//! Past one machine, proven on one: a three-node JetStream cluster on loopback (from
//! `deploy/nats/cluster.conf`), the event stream replicated three times, the stream's leader
//! SIGKILLed in the middle of a burst. Nothing acknowledged may be lost.

use std::time::Duration;
use tally_tests::checker::{Burst, keyed_votes, postgres_verdict};
use tally_tests::nats_cluster::NatsCluster;
use tally_tests::{Pipeline, TestEnv, fixtures, wait_until};

async fn stream_leader(env: &TestEnv) -> Option<String> {
    let mut stream = env.js.get_stream(&env.nats.stream).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

async fn wait_for_new_leader(env: &TestEnv, old: &str) -> String {
    let what = format!("a new stream leader after {old} was killed");
    wait_until(what, Duration::from_secs(30), async || {
        stream_leader(env).await.filter(|leader| leader != old)
    })
    .await
}

/// Waits until the writer has declared its durable consumer, so that its start-up does not
/// race the failover.
async fn wait_for_consumer(env: &TestEnv, name: &str) {
    let what = format!("the writer to declare its consumer {name}");
    wait_until(what, Duration::from_secs(15), async || {
        match env.js.get_stream(&env.nats.stream).await {
            Ok(stream) => stream.consumer_info(name).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_mid_burst_loses_no_acknowledged_event() {
    let mut cluster = NatsCluster::start().await;
    let env = TestEnv::on_nats(&cluster.url(), 3).await;
    env.define([fixtures::poll("cluster")]).await;
    let info = env
        .js
        .get_stream(&env.nats.stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .clone();
    assert_eq!(info.config.num_replicas, 3, "the stream is replicated");
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let ingest = &pipeline.ingest;
    wait_for_consumer(&env, &env.workers_config().writer.consumer).await;
    let leader = stream_leader(&env).await.expect("the stream has a leader");

    let url = ingest.base_url();
    let timeout = Duration::from_secs(10);
    let during = tokio::spawn(async move { keyed_votes(&url, "cluster", 6000, 32, timeout).await });
    // Kill the leader once the burst is well under way.
    wait_until(
        "the burst to get under way",
        Duration::from_secs(120),
        async || env.stream_messages().await >= 1500 || during.is_finished(),
    )
    .await;
    assert!(!during.is_finished(), "the burst got under way");
    let victim = cluster.index_of(&leader);
    let killed_at = std::time::Instant::now();
    cluster.kill(victim).await;
    let new_leader = wait_for_new_leader(&env, &leader).await;
    // Recovery: the first vote accepted after the kill (probes count like any other vote).
    let mut probes = Burst::default();
    let what = "ingest to accept votes again within 30 s of the kill";
    let within = Duration::from_secs(30).saturating_sub(killed_at.elapsed());
    let recovered = wait_until(what, within, async || {
        let probe = keyed_votes(&ingest.base_url(), "cluster", 1, 1, timeout).await;
        let accepted = probe.acknowledged.len() == 1;
        probes.merge(probe);
        if accepted {
            Ok(killed_at.elapsed())
        } else {
            Err(format!("answers {:?}", probes.statuses))
        }
    })
    .await;
    let mut burst = during.await.expect("burst ran");
    burst.merge(probes);
    println!(
        "leader {leader} SIGKILLed mid-burst, {new_leader} took over, votes accepted again \
         {recovered:?} after the kill; answers during the burst {:?}",
        burst.statuses
    );
    // After the failover the two remaining nodes take a whole burst.
    let after = keyed_votes(&ingest.base_url(), "cluster", 2000, 32, timeout).await;
    assert_eq!(
        after.acknowledged.len(),
        2000,
        "two of three nodes accept everything: {:?}",
        after.statuses
    );
    burst.merge(after);

    // Every acknowledged vote reaches Postgres exactly once, through the failover.
    let verdict = postgres_verdict(&env, &burst, Duration::from_secs(60)).await;
    println!(
        "{} acknowledged of {} sent; Postgres: {verdict}",
        burst.acknowledged.len(),
        burst.attempted.len()
    );
    assert!(verdict.is_clean(), "{verdict}");

    // The killed node comes back, catches up, and the stream is whole on three replicas.
    cluster.restart(victim);
    let what = format!("both followers of {new_leader} to be current again");
    wait_until(what, Duration::from_secs(30), async || {
        let mut stream = env.js.get_stream(&env.nats.stream).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        let current = info
            .cluster
            .as_ref()
            .map_or(0, |c| c.replicas.iter().filter(|r| r.current).count());
        if current == 2 {
            Ok(())
        } else {
            Err(format!("{current} current"))
        }
    })
    .await;
    pipeline.stop().await;
}
