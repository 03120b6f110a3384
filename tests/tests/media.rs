//! Uploads: the type comes from the bytes and must match `Content-Type`; refused uploads store
//! nothing; the original is kept in JetStream's object store, announced on the stream,
//! recorded in Postgres and served back with its type and cache headers.

use serde_json::Value;
use std::time::Duration;
use tally_tests::{Ingest, Pipeline, TestEnv, fixtures, get, wait_until};

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
    let pipeline = Pipeline::build(&env)
        .without_aggregator()
        .ingest(|c| c.media_body_limit_bytes = 64 * 1024)
        .start()
        .await;
    let ingest = &pipeline.ingest;
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
        // (A body past the limit is answered 413 from its Content-Length before it is read:
        // see uploads_lose_their_location_and_stay_within_the_tournament_quota.)
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
        let (got, answer) = upload(&http, ingest, path, content_type, body).await;
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

    let (status, accepted) = upload(&http, ingest, path, "image/png", PNG.to_vec()).await;
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
    let url = ingest.url(&format!("/v1/media/{media}"));
    let what = "the writer to record the upload";
    let body = wait_until(what, Duration::from_secs(30), async || {
        let (_, body) = get(&http, &url).await;
        if body["status"] != "received" {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(body["content_type"], "image/png");
    assert_eq!(body["bytes"], 70);
    assert_eq!(body["user"], "ann");

    // Ten uploads a minute per user by default.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            upload(
                &http,
                ingest,
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
        ingest,
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
    pipeline.stop().await;
}

fn encoded(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

async fn media_status(
    http: &reqwest::Client,
    ingest: &Ingest,
    media: &str,
    until: &[&str],
) -> Value {
    let url = ingest.url(&format!("/v1/media/{media}"));
    let what = format!("{media} to be one of {until:?}");
    wait_until(what, Duration::from_secs(60), async || {
        let (_, body) = get(http, &url).await;
        if until.iter().any(|s| body["status"] == *s) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_images_get_three_variants_and_broken_ones_fail_with_a_reason() {
    use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let wide = encoded(
        DynamicImage::ImageRgb8(RgbImage::new(3000, 1000)),
        ImageFormat::Png,
    );
    let mut truncated = wide.clone();
    truncated.truncate(wide.len() / 3);
    // Chunks intact, pixels garbled: it reaches the job, which fails it with a reason.
    let mut garbled = wide.clone();
    let idat = garbled.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(garbled[idat - 4..idat].try_into().unwrap()) as usize;
    for b in &mut garbled[idat + 4 + 2..idat + 4 + len] {
        *b ^= 0x5A;
    }
    let mut bomb = encoded(
        DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let folder: Vec<(&str, &str, Vec<u8>, bool)> = vec![
        ("wide", "image/png", wide, true),
        (
            "photo",
            "image/jpeg",
            encoded(
                DynamicImage::ImageRgb8(RgbImage::new(500, 400)),
                ImageFormat::Jpeg,
            ),
            true,
        ),
        (
            "sticker",
            "image/webp",
            encoded(
                DynamicImage::ImageRgba8(RgbaImage::new(300, 300)),
                ImageFormat::WebP,
            ),
            true,
        ),
        ("garbled", "image/png", garbled, false),
        ("bomb", "image/png", bomb, false),
    ];
    // A file cut short cannot be walked to remove its metadata: refused at once.
    let (status, answer) = upload(
        &http,
        ingest,
        "/v1/tournaments/cup/media?user=truncated",
        "image/png",
        truncated,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("not_an_image"))
    );
    let mut uploads = Vec::new();
    for (name, content_type, body, good) in folder {
        let (status, answer) = upload(
            &http,
            ingest,
            &format!("/v1/tournaments/cup/media?user={name}"),
            content_type,
            body,
        )
        .await;
        assert_eq!(status, 202, "{name}: {answer}");
        uploads.push((name, answer["media"].as_str().unwrap().to_owned(), good));
    }
    for (name, media, good) in &uploads {
        let status = media_status(&http, ingest, media, &["done", "failed"]).await;
        if !good {
            assert_eq!(status["status"], "failed", "{name}: {status}");
            assert!(
                status["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{status}"
            );
            continue;
        }
        assert_eq!(status["status"], "done", "{name}: {status}");
        for variant in ["thumb", "medium", "large"] {
            let response = http
                .get(ingest.url(&format!("/v1/media/{media}/{variant}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name} {variant}");
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let decoded = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
            let (w, h) = (decoded.width(), decoded.height());
            match (*name, variant) {
                (_, "thumb") => assert_eq!((w, h), (150, 150)),
                ("wide", "medium") => assert_eq!((w, h), (800, 267)),
                ("wide", "large") => assert_eq!((w, h), (1920, 640)),
                ("photo", _) => assert_eq!((w, h), (500, 400), "never upscaled"),
                ("sticker", _) => assert_eq!((w, h), (300, 300)),
                _ => unreachable!(),
            }
            let expected = if *name == "sticker" {
                "image/png"
            } else {
                "image/jpeg"
            };
            assert_eq!(content_type, expected, "{name} {variant}");
        }
    }
    // The workers kept running: a good upload after the broken ones is processed too.
    let (status, answer) = upload(
        &http,
        ingest,
        "/v1/tournaments/cup/media?user=late",
        "image/png",
        PNG.to_vec(),
    )
    .await;
    assert_eq!(status, 202);
    let late = media_status(
        &http,
        ingest,
        answer["media"].as_str().unwrap(),
        &["done", "failed"],
    )
    .await;
    assert_eq!(late["status"], "done", "{late}");
    // A job lost after its upload was claimed is queued again after ten minutes.
    let late_media = answer["media"].as_str().unwrap();
    sqlx::query(
        "UPDATE media_status SET status = 'queued', variants = NULL,
                updated_at = now() - interval '11 minutes' WHERE media_id = $1",
    )
    .bind(late_media)
    .execute(&env.pool)
    .await
    .unwrap();
    let again = media_status(&http, ingest, late_media, &["done"]).await;
    assert!(again["variants"]["thumb"].is_object(), "{again}");
    let unknown = http
        .get(ingest.url("/v1/media/x/poster"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    pipeline.stop().await;
}

/// A JPEG encoded here with an EXIF segment (a GPS position and a camera serial) after SOI,
/// and the length it has without it.
fn jpeg_with_gps() -> (Vec<u8>, u64) {
    let img = image::RgbImage::from_pixel(32, 16, image::Rgb([10, 120, 200]));
    let mut plain = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut plain),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let exif = b"Exif\0\0GPSLatitude=48.8584N;GPSLongitude=2.2945E;BodySerialNumber=A1B2";
    let mut tagged = plain[..2].to_vec();
    tagged.extend_from_slice(&[0xFF, 0xE1]);
    tagged.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    tagged.extend_from_slice(exif);
    tagged.extend_from_slice(&plain[2..]);
    (tagged, plain.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_lose_their_location_and_stay_within_the_tournament_quota() {
    let env = TestEnv::new().await;
    let (jpeg, stripped_len) = jpeg_with_gps();
    // Room for two uploads, not three.
    let definition =
        serde_json::json!({"id": "photos", "media_quota_bytes": stripped_len * 2 + 10});
    let kind = tally_schema::resources::ResourceKind::Tournament;
    env.define([fixtures::resource(kind, definition)]).await;
    let mut config = env.ingest_config();
    config.media_body_limit_bytes = 64 * 1024;
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let path = "/v1/tournaments/photos/media?user=ann";

    let (status, body) = upload(&http, &ingest, path, "image/jpeg", jpeg.clone()).await;
    assert_eq!(status, 202, "{body}");
    let media = body["media"].as_str().unwrap().to_owned();
    let served = http
        .get(ingest.url(&format!("/v1/media/{media}/original")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let has = |needle: &[u8]| served.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(b"GPSLatitude") && !has(b"BodySerialNumber"),
        "metadata served"
    );
    assert_eq!(served.len() as u64, stripped_len);
    let decoded = image::load_from_memory(&served).expect("still an image");
    assert_eq!((decoded.width(), decoded.height()), (32, 16));

    let (status, _) = upload(&http, &ingest, path, "image/jpeg", jpeg.clone()).await;
    assert_eq!(status, 202);
    let before = env.stream_messages().await;
    let (status, body) = upload(&http, &ingest, path, "image/jpeg", jpeg.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("media_quota_exceeded"))
    );
    assert_eq!(env.stream_messages().await, before, "nothing published");

    // A declared length past the limit is refused before the body is sent at all.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ingest.base_url().trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: image/jpeg\r\ncontent-length: 999999999\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    ingest.stop().await;
}

/// Uploads `count` PNGs to `tournament`, `parallel` at a time, each by a user of its own;
/// returns the media ids.
async fn upload_many(
    http: &reqwest::Client,
    ingest: &Ingest,
    tournament: &str,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|i| async move {
            let path = format!("/v1/tournaments/{tournament}/media?user={prefix}{i}");
            let (status, body) = upload(http, ingest, &path, "image/png", PNG.to_vec()).await;
            assert_eq!(status, 202, "{body}");
            body["media"].as_str().unwrap().to_owned()
        })
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gallery_pages_a_thousand_uploads_newest_first_without_repeats() {
    let env = TestEnv::new().await;
    let kind = tally_schema::resources::ResourceKind::Tournament;
    env.define([fixtures::resource(
        kind,
        serde_json::json!({"id": "gallery"}),
    )])
    .await;
    let pipeline = Pipeline::build(&env)
        .without_aggregator()
        .ingest(|c| {
            c.media_page_max = 64;
            // One test client uploads for everyone: room for the burst from one address.
            c.rate_limits = vec!["media_uploaded:ip=100000/minute".parse().unwrap()];
        })
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let first: std::collections::HashSet<String> = upload_many(&http, ingest, "gallery", "u", 1000)
        .await
        .into_iter()
        .collect();
    let stored = "SELECT count(*) FROM media_uploads WHERE tournament = 'gallery'";
    wait_until(
        "the writer to store 1,000 uploads",
        Duration::from_secs(120),
        async || {
            let (n,): (i64,) = sqlx::query_as(stored).fetch_one(&env.pool).await.unwrap();
            if n == 1000 { Ok(()) } else { Err(n) }
        },
    )
    .await;

    // Page through while 100 more uploads arrive: each upload at most once, every one of the
    // first thousand seen, newest first throughout.
    let arriving = upload_many(&http, ingest, "gallery", "late", 100);
    let paging = async {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => ingest.url(&format!(
                    "/v1/tournaments/gallery/media?limit=37&cursor={c}"
                )),
                None => ingest.url("/v1/tournaments/gallery/media?limit=37"),
            };
            let (status, page) = get(&http, &url).await;
            assert_eq!(status, 200, "{page}");
            let media = page["media"].as_array().unwrap();
            assert!(media.len() <= 37);
            seen.extend(media.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break seen,
            }
        }
    };
    let (late, seen) = tokio::join!(arriving, paging);
    let ids: Vec<&str> = seen.iter().map(|m| m["media"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an upload repeated across pages");
    assert!(
        first.iter().all(|m| unique.contains(m.as_str())),
        "an upload of the first thousand was skipped"
    );
    assert!(
        unique
            .iter()
            .all(|m| first.contains(*m) || late.contains(&m.to_string()))
    );
    let times: Vec<&str> = seen
        .iter()
        .map(|m| m["received_at"].as_str().unwrap())
        .collect();
    let order: Vec<chrono::DateTime<chrono::Utc>> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    for m in &seen {
        let media = m["media"].as_str().unwrap();
        assert_eq!(m["tournament"], "gallery");
        assert_eq!(m["original_url"], format!("/v1/media/{media}/original"));
        assert!(["stored", "queued", "done", "failed"].contains(&m["status"].as_str().unwrap()));
        if m["status"] == "done" {
            assert_eq!(
                m["variants"]["thumb"]["url"],
                format!("/v1/media/{media}/thumb")
            );
        }
    }
    // A finished upload's variant URLs serve the variant.
    let done = media_status(&http, ingest, ids[ids.len() - 1], &["done"]).await;
    let (status, page) = get(&http, &ingest.url("/v1/tournaments/gallery/media?limit=64")).await;
    assert_eq!(status, 200);
    assert_eq!(page["media"].as_array().unwrap().len(), 64);
    let thumb = done["variants"]["thumb"]["url"].as_str().unwrap();
    let response = http.get(ingest.url(thumb)).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // Bad pages name the field and change nothing.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=65", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
    ] {
        let url = ingest.url(&format!("/v1/tournaments/gallery/media?{query}"));
        let (status, body) = get(&http, &url).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = get(&http, &ingest.url("/v1/tournaments/nope/media")).await;
    assert_eq!(status, 404);
    pipeline.stop().await;
}
