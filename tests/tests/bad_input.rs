//! Bad input gets the right 4xx with a JSON error naming the field, and publishes nothing.

use serde_json::Value;
use tally_tests::{Ingest, TestEnv, fixtures};

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: &str,
    status: u16,
    code: &'static str,
    field: &'static str,
) -> Case {
    Case {
        name,
        path,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code,
        field,
    }
}

const VOTE: &str = "/v1/polls/final/votes";

fn cases() -> Vec<Case> {
    let many_events: Vec<String> = (0..1001)
        .map(|i| format!(r#"{{"type":"registration","tournament":"t","user":"u{i}"}}"#))
        .collect();
    vec![
        case(
            "malformed JSON",
            VOTE,
            r#"{"voter":"v","options":["a"#,
            400,
            "malformed_json",
            "",
        ),
        case("empty body", VOTE, "", 400, "malformed_json", ""),
        case("not an object", VOTE, "[1,2]", 422, "invalid_type", ""),
        case(
            "wrong type",
            VOTE,
            r#"{"voter":"v","options":[1]}"#,
            422,
            "invalid_type",
            "options[0]",
        ),
        case(
            "string for a number",
            "/v1/tournaments/cup/scores",
            r#"{"match":"m","team":"t","points":"3"}"#,
            422,
            "invalid_type",
            "points",
        ),
        case(
            "server-owned field",
            VOTE,
            r#"{"voter":"v","options":["a"],"received_at":"2020-01-01T00:00:00Z"}"#,
            422,
            "unknown_field",
            "received_at",
        ),
        case(
            "missing field",
            "/v1/arenas/a/votes",
            r#"{"session":"s","winner":"x"}"#,
            422,
            "missing_field",
            "loser",
        ),
        case(
            "bad charset",
            VOTE,
            r#"{"voter":"v;drop table","options":["a"]}"#,
            422,
            "invalid_value",
            "voter",
        ),
        case(
            "NUL byte",
            VOTE,
            r#"{"voter":"v\u0000","options":["a"]}"#,
            422,
            "invalid_value",
            "voter",
        ),
        case(
            "right-to-left override",
            VOTE,
            r#"{"voter":"v\u202e","options":["a"]}"#,
            422,
            "invalid_value",
            "voter",
        ),
        case(
            "too long id",
            VOTE,
            &format!(r#"{{"voter":"{}","options":["a"]}}"#, "v".repeat(129)),
            422,
            "invalid_value",
            "voter",
        ),
        case(
            "no options",
            VOTE,
            r#"{"voter":"v","options":[]}"#,
            422,
            "empty",
            "options",
        ),
        case(
            "duplicate option",
            VOTE,
            r#"{"voter":"v","options":["a","a"]}"#,
            422,
            "duplicate",
            "options[1]",
        ),
        case(
            "winner is loser",
            "/v1/arenas/a/votes",
            r#"{"session":"s","winner":"x","loser":"x"}"#,
            422,
            "same_as_winner",
            "loser",
        ),
        case(
            "enormous number",
            "/v1/tournaments/cup/scores",
            r#"{"match":"m","team":"t","points":1e300}"#,
            422,
            "invalid_type",
            "points",
        ),
        case(
            "beyond i64",
            "/v1/tournaments/cup/scores",
            r#"{"match":"m","team":"t","points":99999999999999999999}"#,
            422,
            "invalid_type",
            "points",
        ),
        case(
            "out of range",
            "/v1/tournaments/cup/scores",
            r#"{"match":"m","team":"t","points":-2000000000}"#,
            422,
            "out_of_range",
            "points",
        ),
        case(
            "deep nesting",
            VOTE,
            &format!(
                r#"{{"voter":"v","options":{}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            422,
            "invalid_type",
            "options[0]",
        ),
        case(
            "oversized body",
            VOTE,
            &format!(r#"{{"voter":"{}","options":["a"]}}"#, "v".repeat(20_000)),
            413,
            "payload_too_large",
            "",
        ),
        case(
            "bad path id",
            "/v1/polls/a.b/votes",
            r#"{"voter":"v","options":["a"]}"#,
            404,
            "not_found",
            "poll",
        ),
        case("unknown route", "/v1/nothing", "{}", 404, "not_found", ""),
        case(
            "bad idempotency key",
            VOTE,
            r#"{"id":"has space","voter":"v","options":["a"]}"#,
            422,
            "invalid_value",
            "id",
        ),
        case(
            "empty batch",
            "/v1/events",
            r#"{"events":[]}"#,
            422,
            "empty",
            "events",
        ),
        case(
            "too many batch items",
            "/v1/events",
            &format!(r#"{{"events":[{}]}}"#, many_events.join(",")),
            422,
            "too_many",
            "events",
        ),
        Case {
            name: "invalid UTF-8",
            path: VOTE,
            content_type: Some("application/json"),
            body: b"{\"voter\":\"v\xff\xfe\",\"options\":[\"a\"]}".to_vec(),
            status: 400,
            code: "malformed_json",
            field: "",
        },
        Case {
            name: "wrong content type",
            path: VOTE,
            content_type: Some("text/plain"),
            body: br#"{"voter":"v","options":["a"]}"#.to_vec(),
            status: 415,
            code: "unsupported_media_type",
            field: "",
        },
        Case {
            name: "no content type",
            path: VOTE,
            content_type: None,
            body: br#"{"voter":"v","options":["a"]}"#.to_vec(),
            status: 415,
            code: "unsupported_media_type",
            field: "",
        },
    ]
}

#[tokio::test]
async fn bad_input_gets_the_right_4xx_naming_the_field_and_publishes_nothing() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("p"), fixtures::arena("a")])
        .await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let http = reqwest::Client::new();
    for c in cases() {
        let mut request = http.post(ingest.url(c.path)).body(c.body.clone());
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert_eq!(body["error"]["code"], c.code, "{}: {body}", c.name);
        assert_eq!(
            body["error"]["field"].as_str().unwrap_or(""),
            c.field,
            "{}: {body}",
            c.name
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            c.name
        );
    }

    // A batch where every item is bad: 207, a reason per item, nothing published.
    let response = http
        .post(ingest.url("/v1/events"))
        .json(&serde_json::json!({"events": [
            {"type": "poll_vote", "poll": "p", "voter": "v", "options": [7]},
            {"type": "bribe", "amount": 100},
            {"type": "pair_vote", "arena": "a", "session": "s", "winner": "x", "loser": "x"},
            "not an object",
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 207);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 0);
    let fields: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["field"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(fields, vec!["options[0]", "type", "loser", ""]);

    // Header and body keys that disagree.
    let response = http
        .post(ingest.url(VOTE))
        .header("Idempotency-Key", "a")
        .json(&serde_json::json!({"id": "b", "voter": "v", "options": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    // A known path with a method it does not take: JSON 405 with Allow.
    let response = http.delete(ingest.url(VOTE)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    assert_eq!(
        env.stream_messages().await,
        0,
        "no rejected input reached the stream"
    );
    assert_eq!(
        http.get(ingest.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still alive"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_may_call_from_a_browser() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.cors_origins = vec!["https://vote.example.org".into()];
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, ingest.url(VOTE))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://vote.example.org").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://vote.example.org"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // An actual request from an allowed origin carries the header too.
    let answer = http
        .post(ingest.url(VOTE))
        .header("origin", "https://vote.example.org")
        .json(&serde_json::json!({"voter": "v", "options": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://vote.example.org"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_ingest_refuses_unsigned_forged_stale_moved_and_replayed_writes() {
    use tally_ingest::signature::{Signed, sign};
    let signed = Signed {
        method: "POST",
        path: VOTE,
        query: "",
        idempotency_key: "",
    };
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.signing_keys = vec!["partner:s3cret".into()];
    config.require_signature = true;
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let body = br#"{"voter":"v","options":["a"]}"#.to_vec();
    let now = chrono::Utc::now().timestamp();
    let send = |ts: i64, signature: Option<String>, body: Vec<u8>| {
        let mut request = http
            .post(ingest.url(VOTE))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request
                .header("tally-key-id", "partner")
                .header("tally-timestamp", ts.to_string())
                .header("tally-signature", signature);
        }
        request.send()
    };
    let before = env.stream_messages().await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(
        code(send(now, None, body.clone()).await.unwrap()).await,
        (401, "unauthorized".into())
    );
    let forged = sign(b"guess", now, signed, &body);
    assert_eq!(
        code(send(now, Some(forged), body.clone()).await.unwrap()).await,
        (403, "invalid_signature".into())
    );
    let old = now - 600;
    let stale = sign(b"s3cret", old, signed, &body);
    assert_eq!(
        code(send(old, Some(stale), body.clone()).await.unwrap()).await,
        (403, "stale_signature".into())
    );
    let good = sign(b"s3cret", now, signed, &body);
    // Signed for another poll: the path is covered.
    let elsewhere = sign(
        b"s3cret",
        now,
        Signed {
            path: "/v1/polls/other/votes",
            ..signed
        },
        &body,
    );
    assert_eq!(
        code(send(now, Some(elsewhere), body.clone()).await.unwrap()).await,
        (403, "invalid_signature".into())
    );
    let tampered = br#"{"voter":"v","options":["b"]}"#.to_vec();
    assert_eq!(
        code(send(now, Some(good.clone()), tampered).await.unwrap()).await,
        (403, "invalid_signature".into())
    );
    assert_eq!(
        env.stream_messages().await,
        before,
        "nothing refused was published"
    );
    assert_eq!(
        send(now, Some(good.clone()), body.clone())
            .await
            .unwrap()
            .status(),
        202
    );
    // The same signed request again, as an eavesdropper would replay it: refused, on a
    // second instance too (the record is in Redis).
    assert_eq!(
        code(send(now, Some(good.clone()), body.clone()).await.unwrap()).await,
        (403, "replayed_signature".into())
    );
    let mut config = env.ingest_config();
    config.signing_keys = vec!["partner:s3cret".into()];
    config.require_signature = true;
    let second = Ingest::start(config).await;
    let replayed = http
        .post(second.url(VOTE))
        .header("content-type", "application/json")
        .header("tally-key-id", "partner")
        .header("tally-timestamp", now.to_string())
        .header("tally-signature", good)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(code(replayed).await, (403, "replayed_signature".into()));
    second.stop().await;
    // Reads need no signature.
    let read = http
        .get(ingest.url("/v1/polls/final/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    ingest.stop().await;
}

/// Writes `head`, then `trickle` one byte at a time, `every` apart, until the server answers
/// or closes; returns what it answered and when, from the first byte.
async fn trickle(
    addr: std::net::SocketAddr,
    head: String,
    trickle: Vec<u8>,
    every: std::time::Duration,
) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = {
        tokio::spawn(async move {
            write.write_all(head.as_bytes()).await?;
            for byte in trickle {
                tokio::time::sleep(every).await;
                write.write_all(&[byte]).await?;
            }
            std::io::Result::Ok(write)
        })
    };
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        read.read_to_end(&mut answer),
    )
    .await;
    writer.abort();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_are_cut_off_and_idle_connections_hold_up_nobody() {
    use std::time::{Duration, Instant};
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.request_timeout_ms = 1500;
    config.header_timeout_ms = 2000;
    let ingest = Ingest::start(config).await;
    let addr = ingest.addr;

    // Thousands of connections opened and left idle.
    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // A body trickled a byte every 300 ms, and headers trickled the same way.
    let body_head = format!(
        "POST {VOTE} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n"
    );
    let slow_body = tokio::spawn(trickle(
        addr,
        body_head,
        vec![b' '; 40],
        Duration::from_millis(300),
    ));
    let header_head = format!("POST {VOTE} HTTP/1.1\r\n");
    let slow_headers = tokio::spawn(trickle(
        addr,
        header_head,
        b"x-slow: a\r\n".repeat(400),
        Duration::from_millis(300),
    ));

    // Meanwhile others are answered at once.
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let sent = Instant::now();
        let response = http
            .post(ingest.url(VOTE))
            .json(&serde_json::json!({"voter": format!("fast-{i}"), "options": ["a"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (answer, took) = slow_body.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body is answered 408: {answer:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    let (answer, took) = slow_headers.await.unwrap();
    println!(
        "slow body: 408 after {:?}; slow headers: closed after {took:?} ({:?}); 50 others with 3,000 idle connections open: slowest {slowest:?}",
        Duration::from_millis(1500),
        answer.lines().next().unwrap_or("no answer")
    );
    assert!(
        took < Duration::from_secs(4),
        "trickled headers are cut off, not held forever ({took:?})"
    );
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    // The idle connections sent no request within the header timeout: all closed by now.
    // All read at once: one that is still open costs two seconds, not two seconds each.
    let reads = idle.iter_mut().map(|stream| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    });
    let closed = futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
    assert_eq!(
        closed,
        idle.len(),
        "idle connections are closed by the server"
    );
    drop(idle);
    assert_eq!(
        env.stream_messages().await,
        50,
        "only the fast votes were published"
    );
    ingest.stop().await;
}
