//! Rate limits at the edge: a client over its limit gets 429 with `Retry-After`, `RateLimit`
//! and `RateLimit-Policy` and nothing is published; other clients are unaffected; Redis makes
//! several ingest instances count together; a resource's own limit replaces the route's.

use serde_json::{Value, json};
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Ingest, TestEnv};

async fn register(http: &reqwest::Client, url: &str, user: &str, ip: &str) -> reqwest::Response {
    http.post(url)
        .header("x-real-ip", ip)
        .json(&json!({"user": user}))
        .send()
        .await
        .unwrap()
}

fn limits(config: &mut tally_ingest::IngestConfig, specs: &[&str]) {
    config.rate_limits = specs.iter().map(|s| s.parse().unwrap()).collect();
    config.client_ip_header = Some("x-real-ip".into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_429_with_headers_and_others_are_unaffected() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    limits(
        &mut config,
        &["registration:actor=2/minute", "registration:ip=5/minute"],
    );
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/tournaments/cup/registrations");
    for _ in 0..2 {
        assert_eq!(register(&http, &url, "u1", "10.0.0.1").await.status(), 202);
    }
    let before = env.stream_messages().await;
    let refused = register(&http, &url, "u1", "10.0.0.1").await;
    assert_eq!(refused.status(), 429);
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let retry: u64 = header("retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    assert_eq!(
        header("ratelimit-policy"),
        "\"registration.actor\";q=2;w=60"
    );
    assert_eq!(
        header("ratelimit"),
        format!("\"registration.actor\";r=0;t={retry}")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(env.stream_messages().await, before, "nothing published");

    // Another user from the same address still gets in, until the address's own limit.
    for user in ["u2", "u3", "u4"] {
        assert_eq!(register(&http, &url, user, "10.0.0.1").await.status(), 202);
    }
    let refused = register(&http, &url, "u5", "10.0.0.1").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "\"registration.ip\";q=5;w=60"
    );
    // Someone elsewhere is unaffected by both.
    assert_eq!(register(&http, &url, "u5", "10.0.0.2").await.status(), 202);
    // Votes have no limit configured.
    let (status, _) = tally_tests::post(
        &http,
        &ingest.url("/v1/polls/final/votes"),
        &json!({"voter": "u1", "options": ["a"]}),
    )
    .await;
    assert_eq!(status, 202);
    // The batch endpoint limits per item.
    let (status, body) = tally_tests::post(
        &http,
        &ingest.url("/v1/events"),
        &json!({"events": [
            {"type": "registration", "tournament": "cup", "user": "u1"},
            {"type": "registration", "tournament": "cup", "user": "u9"},
        ]}),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"][0]["status"], 429);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_count_together() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    limits(&mut config, &["poll_vote:actor=3/minute"]);
    config.rate_limit_store = tally_ingest::rate_limit::LimitStore::Redis;
    let (a, b) = (
        Ingest::start(config.clone()).await,
        Ingest::start(config).await,
    );
    let http = reqwest::Client::new();
    let vote = json!({"voter": "ann", "options": ["a"]});
    let mut statuses = Vec::new();
    for i in 0..6 {
        let ingest = if i % 2 == 0 { &a } else { &b };
        let (status, _) =
            tally_tests::post(&http, &ingest.url("/v1/polls/final/votes"), &vote).await;
        statuses.push(status);
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429, 429]);
    assert_eq!(env.stream_messages().await, 3);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resources_own_limit_replaces_the_routes() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    limits(&mut config, &["registration:actor=100/minute"]);
    let ingest = Ingest::start(config).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "rush", "rate_limits": [{"by": "actor", "limit": 1, "per": "hour"}]}),
        )
        .await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/tournaments/rush/registrations");
    assert_eq!(register(&http, &url, "u1", "10.0.0.1").await.status(), 202);
    let refused = register(&http, &url, "u1", "10.0.0.1").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "\"registration.rush.actor\";q=1;w=3600"
    );
    // The fixture tournament keeps the route's generous limit.
    let cup = ingest.url("/v1/tournaments/cup/registrations");
    for _ in 0..3 {
        assert_eq!(register(&http, &cup, "u1", "10.0.0.1").await.status(), 202);
    }
    ingest.stop().await;
}
