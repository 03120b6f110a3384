//! The fault suite, in the style of Jepsen's queue checks: careful clients send votes without
//! pause, each with its own id and `Idempotency-Key`, retrying with the same key after a
//! timeout, a reset or a 503; meanwhile a fault is injected again and again. Afterwards every
//! store must hold exactly what the clients saw acknowledged: Postgres and ClickHouse each id
//! once, Redis the count Postgres implies, and every consumer must have drained its backlog.
//!
//! Servers a fault stops or kills are started by the test itself on ports of their own; the
//! shared ones are only ever cut off through an in-test proxy. `TALLY_FAULT_PROFILE=long`
//! runs more rounds with more clients and a one-minute ClickHouse outage.

use rand::Rng;
use std::time::Duration;
use tally_tests::checker::{Burst, Sustained};
use tally_tests::faults::{
    Outcome, OwnedNats, OwnedPostgres, OwnedRedis, OwnedServer, Proc, Profile, Scratch,
    freeze_and_kill, pause, report, settle, wait_ingest_ready,
};
use tally_tests::nats_cluster::free_port;
use tally_tests::proxy::{Mode, TcpProxy, target_of};
use tally_tests::{Pipeline, Servers, TestEnv, fixtures};

/// How long a client waits for one answer before it retries.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long ingest waits for JetStream's ack before it answers 503.
const PUBLISH_TIMEOUT_MS: u64 = 1000;
/// How long the stores get to settle after the burst.
const SETTLE: Duration = Duration::from_secs(120);

