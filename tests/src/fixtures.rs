//! Resources for tests, defined the way an operator would (as admin API bodies). Every
//! [`crate::TestEnv`] holds the [`standard`] three; a test that posts to anything else declares
//! it itself before ingest starts, e.g. `env.define([fixtures::poll("crash")]).await`, or
//! through the admin API once ingest runs ([`crate::AdminClient::create`]). Adding a test never
//! edits this file.

use serde_json::json;
use tally_schema::resources::{Resource, ResourceKind};

/// Any definition, as the admin API takes it; panics if it is invalid.
pub fn resource(kind: ResourceKind, definition: serde_json::Value) -> Resource {
    Resource::decode(kind, definition.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{} {definition} is invalid: {e}", kind.as_str()))
}

/// An open, multiple-choice poll with options `a`, `b`, `c`, `red`, `blue`, `green`, `x` and
/// `o0` to `o9`.
pub fn poll(id: &str) -> Resource {
    let mut options: Vec<String> = ["a", "b", "c", "red", "blue", "green", "x"]
        .map(str::to_owned)
        .to_vec();
    options.extend((0..10).map(|i| format!("o{i}")));
    resource(
        ResourceKind::Poll,
        json!({"id": id, "options": options, "multiple": true}),
    )
}

/// An open arena with items `x`, `y`, `z`, `w`, `l`, `m-a`, `m-b` and `it0` to `it7`.
pub fn arena(id: &str) -> Resource {
    let mut items: Vec<String> = ["x", "y", "z", "w", "l", "m-a", "m-b"]
        .map(str::to_owned)
        .to_vec();
    items.extend((0..8).map(|i| format!("it{i}")));
    resource(ResourceKind::Arena, json!({"id": id, "items": items}))
}

/// An open tournament that accepts any team and match, with one group, `vip`, of weight 2.
pub fn tournament(id: &str) -> Resource {
    resource(
        ResourceKind::Tournament,
        json!({"id": id, "groups": [{"id": "vip", "weight": 2.0}]}),
    )
}

/// What most tests post to: the poll `final`, the arena `models` and the tournament `cup`.
pub fn standard() -> Vec<Resource> {
    vec![poll("final"), arena("models"), tournament("cup")]
}
