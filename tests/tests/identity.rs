//! Who sent it: user tokens verified against an HS256 secret and a JWKS served by a local HTTP
//! server inside the test (keys made here with openssl: ES256, RS256, EdDSA), tournaments that
//! take the user from the token, site keys that vouch, server-made ids no client key reaches,
//! live-stream caps and junk keys that cost Postgres nothing per request.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_schema::resources::{Resource, ResourceKind};
use tally_tests::{Ingest, TestEnv, fixtures, wait_until};

const SECRET: &str = "a shared secret of more than 32 bytes!";
const ISSUER: &str = "https://site.example";
const AUDIENCE: &str = "tally";

/// A private key made by openssl, and its public JWK under `kid`.
struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
    public_pem: Vec<u8>,
}

fn openssl_key(alg: Algorithm, kid: &str) -> SigningKey {
    let dir = std::env::temp_dir().join(format!("tally-jwt-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let (private, public) = (dir.join("key.pem"), dir.join("pub.pem"));
    let args: &[&str] = match alg {
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::EdDSA => &["-algorithm", "ED25519"],
        other => panic!("no openssl recipe for {other:?}"),
    };
    let status = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&private)
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let pem = std::fs::read(&private).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    let public_pem = std::fs::read(&public).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    SigningKey {
        alg,
        kid: kid.into(),
        key,
        jwk,
        public_pem,
    }
}

fn claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300})
}