async fn finish(
    fault: &str,
    profile: &Profile,
    env: &TestEnv,
    clients: Sustained,
    poll: &str,
) -> (Burst, Outcome) {
    let burst = clients.finish(Duration::from_secs(30)).await;
    let outcome = settle(env, &burst, poll, SETTLE).await;
    println!("{}", report(fault, profile, &burst, &outcome));
    assert!(
        !burst.acknowledged.is_empty(),
        "the burst got votes through"
    );
    assert!(outcome.is_clean(), "{fault}: {outcome:?}");
    (burst, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_writer_and_aggregator_sigkilled_at_random_moments() {
    let profile = Profile::from_env();
    let scratch = Scratch::new("kill-services");
    let env = TestEnv::new().await;
    env.define([fixtures::poll("crash")]).await;
    let mut ingest_config = env.ingest_config();
    ingest_config.addr = ([127, 0, 0, 1], free_port()).into();
    ingest_config.publish_timeout_ms = PUBLISH_TIMEOUT_MS;
    let base_url = format!("http://{}", ingest_config.addr);
    let mut services = [
        Proc::start(
            "ingest",
            vec![env!("CARGO_BIN_EXE_tally-ingest-under-test").to_owned()],
            env.ingest_env(&ingest_config),
            &scratch.0,
        ),
        Proc::start(
            "writer",
            vec![env!("CARGO_BIN_EXE_tally-workers-under-test").to_owned()],
            env.workers_env(&env.workers_config()),
            &scratch.0,
        ),
        Proc::start(
            "aggregator",
            vec![env!("CARGO_BIN_EXE_tally-aggregator-under-test").to_owned()],
            env.aggregator_env(&env.aggregator_config()),
            &scratch.0,
        ),
    ];
    wait_ingest_ready(&base_url).await;

    let clients = Sustained::start(&base_url, "crash", profile.clients, CLIENT_TIMEOUT);
    let mut killed = Vec::new();
    for _ in 0..profile.rounds * 2 {
        pause(300..1500).await;
        let victim = &mut services[rand::rng().random_range(0..3)];
        victim.kill().await; // SIGKILL: nothing flushed, nothing acked, no goodbye
        killed.push(victim.name.clone());
        pause(100..800).await;
        victim.restart();
    }
    pause(500..1000).await;
    println!("SIGKILLed in turn: {killed:?}");
    finish("SIGKILL of services", &profile, &env, clients, "crash").await;
    for service in &services {
        assert!(
            !service.log_tail().contains("panicked"),
            "{} panicked:\n{}",
            service.name,
            service.log_tail()
        );
    }
}

/// Ingest, the writer and the aggregator on `env`, the careful clients on `poll`, and
/// `server` (one that `env` runs on) frozen and killed again and again under them.
async fn server_frozen_and_killed(
    server: &mut impl OwnedServer,
    env: &TestEnv,
    fault: &str,
    poll: &str,
) -> Burst {
    let profile = Profile::from_env();
    tally_tests::faults::log_if_asked();
    env.define([fixtures::poll(poll)]).await;
    let pipeline = Pipeline::build(env)
        .ingest(|c| c.publish_timeout_ms = PUBLISH_TIMEOUT_MS)
        .start()
        .await;
    let url = pipeline.ingest.base_url();
    let clients = Sustained::start(&url, poll, profile.clients, CLIENT_TIMEOUT);
    freeze_and_kill(server, profile.rounds).await;
    pause(1000..1500).await;
    let (burst, _) = finish(fault, &profile, env, clients, poll).await;
    pipeline.stop().await;
    burst
}

// Found by this test: deliveries lost in transit around a nats-server restart came back only
// after the ack wait, behind newer events the ordered sinks had applied, and were skipped as
// redeliveries. The sinks' pullers now restart delivery after a gap (kit/src/consumer.rs,
// `Recovery::Recreate`); docs/reliability.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_frozen_and_killed_mid_burst() {
    let scratch = Scratch::new("nats-faults");
    let mut nats = OwnedNats::start(&scratch.0).await;
    let servers = Servers {
        nats_url: nats.url(),
        ..Servers::default()
    };
    let env = TestEnv::on(servers).await;
    let fault = "nats-server SIGSTOP and SIGKILL";
    let burst = server_frozen_and_killed(&mut nats, &env, fault, "nats").await;
    assert!(
        burst.slowest_refusal < Duration::from_millis(PUBLISH_TIMEOUT_MS + 1500),
        "a refusal took {:?}: ingest must answer 503 quickly, not hang",
        burst.slowest_refusal
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_and_killed_mid_burst() {
    let scratch = Scratch::new("postgres-faults");
    let mut postgres = OwnedPostgres::start(&scratch.0).await;
    let servers = Servers {
        database_url: postgres.url(),
        ..Servers::default()
    };
    let env = TestEnv::on(servers).await;
    let fault = "Postgres SIGSTOP and SIGKILL";
    let burst = server_frozen_and_killed(&mut postgres, &env, fault, "pg").await;
    // Postgres is behind JetStream: its outages never cost a 202.
    assert_eq!(burst.acknowledged, burst.attempted, "{:?}", burst.statuses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_and_killed_mid_burst() {
    let scratch = Scratch::new("redis-faults");
    let mut redis = OwnedRedis::start(&scratch.0).await;
    let servers = Servers {
        redis_url: redis.url(),
        ..Servers::default()
    };
    let env = TestEnv::on(servers).await;
    let fault = "Redis SIGSTOP and SIGKILL";
    let burst = server_frozen_and_killed(&mut redis, &env, fault, "redis").await;
    // Redis holds views, not events: its outages never cost a 202.
    assert_eq!(burst.acknowledged, burst.attempted, "{:?}", burst.statuses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_unreachable_for_a_while_mid_burst() {
    let profile = Profile::from_env();
    let env = TestEnv::new().await;
    env.define([fixtures::poll("ch")]).await;
    let proxy = TcpProxy::start(target_of(&tally_tests::clickhouse_url())).await;
    let pipeline = Pipeline::build(&env)
        .aggregator(|c| c.clickhouse_url = proxy.rewrite(&tally_tests::clickhouse_url()))
        .start()
        .await;

    let url = pipeline.ingest.base_url();
    let clients = Sustained::start(&url, "ch", profile.clients, CLIENT_TIMEOUT);
    pause(1000..2000).await;
    proxy.cut();
    tokio::time::sleep(profile.clickhouse_outage).await;
    proxy.restore();
    pause(1000..2000).await;
    finish(
        &format!("ClickHouse away for {:?}", profile.clickhouse_outage),
        &profile,
        &env,
        clients,
        "ch",
    )
    .await;
    pipeline.stop().await;
}

/// Which service reaches NATS through the faulty link.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    Ingest,
    /// The aggregator: its Redis and ClickHouse sinks lose deliveries in transit and must
    /// restart delivery in order.
    Sinks,
}

/// Delay, black hole, reset and cut, in turn, between `link`'s service and NATS while the
/// careful clients vote.
async fn network_faults_to_nats(link: Link, fault: &str, poll: &str) -> Burst {
    let profile = Profile::from_env();
    tally_tests::faults::log_if_asked();
    let env = TestEnv::new().await;
    env.define([fixtures::poll(poll)]).await;
    let proxy = TcpProxy::start(target_of(&env.nats.url)).await;
    let faulty = proxy.rewrite(&env.nats.url);
    let pipeline = Pipeline::build(&env).ingest(|c| c.publish_timeout_ms = PUBLISH_TIMEOUT_MS);
    let pipeline = match link {
        Link::Ingest => pipeline.ingest(|c| c.nats.url = faulty),
        Link::Sinks => pipeline.aggregator(|c| c.nats.url = faulty),
    }
    .start()
    .await;

    let url = pipeline.ingest.base_url();
    let clients = Sustained::start(&url, poll, profile.clients, CLIENT_TIMEOUT);
    for _ in 0..profile.rounds {
        for fault in [
            Mode::Delay(Duration::from_millis(300)),
            Mode::Drop,
            Mode::Reset,
            Mode::Cut,
        ] {
            pause(500..1000).await;
            proxy.set(fault);
            pause(1000..2500).await;
            proxy.restore();
        }
    }
    pause(1000..1500).await;
    let (burst, _) = finish(fault, &profile, &env, clients, poll).await;
    pipeline.stop().await;
    burst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_dropped_and_reset_connections_between_ingest_and_nats() {
    let fault = "delay, black hole, reset and cut between ingest and NATS";
    let burst = network_faults_to_nats(Link::Ingest, fault, "net").await;
    assert!(
        burst.slowest_refusal < Duration::from_millis(PUBLISH_TIMEOUT_MS + 1500),
        "a refusal took {:?}: ingest must answer 503 quickly, not hang",
        burst.slowest_refusal
    );
    assert!(burst.retries > 0, "the faults made clients retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_dropped_and_reset_connections_between_the_sinks_and_nats() {
    let fault = "delay, black hole, reset and cut between the aggregator and NATS";
    let burst = network_faults_to_nats(Link::Sinks, fault, "sinks").await;
    // Ingest's own link is sound: the sinks' trouble never costs a 202.
    assert_eq!(burst.acknowledged, burst.attempted, "{:?}", burst.statuses);
}
