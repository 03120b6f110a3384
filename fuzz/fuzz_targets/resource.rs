//! Poll, arena and tournament definitions (`tally_schema::resources::Resource::decode`): the
//! admin API's bodies, and what ingest and the lottery job read back from Postgres. The same
//! bytes go to every kind. Properties: no panic; a definition that decodes re-encodes to
//! itself (that is how it is stored); opening or closing it (admin routes) keeps it valid.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use tally_schema::resources::{Resource, ResourceKind};

/// A fixed "now" keeps runs reproducible.
const NOW_SECS: i64 = 1_800_000_000;

fn assert_stores(kind: ResourceKind, resource: &Resource, what: &str) {
    let stored = serde_json::to_vec(resource).expect("a resource serializes");
    match Resource::decode(kind, &stored) {
        Ok(back) => assert_eq!(
            &back, resource,
            "{what}: the definition changed when stored"
        ),
        Err(e) => panic!("{what}: the stored definition does not decode: {e}: {resource:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let now = DateTime::from_timestamp(NOW_SECS, 0).expect("a valid time");
    for kind in ResourceKind::ALL {
        let Ok(resource) = Resource::decode(kind, data) else {
            continue;
        };
        assert_eq!(resource.kind(), kind);
        assert_stores(kind, &resource, "as decoded");
        for open in [true, false] {
            let changed = resource.clone().with_window_state(open, now);
            assert_stores(kind, &changed, if open { "opened" } else { "closed" });
            let _ = changed.check_change_from(&resource, now);
        }
    }
});
