//! Uploads: the type comes from the bytes and must match `Content-Type`; refused uploads store
//! nothing; the original is kept in JetStream's object store, announced on the stream,
//! recorded in Postgres and served back with its type and cache headers.

use serde_json::Value;
use std::time::Duration;
use tally_tests::{Ingest, TestEnv, Writer};

/// A 1×1 PNG.
const PNG: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn upload(
    http: &reqwest::Client,
    ingest: &Ingest,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let response = http
        .post(ingest.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_checked_by_their_bytes_stored_and_served_back() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.media_body_limit_bytes = 64 * 1024;
    let ingest = Ingest::start(config).await;
    let writer = Writer::start(env.workers_config()).await;
    let http = reqwest::Client::new();
    let path = "/v1/tournaments/cup/media?user=ann";

    let before = env.stream_messages().await;
    let refused: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            path,
            "image/png",
            b"<svg onload=alert(1)>".to_vec(),
            422,
            "not_an_image",
        ),
        (
            path,
            "image/jpeg",
            PNG.to_vec(),
            422,
            "content_type_mismatch",
        ),
        (
            path,
            "image/gif",
            b"GIF89a".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (path, "image/png", Vec::new(), 422, "empty"),
        (
            path,
            "image/png",
            [PNG.to_vec(), vec![0; 70_000]].concat(),
            413,
            "payload_too_large",
        ),
        (
            "/v1/tournaments/cup/media",
            "image/png",
            PNG.to_vec(),
            422,
            "missing_field",
        ),
        (
            "/v1/tournaments/nope/media?user=ann",
            "image/png",
            PNG.to_vec(),
            404,
            "not_found",
        ),
    ];
    for (path, content_type, body, status, code) in refused {
        let (got, answer) = upload(&http, &ingest, path, content_type, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {content_type}"
        );
    }
    assert_eq!(
        env.stream_messages().await,
        before,
        "nothing refused was announced"
    );

    let (status, accepted) = upload(&http, &ingest, path, "image/png", PNG.to_vec()).await;
    assert_eq!(status, 202, "{accepted}");
    let media = accepted["media"].as_str().unwrap().to_owned();
    let original = http
        .get(ingest.url(&format!("/v1/media/{media}/original")))
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_eq!(original.headers()["content-type"], "image/png");
    assert!(
        original.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = original.headers()["etag"].clone();
    assert_eq!(original.bytes().await.unwrap().as_ref(), PNG.as_slice());
    let again = http
        .get(ingest.url(&format!("/v1/media/{media}/original")))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // The writer records the upload; the status route then answers from Postgres.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = http
            .get(ingest.url(&format!("/v1/media/{media}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "stored" {
            assert_eq!(body["content_type"], "image/png");
            assert_eq!(body["bytes"], 70);
            assert_eq!(body["user"], "ann");
            break;
        }
        assert_eq!(body["status"], "received", "{body}");
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ten uploads a minute per user by default.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            upload(
                &http,
                &ingest,
                "/v1/tournaments/cup/media?user=bob",
                "image/png",
                PNG.to_vec(),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 10);
    let (status, _) = upload(
        &http,
        &ingest,
        "/v1/tournaments/cup/media?user=bob",
        "image/png",
        PNG.to_vec(),
    )
    .await;
    assert_eq!(status, 429);
    let unknown = http
        .get(ingest.url("/v1/media/0000-none"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    writer.stop().await;
    ingest.stop().await;
}
