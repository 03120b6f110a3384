//! Stream messages as every sink decodes them (`tally_schema::StoredEvent::decode`, the pure
//! part of `tally_kit::consumer::decode`): the payload of any message on the event subjects.
//! Properties: no panic; an envelope that decodes re-encodes (as ingest publishes) to bytes
//! that decode to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_fuzz::assert_envelope_round_trips;
use tally_schema::StoredEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(stored) = StoredEvent::decode(42, data) {
        assert_eq!(stored.stream_seq, 42);
        let event = &stored.envelope.event;
        // What the sinks derive from every event: its kind (tables, metric labels) and scope.
        let _ = (
            event.kind().as_str(),
            event.kind().subject_tokens(),
            event.scope(),
        );
        assert_envelope_round_trips(&stored.envelope);
    }
});
