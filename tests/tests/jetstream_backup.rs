//! JetStream's own backup (issue 20): `tally jetstream backup` saves the event, dead-letter
//! and media streams through the server's snapshot API, the streams are deleted, and
//! `tally jetstream restore` brings them back with the same messages and the writer's
//! consumer where it was: the writer resumes without losing or repeating an event.

use std::time::Duration;
use tally_tests::faults::Scratch;
use tally_tests::{Pipeline, TestEnv, fixtures, post_votes};

async fn cli(env: &TestEnv, args: &[&str]) {
    env.nats_cli("jetstream", args)
        .await
        .unwrap_or_else(|e| panic!("tally jetstream {args:?}: {e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_saved_through_the_snapshot_api_come_back_whole_with_their_consumers() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("kept")]).await;
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let url = pipeline.ingest.base_url();
    let mut acknowledged = post_votes(url.clone(), "kept", 3000, 50).await;
    env.assert_exactly_stored(&acknowledged, Duration::from_secs(30))
        .await;
    let spec = env.nats.spec();
    // A broadcast channel's stream is saved too.
    let channel: tally_schema::channels::Channel =
        serde_json::from_value(serde_json::json!({"id": "news"})).unwrap();
    tally_kit::channels::ensure(&env.js, &spec, &channel)
        .await
        .unwrap();
    for n in 0..3 {
        let out = tally_kit::channels::Outgoing {
            kind: tally_schema::channels::MessageKind::Message,
            payload: format!("{{\"n\":{n}}}").into(),
            message_id: None,
            expected_last: None,
        };
        tally_kit::channels::publish(&env.js, &spec, &channel.id, out, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let streams = [
        spec.name.clone(),
        spec.dead_letter_stream(),
        format!("OBJ_{}", spec.media_bucket()),
        spec.channel_stream(&channel.id),
    ];
    let scratch = Scratch::new("jetstream-backup");
    let dir = scratch.0.display().to_string();
    // Taken while the pipeline runs: the server snapshots a consistent store.
    cli(&env, &["backup", &dir]).await;
    pipeline.stop().await;

    let consumer = tally_schema::consumers::POSTGRES_WRITER;
    let mut events = env.js.get_stream(&spec.name).await.unwrap();
    let before = events.info().await.unwrap().state.clone();
    let floor_before = events
        .consumer_info(consumer)
        .await
        .unwrap()
        .ack_floor
        .stream_sequence;
    let sample = [1, before.last_sequence / 2, before.last_sequence];
    let mut payloads = Vec::new();
    for seq in sample {
        payloads.push(events.get_raw_message(seq).await.unwrap().payload);
    }
    for stream in &streams {
        env.js.delete_stream(stream).await.unwrap();
    }

    cli(&env, &["restore", &dir]).await;
    let mut events = env.js.get_stream(&spec.name).await.unwrap();
    let after = events.info().await.unwrap().state.clone();
    assert_eq!(
        (after.messages, after.first_sequence, after.last_sequence),
        (before.messages, before.first_sequence, before.last_sequence)
    );
    for (seq, payload) in sample.iter().zip(&payloads) {
        let again = events.get_raw_message(*seq).await.unwrap().payload;
        assert_eq!(&again, payload, "message {seq}");
    }
    for stream in &streams[1..] {
        env.js.get_stream(stream).await.expect("restored");
    }
    let last = tally_kit::channels::last(&env.js, &spec, &channel.id)
        .await
        .unwrap()
        .expect("the channel's messages are back");
    assert_eq!((last.seq, &last.payload[..]), (3, &br#"{"n":2}"#[..]));
    let floor_after = events
        .consumer_info(consumer)
        .await
        .unwrap()
        .ack_floor
        .stream_sequence;
    assert_eq!(floor_after, floor_before);

    // The pipeline carries on from the restored streams: nothing lost, nothing twice.
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    acknowledged.extend(post_votes(pipeline.ingest.base_url(), "kept", 500, 50).await);
    env.assert_exactly_stored(&acknowledged, Duration::from_secs(30))
        .await;
    pipeline.stop().await;
}
