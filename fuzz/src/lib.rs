//! What the fuzz targets share: the envelope that ingest publishes for a decoded event, and
//! the check that the sinks' decoder gives back exactly that envelope.

use tally_schema::ids::{IdempotencyKey, KeyOwner};
use tally_schema::{Envelope, Event, StoredEvent};

/// The envelope ingest publishes for an accepted event (as `AppState::accept` builds it).
pub fn envelope(event: Event, key: Option<&IdempotencyKey>) -> Envelope {
    match key {
        Some(key) => {
            let id = key.event_id(event.kind().as_str(), event.scope(), &KeyOwner::Anonymous);
            Envelope::keyed(id, event)
        }
        None => Envelope::new(event),
    }
}

/// decode(encode(x)) == x for the stream: what ingest publishes, every sink reads back
/// unchanged.
pub fn assert_envelope_round_trips(envelope: &Envelope) {
    let back = StoredEvent::decode(1, &envelope.to_json())
        .unwrap_or_else(|e| panic!("a published envelope does not decode: {e}: {envelope:?}"));
    assert_eq!(&back.envelope, envelope, "the envelope changed on the way");
}
