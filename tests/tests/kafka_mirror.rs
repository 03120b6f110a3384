//! The Kafka mirror against a real Kafka-protocol broker (tansu, started by the test on a
//! loopback port): every acknowledged event reaches the topic keyed by its scope, in stream
//! order per scope, also when the aggregator is killed mid-burst and while the broker is
//! frozen (nothing is acknowledged to JetStream before Kafka has it).

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tally_tests::checker::{Burst, keyed_votes};
use tally_tests::{Aggregator, Ingest, TestEnv, Wait, fixtures, setting, wait_until};
use tokio::process::{Child, Command};
use uuid::Uuid;

const PARTITIONS: i32 = 3;

struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    async fn start() -> Self {
        let binary = setting("TALLY_TANSU", "");
        assert!(
            std::path::Path::new(&binary).exists(),
            "tansu is not installed: run deploy/tools.sh"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let address = format!("127.0.0.1:{port}");
        let what = format!("tansu to listen on {address}");
        wait_until(what, Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(&address).await.is_ok()
        })
        .await;
        Self { child, address }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("broker runs").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// One record of the mirror's topic.
struct Mirrored {
    key: String,
    id: Uuid,
    seq: u64,
}

/// Reads the whole topic from the beginning until `expected` distinct ids were seen (or
/// `within` passed), partition by partition in offset order.
fn read_topic(broker: &str, topic: &str, expected: usize, within: Duration) -> Vec<Vec<Mirrored>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("{topic}-check"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("Kafka consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut partitions: Vec<Vec<Mirrored>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + within;
    while seen.len() < expected && std::time::Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.expect("fetch");
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| panic!("header {name}"))
        };
        let record = Mirrored {
            key: String::from_utf8_lossy(message.key().expect("key")).into_owned(),
            id: header("tally-event-id").parse().expect("uuid"),
            seq: header("tally-seq").parse().expect("seq"),
        };
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().expect("payload")).expect("JSON event");
        assert_eq!(
            envelope["id"].as_str(),
            Some(record.id.to_string().as_str())
        );
        seen.insert(record.id);
        partitions[message.partition() as usize].push(record);
    }
    partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_is_mirrored_keyed_by_scope_in_order_through_crash_and_outage() {
    let broker = Broker::start().await;
    let env = TestEnv::new().await;
    env.define([fixtures::poll("live")]).await;
    let mut config = env.aggregator_config();
    config.kafka_brokers = Some(broker.address.clone());
    config.kafka_topic = env.name.clone();
    config.kafka_partitions = PARTITIONS;
    let ingest = Ingest::start(env.ingest_config()).await;
    let aggregator = Aggregator::start(config.clone()).await;
    let stream = env.js.get_stream(&env.nats.stream).await.expect("stream");
    let mirrored = || async {
        stream
            .consumer_info(&config.kafka_consumer)
            .await
            .map_or(0, |i| i.ack_floor.stream_sequence)
    };

    // A burst over two scopes, the aggregator killed in the middle of it.
    let url = ingest.base_url();
    let timeout = Duration::from_secs(10);
    let (u1, u2) = (url.clone(), url.clone());
    let first = tokio::spawn(async move { keyed_votes(&u1, "final", 1500, 16, timeout).await });
    let second = tokio::spawn(async move { keyed_votes(&u2, "live", 1500, 16, timeout).await });
    Wait::new("500 events mirrored", Duration::from_secs(60))
        .every(Duration::from_millis(10))
        .until(async || mirrored().await >= 500)
        .await;
    aggregator.crash().await;
    let aggregator = Aggregator::start(config.clone()).await;
    let mut burst = first.await.unwrap();
    burst.merge(second.await.unwrap());
    assert_eq!(burst.acknowledged.len(), 3000, "{:?}", burst.statuses);

    // The broker frozen: JetStream keeps the events unacknowledged until Kafka has them.
    let floor = wait_until(
        "the burst mirrored",
        Duration::from_secs(90),
        async || match mirrored().await {
            floor if floor >= 3000 => Ok(floor),
            floor => Err(format!("acknowledged up to {floor}")),
        },
    )
    .await;
    broker.signal("-STOP");
    let during: Burst = keyed_votes(&url, "final", 300, 16, timeout).await;
    assert_eq!(
        during.acknowledged.len(),
        300,
        "ingest does not wait for Kafka"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mirrored().await,
        floor,
        "nothing is acknowledged to JetStream while Kafka cannot take it"
    );
    broker.signal("-CONT");
    burst.merge(during);

    let expected = burst.acknowledged.len();
    let address = broker.address.clone();
    let topic = env.name.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        read_topic(&address, &topic, expected, Duration::from_secs(90))
    })
    .await
    .unwrap();

    // Nothing lost, nothing foreign; a scope lives in one partition, in stream order.
    let mut first_seen: HashSet<Uuid> = HashSet::new();
    let mut duplicates = 0;
    let mut partition_of: HashMap<String, usize> = HashMap::new();
    for (p, records) in partitions.iter().enumerate() {
        let mut last_seq: HashMap<&str, u64> = HashMap::new();
        for r in records {
            assert_eq!(
                *partition_of.entry(r.key.clone()).or_insert(p),
                p,
                "{} in two partitions",
                r.key
            );
            if !first_seen.insert(r.id) {
                duplicates += 1; // a re-sent batch after the crash: at least once
                continue;
            }
            let last = last_seq.entry(&r.key).or_insert(0);
            assert!(r.seq > *last, "{}: seq {} after {}", r.key, r.seq, last);
            *last = r.seq;
        }
    }
    let lost = burst.acknowledged.difference(&first_seen).count();
    let unexpected = first_seen.difference(&burst.attempted).count();
    println!(
        "Kafka mirror: {} acknowledged, {} mirrored, lost {lost}, unexpected {unexpected}, \
         re-sent after the crash {duplicates}",
        expected,
        first_seen.len()
    );
    assert_eq!((lost, unexpected), (0, 0));
    assert_eq!(partition_of.len(), 2, "keyed by scope: final and live");
    aggregator.stop().await;
    ingest.stop().await;
}
