//! Past one machine, proven on one: a three-node JetStream cluster on loopback (from
//! `deploy/nats/cluster.conf`), the event stream replicated three times, the stream's leader
//! SIGKILLed in the middle of a burst. Nothing acknowledged may be lost.

use std::time::Duration;
use tally_tests::checker::{Burst, check, keyed_votes};
use tally_tests::nats_cluster::NatsCluster;
use tally_tests::{Ingest, TestEnv, Writer};

async fn stream_leader(env: &TestEnv) -> Option<String> {
    let mut stream = env.js.get_stream(&env.nats.stream).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

async fn wait_for_new_leader(env: &TestEnv, old: &str) -> String {
    for _ in 0..300 {
        if let Some(leader) = stream_leader(env).await
            && leader != old
        {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new stream leader after {old} was killed");
}

/// Waits until the writer has declared its durable consumer, so that its start-up does not
/// race the failover.
async fn wait_for_consumer(env: &TestEnv, name: &str) {
    for _ in 0..300 {
        if let Ok(stream) = env.js.get_stream(&env.nats.stream).await
            && stream.consumer_info(name).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the writer did not declare its consumer {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_mid_burst_loses_no_acknowledged_event() {
    let mut cluster = NatsCluster::start().await;
    let env = TestEnv::on_nats(&cluster.url(), 3).await;
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
    let ingest = Ingest::start(env.ingest_config()).await;
    let workers = env.workers_config();
    let consumer = workers.writer.consumer.clone();
    let writer = Writer::start(workers).await;
    wait_for_consumer(&env, &consumer).await;
    let leader = stream_leader(&env).await.expect("the stream has a leader");

    let url = ingest.base_url();
    let timeout = Duration::from_secs(10);
    let during = tokio::spawn(async move { keyed_votes(&url, "cluster", 6000, 32, timeout).await });
    // Kill the leader once the burst is well under way.
    while env.stream_messages().await < 1500 && !during.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!during.is_finished(), "the burst got under way");
    let victim = cluster.index_of(&leader);
    let killed_at = std::time::Instant::now();
    cluster.kill(victim).await;
    let new_leader = wait_for_new_leader(&env, &leader).await;
    // Recovery: the first vote accepted after the kill (probes count like any other vote).
    let mut probes = Burst::default();
    let mut recovered = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        let probe = keyed_votes(&ingest.base_url(), "cluster", 1, 1, timeout).await;
        let accepted = probe.acknowledged.len() == 1;
        probes.merge(probe);
        if accepted {
            recovered = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("ingest accepts votes again within 30 s of the kill");
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
    let mut verdict = check(&burst, &env.stored_ids().await);
    for _ in 0..600 {
        if verdict.is_clean() && verdict.lost == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        verdict = check(&burst, &env.stored_ids().await);
    }
    println!(
        "{} acknowledged of {} sent; Postgres: {verdict}",
        burst.acknowledged.len(),
        burst.attempted.len()
    );
    assert!(verdict.is_clean(), "{verdict}");

    // The killed node comes back, catches up, and the stream is whole on three replicas.
    cluster.restart(victim);
    let mut current = 0;
    for _ in 0..300 {
        let mut stream = env.js.get_stream(&env.nats.stream).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        if let Some(c) = &info.cluster {
            current = c.replicas.iter().filter(|r| r.current).count();
            if current == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        current, 2,
        "both followers of {new_leader} are current again"
    );
    writer.stop().await;
    ingest.stop().await;
}
