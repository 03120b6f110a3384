//! The JSON bodies of `POST /v1/polls/{poll}/votes`, `/v1/arenas/{arena}/votes`,
//! `/v1/tournaments/{t}/scores`, `/v1/tournaments/{t}/registrations` and `/v1/events`, as
//! ingest decodes them (`tally_schema::api::decode`). The same bytes go to every body type.
//! Properties: no panic; a body that decodes re-encodes to one that decodes to itself; the
//! event it becomes survives the stream envelope; each item of a batch decodes without panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use tally_fuzz::{assert_envelope_round_trips, envelope};
use tally_schema::api::{
    self, BatchBody, PairVoteBody, PollVoteBody, RegistrationBody, ScoreBody, Validate,
};
use tally_schema::ids::IdempotencyKey;

/// Decodes `bytes` as `T`; what decodes must come back from its own encoding unchanged.
fn round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + Validate + PartialEq + Debug,
{
    let body: T = api::decode(bytes).ok()?;
    let encoded = serde_json::to_vec(&body).expect("a body serializes");
    match api::decode::<T>(&encoded) {
        Ok(again) => assert_eq!(again, body, "the body changed on re-encoding"),
        Err(e) => panic!("a decoded body re-encodes to an invalid one: {e}: {body:?}"),
    }
    Some(body)
}

fn publish(event: tally_schema::Event, key: Option<&IdempotencyKey>) {
    assert_envelope_round_trips(&envelope(event, key));
}

fuzz_target!(|data: &[u8]| {
    let scope = "s";
    if let Some(b) = round_trip::<PollVoteBody>(data) {
        let key = b.id.clone();
        publish(b.into_event(scope.try_into().unwrap()), key.as_ref());
    }
    if let Some(b) = round_trip::<PairVoteBody>(data) {
        let key = b.id.clone();
        publish(b.into_event(scope.try_into().unwrap()), key.as_ref());
    }
    if let Some(b) = round_trip::<ScoreBody>(data) {
        let key = b.id.clone();
        publish(b.into_event(scope.try_into().unwrap()), key.as_ref());
    }
    if let Some(b) = round_trip::<RegistrationBody>(data) {
        let key = b.id.clone();
        publish(b.into_event(scope.try_into().unwrap()), key.as_ref());
    }
    if let Ok(batch) = api::decode::<BatchBody>(data) {
        for raw in &batch.events {
            if let Ok((event, key)) = api::decode_batch_item(raw) {
                publish(event, key.as_ref());
            }
        }
    }
});
