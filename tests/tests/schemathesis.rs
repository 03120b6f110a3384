//! API conformance: schemathesis (`deploy/tools.sh schemathesis` installs it) generates requests
//! from ingest's own `/openapi.json` — valid ones and, for every parameter and body, invalid
//! ones — and checks every answer: never a 5xx, only documented status codes and content types,
//! bodies that match their documented schemas, and every schema-violating request refused.
//! Settings beyond the command line are in `tests/schemathesis.toml`.
//!
//! `TALLY_SCHEMATHESIS_EXAMPLES` (default 10) and `TALLY_SCHEMATHESIS_SEED` (default fixed, so a
//! run is reproducible) widen or vary the search.

use std::time::{Duration, Instant};
use tally_ingest::auth::Role;
use tally_tests::{Ingest, TestEnv, setting};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_conforms_to_its_openapi_document() {
    let st = setting("TALLY_SCHEMATHESIS", "");
    assert!(
        !st.is_empty() && std::path::Path::new(&st).exists(),
        "schemathesis is not installed: run deploy/tools.sh schemathesis"
    );
    let examples = setting("TALLY_SCHEMATHESIS_EXAMPLES", "10");
    let seed = setting("TALLY_SCHEMATHESIS_SEED", "20261122");
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let key = env.api_key(Role::Admin).await;
    // schemathesis keeps its example database (.hypothesis) in its working directory.
    let workdir = std::env::temp_dir().join(format!("tally-schemathesis-{}", env.name));
    std::fs::create_dir_all(&workdir).unwrap();
    let started = Instant::now();
    let run = tokio::process::Command::new(&st)
        .current_dir(&workdir)
        .args(["--config-file", CONFIG, "--no-color", "run"])
        .arg(ingest.url("/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples, "--seed", &seed])
        // One worker: with two threads, hypothesis' concurrent `ast.parse` hits a CPython 3.11
        // bug here ("SystemError: AST constructor recursion depth mismatch", a runtime error
        // of the tool, not a finding about ingest).
        .args(["--workers", "1", "--output-truncate", "true"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finishes within 10 minutes")
        .expect("schemathesis runs");
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&workdir);
    ingest.stop().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary always; the failures and errors in full when there are any.
    let shown = match out.status.success() {
        true => stdout
            .find("=== SUMMARY ===")
            .and_then(|i| stdout[..i].rfind('\n'))
            .map_or(&*stdout, |i| &stdout[i + 1..]),
        false => &*stdout,
    };
    println!("{shown}{stderr}");
    println!(
        "schemathesis: {examples} examples per operation, seed {seed}, {:.1} s",
        elapsed.as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found failures ({}); reproduce with the seed above",
        out.status
    );
    assert!(
        stdout.contains("generated") && stdout.contains("passed"),
        "schemathesis ran no test cases"
    );
}
