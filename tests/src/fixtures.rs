//! The resources the older end-to-end tests post to, defined the way an operator would (as
//! admin API bodies) and stored before ingest starts. Tests of the rules themselves define
//! their own resources through the admin API.

use serde_json::json;
use tally_schema::resources::{Resource, ResourceKind};

fn poll_options() -> Vec<String> {
    let mut options: Vec<String> = ["a", "b", "c", "red", "blue", "green", "x"]
        .map(str::to_owned)
        .to_vec();
    options.extend((0..10).map(|i| format!("o{i}")));
    options
}

fn arena_items() -> Vec<String> {
    let mut items: Vec<String> = ["x", "y", "z", "w", "l", "m-a", "m-b"]
        .map(str::to_owned)
        .to_vec();
    items.extend((0..8).map(|i| format!("it{i}")));
    items
}

/// Open, multiple-choice polls, arenas and tournaments that accept any team and match.
pub fn standard() -> Vec<Resource> {
    let mut all = Vec::new();
    for poll in [
        "final",
        "live",
        "mix",
        "drain",
        "p",
        "away",
        "crash",
        "kill",
        "outage",
        "cluster",
        "nobody-voted",
        // The fault suite's, one per fault, and the log check's.
        "nats",
        "pg",
        "redis",
        "ch",
        "net",
        "sinks",
        "logs",
        "shed",
    ] {
        all.push(json!({"id": poll, "options": poll_options(), "multiple": true}));
    }
    let decode = |kind, v: serde_json::Value| {
        Resource::decode(kind, v.to_string().as_bytes()).expect("fixture is valid")
    };
    let mut resources: Vec<Resource> = all
        .into_iter()
        .map(|v| decode(ResourceKind::Poll, v))
        .collect();
    for arena in ["models", "ar", "a"] {
        resources.push(decode(
            ResourceKind::Arena,
            json!({"id": arena, "items": arena_items()}),
        ));
    }
    resources.push(decode(
        ResourceKind::Tournament,
        json!({"id": "cup", "groups": [{"id": "vip", "weight": 2.0}]}),
    ));
    resources
}