fn mint(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Serves a JWKS that the test may change, on a loopback port.
async fn jwks_server(set: Arc<RwLock<JwkSet>>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let set = set.clone();
            async move { axum::Json(set.read().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks.json")
}

fn tournament(definition: Value) -> Resource {
    fixtures::resource(ResourceKind::Tournament, definition)
}

/// Sends `method path` with an optional bearer and JSON body; returns status and error code
/// (or the whole body when there is no error).
async fn call(
    http: &reqwest::Client,
    ingest: &Ingest,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, ingest.url(path));
    if let Some(b) = bearer {
        request = request.bearer_auth(b);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    match body["error"]["code"].as_str() {
        Some(code) => (status, code.into()),
        None => (status, body),
    }
}

async fn token_ingest(env: &TestEnv, jwks: &str) -> Ingest {
    let mut config = env.ingest_config();
    config.tokens.jwt_hs256_secret = Some(SECRET.into());
    config.tokens.jwks = Some(jwks.into());
    config.tokens.jwt_issuer = Some(ISSUER.into());
    config.tokens.jwt_audience = Some(AUDIENCE.into());
    config.tokens.jwt_leeway_secs = 5;
    config.tokens.jwks_refresh_secs = 1;
    Ingest::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tournament_that_requires_identity_takes_the_user_from_the_token() {
    let env = TestEnv::new().await;
    env.define([tournament(json!({
        "id": "gate", "identity": "token", "mode": "lottery", "capacity": 10,
        "groups": [{"id": "vip", "weight": 5}, {"id": "members", "weight": 2}]
    }))])
    .await;
    let (es, rs, ed) = (
        openssl_key(Algorithm::ES256, "es-1"),
        openssl_key(Algorithm::RS256, "rs-1"),
        openssl_key(Algorithm::EdDSA, "ed-1"),
    );
    let set = Arc::new(RwLock::new(JwkSet {
        keys: vec![es.jwk.clone(), rs.jwk.clone(), ed.jwk.clone()],
    }));
    let ingest = token_ingest(&env, &jwks_server(set.clone()).await).await;
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let register = "/v1/tournaments/gate/registrations";
    let u1 = json!({"user": "u1"});

    // No token, another user's token: refused, nothing published.
    let before = env.stream_messages().await;
    let u2 = hs256(&claims("u2"));
    assert_eq!(
        call(
            &http,
            &ingest,
            post.clone(),
            register,
            None,
            Some(u1.clone())
        )
        .await,
        (401, "token_required".into())
    );
    assert_eq!(
        call(
            &http,
            &ingest,
            post.clone(),
            register,
            Some(&u2),
            Some(u1.clone())
        )
        .await,
        (403, "not_your_identity".into())
    );
    // Claims and status reads too, before anything of the draw is revealed.
    let claim = "/v1/tournaments/gate/registrations/u1/claim";
    assert_eq!(
        call(&http, &ingest, post.clone(), claim, None, None).await,
        (401, "token_required".into())
    );
    assert_eq!(
        call(&http, &ingest, post.clone(), claim, Some(&u2), None).await,
        (403, "not_your_identity".into())
    );
    let status = "/v1/tournaments/gate/registrations/u1";
    let get = reqwest::Method::GET;
    assert_eq!(
        call(&http, &ingest, get.clone(), status, None, None).await,
        (401, "token_required".into())
    );
    assert_eq!(
        call(&http, &ingest, get.clone(), status, Some(&u2), None).await,
        (403, "not_your_identity".into())
    );
    let stream = "/v1/tournaments/gate/registrations/u1/stream";
    assert_eq!(
        call(
            &http,
            &ingest,
            get.clone(),
            &format!("{stream}?access_token={u2}"),
            None,
            None
        )
        .await,
        (403, "not_your_identity".into())
    );
    assert_eq!(env.stream_messages().await, before);

    // Each kind of key signs a token that works for its own user.
    for (key, user) in [(&es, "u-es"), (&rs, "u-rs"), (&ed, "u-ed")] {
        let token = mint(key, &claims(user));
        let (code, body) = call(
            &http,
            &ingest,
            post.clone(),
            register,
            Some(&token),
            Some(json!({"user": user})),
        )
        .await;
        assert_eq!(code, 202, "{:?}: {body}", key.alg);
    }
    let u1_token = hs256(&claims("u1"));
    let (code, body) = call(
        &http,
        &ingest,
        post.clone(),
        register,
        Some(&u1_token),
        Some(u1.clone()),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    // u1's own claim passes identity and meets the draw's rules (no draw yet): 409.
    assert_eq!(
        call(&http, &ingest, post.clone(), claim, Some(&u1_token), None).await,
        (409, "not_claimable".into())
    );
    // A browser passes its token on the stream's URL.
    let opened = http
        .get(ingest.url(&format!("{stream}?access_token={u1_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    drop(opened);

    // The group comes from the token, never from the body.
    let mut vip = claims("u-vip");
    vip["tally_group"] = "vip".into();
    let vip = hs256(&vip);
    let plain = hs256(&claims("u-plain"));
    assert_eq!(
        call(
            &http,
            &ingest,
            post.clone(),
            register,
            Some(&plain),
            Some(json!({"user": "u-plain", "group": "vip"}))
        )
        .await,
        (403, "group_not_granted".into())
    );
    let (code, _) = call(
        &http,
        &ingest,
        post.clone(),
        register,
        Some(&vip),
        Some(json!({"user": "u-vip"})),
    )
    .await;
    assert_eq!(code, 202);
    // A site's backend vouches for the user and group it names.
    let site = env.api_key(Role::Site).await;
    let (code, _) = call(
        &http,
        &ingest,
        post.clone(),
        register,
        Some(&site),
        Some(json!({"user": "u-site", "group": "members"})),
    )
    .await;
    assert_eq!(code, 202);
    let viewer = env.api_key(Role::Viewer).await;
    assert_eq!(
        call(
            &http,
            &ingest,
            post.clone(),
            register,
            Some(&viewer),
            Some(json!({"user": "u-v"}))
        )
        .await,
        (403, "insufficient_role".into())
    );
    // Viewer keys may read anyone's status.
    let (code, _) = call(&http, &ingest, get.clone(), status, Some(&viewer), None).await;
    assert!(code == 200 || code == 404, "{code}");
    let groups = stored_groups(&env).await;
    assert_eq!(
        groups.get("u-vip").cloned().flatten().as_deref(),
        Some("vip")
    );
    assert_eq!(
        groups.get("u-site").cloned().flatten().as_deref(),
        Some("members")
    );
    assert_eq!(groups.get("u1").cloned().flatten(), None);
    assert!(!groups.contains_key("u-plain"));

    // A key added to the JWKS after ingest started is accepted within the refresh period.
    let late = openssl_key(Algorithm::ES256, "es-2");
    let late_token = mint(&late, &claims("u-late"));
    set.write().unwrap().keys.push(late.jwk.clone());
    wait_until(
        "the rotated key to be taken",
        Duration::from_secs(5),
        async || {
            let (code, body) = call(
                &http,
                &ingest,
                post.clone(),
                register,
                Some(&late_token),
                Some(json!({"user": "u-late"})),
            )
            .await;
            if code == 202 {
                return Ok(());
            }
            assert_eq!(body, "token_unknown_key");
            Err(body)
        },
    )
    .await;
    ingest.stop().await;
}

/// Registrations on the stream, user → group (the stream is the record every store follows).
async fn stored_groups(env: &TestEnv) -> std::collections::HashMap<String, Option<String>> {
    use futures::StreamExt;
    let stream = env.js.get_stream(&env.nats.stream).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let n = env.stream_messages().await as usize;
    let mut messages = consumer.messages().await.unwrap().take(n);
    let mut groups = std::collections::HashMap::new();
    while let Some(m) = messages.next().await {
        let envelope = tally_schema::Envelope::from_json(&m.unwrap().payload).unwrap();
        if let tally_schema::Event::Registration(r) = envelope.event {
            groups.insert(r.user.to_string(), r.group.map(|g| g.to_string()));
        }
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_each_with_its_own_code() {
    use base64::Engine;
    let env = TestEnv::new().await;
    env.define([tournament(json!({"id": "gate", "identity": "token"}))])
        .await;
    let rs = openssl_key(Algorithm::RS256, "rs-1");
    let set = Arc::new(RwLock::new(JwkSet {
        keys: vec![rs.jwk.clone()],
    }));
    let ingest = token_ingest(&env, &jwks_server(set).await).await;
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("u1");
        change(&mut c);
        c
    };
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rs-1".into());
    let cases: Vec<(&str, String)> = vec![
        (
            "token_expired",
            mint(&rs, &with(&|c| c["exp"] = (now - 120).into())),
        ),
        (
            "token_not_yet_valid",
            mint(&rs, &with(&|c| c["nbf"] = (now + 600).into())),
        ),
        (
            "token_wrong_audience",
            mint(&rs, &with(&|c| c["aud"] = "other".into())),
        ),
        (
            "token_wrong_issuer",
            mint(&rs, &with(&|c| c["iss"] = "https://evil.example".into())),
        ),
        (
            "token_missing_claim",
            mint(
                &rs,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            ),
        ),
        ("token_bad_signature", {
            let other = openssl_key(Algorithm::RS256, "rs-1");
            mint(&other, &claims("u1"))
        }),
        (
            "token_algorithm_refused",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("u1"))
            ),
        ),
        // Algorithm confusion: HS256 "signed" with the RSA public key as the secret.
        (
            "token_bad_signature",
            jsonwebtoken::encode(
                &header,
                &claims("u1"),
                &EncodingKey::from_secret(&rs.public_pem).unwrap(),
            )
            .unwrap(),
        ),
        // The RSA key's kid with an EC algorithm.
        (
            "token_algorithm_refused",
            format!(
                "{}.{}.c2ln",
                b64(&json!({"alg": "ES256", "kid": "rs-1"})),
                b64(&claims("u1"))
            ),
        ),
        ("token_unknown_key", {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some("nobody".into());
            jsonwebtoken::encode(&h, &claims("u1"), &rs.key).unwrap()
        }),
        ("token_malformed", "not-a-jwt".into()),
    ];
    let before = env.stream_messages().await;
    for (expected, token) in cases {
        let (status, code) = call(
            &http,
            &ingest,
            reqwest::Method::POST,
            "/v1/tournaments/gate/registrations",
            Some(&token),
            Some(json!({"user": "u1"})),
        )
        .await;
        assert_eq!((status, code), (401, Value::from(expected)), "{token}");
    }
    assert_eq!(
        env.stream_messages().await,
        before,
        "nothing refused was published"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_key_reaches_an_id_the_server_makes() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let http = reqwest::Client::new();
    // A stranger's vote under the key the server once derived for u1's registration.
    let forged = http
        .post(ingest.url("/v1/polls/final/votes"))
        .header("idempotency-key", "registration:cup:u1")
        .json(&json!({"voter": "stranger", "options": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 202);
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["duplicate"], false);
    // The same key as a raw UUID of the registration's id: namespaced, so no collision either.
    let registration_id =
        tally_schema::ids::server_event_id(&["registration", "cup", "u1"]).to_string();
    let forged_uuid = http
        .post(ingest.url("/v1/polls/final/votes"))
        .header("idempotency-key", &registration_id)
        .json(&json!({"voter": "stranger", "options": ["a"]}))
        .send()
        .await
        .unwrap();
    let forged_uuid: Value = forged_uuid.json().await.unwrap();
    assert_eq!(forged_uuid["duplicate"], false);
    assert_ne!(forged_uuid["id"], registration_id.as_str());
    // u1's own registration is stored, under the server's id.
    let own = http
        .post(ingest.url("/v1/tournaments/cup/registrations"))
        .json(&json!({"user": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 202);
    let own: Value = own.json().await.unwrap();
    assert_eq!(own["duplicate"], false);
    assert_eq!(own["id"], registration_id.as_str());
    // The same key from the same caller, kind and scope is still one event.
    let again = http
        .post(ingest.url("/v1/polls/final/votes"))
        .header("idempotency-key", "registration:cup:u1")
        .json(&json!({"voter": "stranger", "options": ["a"]}))
        .send()
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["duplicate"].clone(), again["id"].clone()),
        (true.into(), forged["id"].clone())
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_per_address_and_counted() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("live")]).await;
    let mut config = env.ingest_config();
    config.max_streams_per_address = 2;
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let open = || http.get(ingest.url("/v1/polls/live/stream")).send();
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    let health: Value = http
        .get(ingest.url("/healthz?details=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["live_streams"]["poll"], 2);
    // A closed stream frees its place.
    drop(a);
    wait_until(
        "the place to be freed",
        Duration::from_secs(5),
        async || {
            let again = open().await.unwrap();
            if again.status() == 200 {
                Ok(())
            } else {
                Err(again.status())
            }
        },
    )
    .await;
    drop(b);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_keys_cost_postgres_no_query_each_and_admin_keeps_working() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    // Production's bound: an unknown key reads the keys at most once a second.
    config.key_miss_reload_ms = 1000;
    let ingest = Ingest::start(config).await;
    let admin = env.api_key(Role::Admin).await;
    let http = reqwest::Client::new();
    // The admin key is read once (its first use), before the flood.
    let list = |http: reqwest::Client, url: String, key: String| async move {
        http.get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        list(http.clone(), ingest.url("/admin/v1/polls"), admin.clone()).await,
        200
    );
    let queries = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap()
    };
    // An idle backend reports its counts within 10 s (PGSTAT_IDLE_INTERVAL): wait out what
    // ingest's start did, so only the flood is counted.
    let settle = Duration::from_secs(11);
    tokio::time::sleep(settle).await;
    let before = queries().await;
    let junk: Vec<_> = (0..2_000)
        .map(|i| {
            let http = http.clone();
            let url = ingest.url("/v1/polls/final/results");
            async move {
                http.get(url)
                    .bearer_auth(format!("tally_junk{i:060}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .collect();
    let flood = futures::stream::iter(junk)
        .buffer_unordered(100)
        .collect::<Vec<_>>();
    let during = list(http.clone(), ingest.url("/admin/v1/polls"), admin.clone());
    use futures::StreamExt;
    let (statuses, admin_status) = tokio::join!(flood, during);
    assert_eq!(admin_status, 200, "the admin API answers during the flood");
    assert!(statuses.iter().all(|s| *s == 403), "every junk key refused");
    tokio::time::sleep(settle).await;
    let spent = queries().await - before;
    // One read of the keys per second of flood, the periodic reads (every 5 s) and this
    // test's own few, not 2,000.
    assert!(spent < 40, "{spent} transactions for 2,000 junk keys");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_token_example_mints_tokens_tally_accepts() {
    let python = tally_tests::setting("TALLY_PYTHON", "");
    assert!(
        !python.is_empty() && std::path::Path::new(&python).exists(),
        "PyJWT's venv is not installed: run deploy/tools.sh schemathesis"
    );
    let env = TestEnv::new().await;
    env.define([tournament(json!({"id": "gate", "identity": "token",
                            "groups": [{"id": "vip", "weight": 3}]}))])
        .await;
    let mut config = env.ingest_config();
    config.tokens.jwt_hs256_secret = Some(SECRET.into());
    config.tokens.jwt_issuer = Some(ISSUER.into());
    config.tokens.jwt_audience = Some(AUDIENCE.into());
    let ingest = Ingest::start(config).await;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/mint_token.py"
    );
    let minted = std::process::Command::new(&python)
        .arg(example)
        .args(["ada", "vip"])
        .env("TALLY_JWT_HS256_SECRET", SECRET)
        .env("TALLY_JWT_ISSUER", ISSUER)
        .env("TALLY_JWT_AUDIENCE", AUDIENCE)
        .output()
        .expect("python runs");
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout).unwrap();
    let http = reqwest::Client::new();
    let (status, body) = call(
        &http,
        &ingest,
        reqwest::Method::POST,
        "/v1/tournaments/gate/registrations",
        Some(token.trim()),
        Some(json!({"user": "ada"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(stored_groups(&env).await["ada"].as_deref(), Some("vip"));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_list_grants_groups_that_a_body_cannot_claim() {
    let env = TestEnv::new().await;
    env.define([tournament(json!({"id": "club", "mode": "lottery",
                            "groups": [{"id": "vip", "weight": 5}, {"id": "members", "weight": 2}]}))]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let admin = env.api_key(Role::Admin).await;
    // The operator imports the list with the CLI, from a CSV.
    let csv = std::env::temp_dir().join(format!("tally-members-{}.csv", env.name));
    let mut text = String::from("user,group\nann,vip\n");
    text.extend((0..6_000).map(|i| format!("m{i},members\n")));
    std::fs::write(&csv, text).unwrap();
    use clap::Parser;
    let cli = tally_cli::Cli::parse_from([
        "tally",
        "--api",
        &ingest.base_url(),
        "--key",
        &admin,
        "members",
        "import",
        "club",
        csv.to_str().unwrap(),
    ]);
    tally_cli::run(cli).await.expect("the list imports");
    std::fs::remove_file(&csv).ok();
    let http = reqwest::Client::new();
    let get = reqwest::Method::GET;
    let (status, counts) = call(
        &http,
        &ingest,
        get.clone(),
        "/admin/v1/tournaments/club/members",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(counts["groups"], json!({"members": 6000, "vip": 1}));
    // A group the tournament does not have is refused, naming the member.
    let (status, code) = call(
        &http,
        &ingest,
        reqwest::Method::POST,
        "/admin/v1/tournaments/club/members",
        Some(&admin),
        Some(json!({"members": [{"user": "x", "group": "gold"}]})),
    )
    .await;
    assert_eq!((status, code), (422, "unknown_member".into()));

    let register = |user: &str, group: Option<&str>| {
        let mut body = json!({ "user": user });
        if let Some(g) = group {
            body["group"] = g.into();
        }
        call(
            &http,
            &ingest,
            reqwest::Method::POST,
            "/v1/tournaments/club/registrations",
            None,
            Some(body),
        )
    };
    // Listed: the group comes from the list, with or without the body naming it.
    assert_eq!(register("ann", None).await.0, 202);
    assert_eq!(register("m1", Some("members")).await.0, 202);
    // Not listed, or listed elsewhere: the body cannot buy the weight.
    assert_eq!(
        register("eve", Some("vip")).await,
        (403, "group_not_granted".into())
    );
    assert_eq!(
        register("m2", Some("vip")).await,
        (403, "group_not_granted".into())
    );
    assert_eq!(register("eve", None).await.0, 202);
    // Off the list: no group any more.
    let (status, _) = call(
        &http,
        &ingest,
        reqwest::Method::DELETE,
        "/admin/v1/tournaments/club/members/m3",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(register("m3", None).await.0, 202);
    let groups = stored_groups(&env).await;
    assert_eq!(groups["ann"].as_deref(), Some("vip"));
    assert_eq!(groups["m1"].as_deref(), Some("members"));
    assert_eq!(groups["eve"], None);
    assert_eq!(groups["m3"], None);
    assert!(!groups.contains_key("m2"));
    ingest.stop().await;
}

/// A reload reads the membership changes made since the last one, not every list again
/// (issue 17): an import is its own rows once, a quiet refresh nothing, a move or a removal
/// one row each, and both instances (the one that made a change, and another that learns of
/// it) apply the lists as they are now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_lists_are_followed_change_by_change_not_reread() {
    use tally_ingest::store::{MemberChange, member_changes};
    let env = TestEnv::new().await;
    env.define([tournament(json!({"id": "club",
        "groups": [{"id": "vip", "weight": 5}, {"id": "members", "weight": 2}]}))])
        .await;
    let mut config = env.ingest_config();
    config.catalog_refresh_secs = 1;
    let here = Ingest::start(config.clone()).await;
    let there = Ingest::start(config).await;
    let admin = env.api_key(Role::Admin).await;
    let http = reqwest::Client::new();
    let members: Vec<Value> = (0..3000)
        .map(|i| json!({"user": format!("m{i}"), "group": "members"}))
        .collect();
    let path = "/admin/v1/tournaments/club/members";
    let import = async |body: Value| {
        let post = reqwest::Method::POST;
        let (status, answer) = call(&http, &here, post, path, Some(&admin), Some(body)).await;
        assert_eq!(status, 200, "{answer}");
    };
    import(json!({ "members": members })).await;
    let (mark, changes) = member_changes(&env.pool, 0).await.unwrap();
    assert_eq!(changes.len(), 3000);
    assert_eq!(
        member_changes(&env.pool, mark).await.unwrap(),
        (mark, vec![])
    );
    // A move and a removal: one row each, in the order they were made.
    let moved =
        json!({"members": [{"user": "m6", "group": "vip"}, {"user": "m7", "group": "vip"}]});
    import(moved).await;
    let removed = "/admin/v1/tournaments/club/members/m8";
    let (status, _) = call(
        &http,
        &there,
        reqwest::Method::DELETE,
        removed,
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, changes) = member_changes(&env.pool, mark).await.unwrap();
    let change = |user: &str, group: Option<&str>| MemberChange {
        tournament: "club".into(),
        user: user.into(),
        group: group.map(|g| g.try_into().unwrap()),
    };
    let moved_then_removed = [("m6", Some("vip")), ("m7", Some("vip")), ("m8", None)];
    assert_eq!(changes, moved_then_removed.map(|(u, g)| change(u, g)));
    // Both instances apply the lists as they are now (each reloads on the other's
    // announcement, and every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (ingest, user) in [(&here, "m7"), (&there, "m6"), (&here, "m8"), (&there, "m9")] {
        let body = json!({ "user": user });
        let (status, answer) = call(
            &http,
            ingest,
            reqwest::Method::POST,
            "/v1/tournaments/club/registrations",
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, 202, "{user}: {answer}");
    }
    let groups = stored_groups(&env).await;
    assert_eq!(groups["m6"].as_deref(), Some("vip"));
    assert_eq!(groups["m7"].as_deref(), Some("vip"));
    assert_eq!(groups["m8"], None);
    assert_eq!(groups["m9"].as_deref(), Some("members"));
    here.stop().await;
    there.stop().await;
}
