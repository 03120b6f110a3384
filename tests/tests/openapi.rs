//! `/openapi.json` is generated from the routes themselves (utoipa-axum registers each
//! handler together with its description). These tests keep the committed copy
//! (`docs/openapi.json`, what clients and schemathesis read) equal to what ingest serves, and
//! check that every documented operation is a real route.

use serde_json::Value;
use tally_tests::{Ingest, TestEnv};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

async fn served(ingest: &Ingest) -> Value {
    let response = reqwest::get(ingest.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_document_is_what_ingest_serves() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let doc = served(&ingest).await;
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("TALLY_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json differs from /openapi.json; regenerate it with \
         TALLY_UPDATE_OPENAPI=1 cargo test -p tally-tests --test openapi"
    );
    // Every public and admin area is described.
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/polls/{poll}/votes",
        "/v1/arenas/{arena}/votes",
        "/v1/tournaments/{tournament}/scores",
        "/v1/tournaments/{tournament}/registrations",
        "/v1/events",
        "/v1/polls/{poll}/results",
        "/v1/arenas/{arena}/ranking",
        "/v1/polls/{poll}/stream",
        "/admin/v1/polls",
        "/admin/v1/tournaments/{id}/close",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "PollVoteBody",
        "Poll",
        "Tournament",
        "ErrorResponse",
        "AcceptedBody",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let doc = served(&ingest).await;
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Any well-formed id: the route must answer for itself, not the fallback.
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                http.request(method.clone(), ingest.url(&concrete)).send(),
            )
            .await
            .expect("answers")
            .unwrap();
            let status = response.status().as_u16();
            let body = if response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("json"))
            {
                response.json::<Value>().await.unwrap_or_default()
            } else {
                Value::Null
            };
            assert_ne!(status, 405, "{method} {path}");
            assert_ne!(
                body["error"]["message"], "no such route",
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_ids_are_unique() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap()).unwrap();
    let mut seen = std::collections::HashSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "operationId {id} twice");
        }
    }
}
