//! One item of `POST /v1/events` (`tally_schema::api::decode_batch_item`), from the raw JSON
//! value the batch body hands over. Properties: no panic; an item that decodes becomes an
//! event whose stream envelope decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use tally_fuzz::{assert_envelope_round_trips, envelope};
use tally_schema::api::decode_batch_item;

fuzz_target!(|data: &[u8]| {
    // What `BatchBody` holds for each item: any well-formed JSON value, unparsed.
    let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(data) else {
        return;
    };
    if let Ok((event, key)) = decode_batch_item(&raw) {
        assert_envelope_round_trips(&envelope(event, key.as_ref()));
    }
});
