//! Withdrawals: a registrant gives up before the draw (not drawn), on the waitlist (leaves it,
//! those behind move up) or holding a place, won or claimed (the place goes to the next on
//! the waitlist, who is told by webhook and email with a deadline of their own); first-come
//! waitlists move the same way. Every change is an event on the stream: the status read (from
//! Redis and from Postgres), the webhooks and the stored statuses agree, and the places held
//! never exceed the capacity.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::notices::{Receiver, SmtpServer, free_port, register};
use tally_tests::{AdminClient, Ingest, Pipeline, TestEnv, get, post, wait_until};

async fn status(http: &reqwest::Client, ingest: &Ingest, t: &str, user: &str) -> Value {
    let url = ingest.url(&format!("/v1/tournaments/{t}/registrations/{user}"));
    get(http, &url).await.1["registration"].clone()
}

async fn wait_status(
    http: &reqwest::Client,
    ingest: &Ingest,
    t: &str,
    user: &str,
    want: &str,
) -> Value {
    let what = format!("{user} to be {want}");
    wait_until(what, Duration::from_secs(30), async || {
        let s = status(http, ingest, t, user).await;
        if s["status"] == want { Ok(s) } else { Err(s) }
    })
    .await
}

/// `POST …/registrations/{user}/withdraw` with `key` (none: anonymous).
async fn withdraw(
    http: &reqwest::Client,
    ingest: &Ingest,
    t: &str,
    user: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = http.post(ingest.url(&format!(
        "/v1/tournaments/{t}/registrations/{user}/withdraw"
    )));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    tally_tests::read(request).await
}

/// The data of each delivered message of `kind`, by user.
fn told(receiver: &Receiver, kind: &str) -> HashMap<String, Value> {
    receiver
        .bodies()
        .into_values()
        .filter(|b| b["type"] == kind)
        .map(|b| {
            (
                b["data"]["user"].as_str().unwrap().to_owned(),
                b["data"].clone(),
            )
        })
        .collect()
}

async fn stored_statuses(env: &TestEnv, t: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT status, count(*) FROM registration_statuses WHERE tournament = $1
         GROUP BY 1 ORDER BY 1",
    )
    .bind(t)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_winners_place_goes_to_the_next_on_the_waitlist_who_is_told() {
    let env = TestEnv::new().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tally-smtp-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let smtp = SmtpServer::start(port, &dir.join("maildir"));
    let pipeline = Pipeline::build(&env)
        .writer(|c| {
            c.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
            c.email.email_retry_schedule = vec![0.5; 8];
            c.webhooks.webhook_retry_schedule = vec![0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0];
        })
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let site = env.api_key(Role::Site).await;
    let receiver = Receiver::start().await;
    let (_, secret) = register(&admin, &receiver.url, &[]).await;
    receiver.with(|i| i.secrets = vec![secret]);
    // A long claim window: every place that moves here moves by a withdrawal, not a lapse.
    admin
        .create(
            "tournaments",
            json!({"id": "gift", "title": "The Gift", "capacity": 2, "mode": "lottery",
                   "claim_window_secs": 3600,
                   "email": {"from": "Gift <noreply@example.org>",
                             "claim_url": "https://example.org/claim/{tournament}/{user}"}}),
        )
        .await;
    let http = reqwest::Client::new();
    // Votes on another poll keep coming all along: the draw and the hand-ons must not wait
    // for an idle stream.
    let traffic = tally_tests::steady_votes(&admin, ingest).await;
    for u in 1..=7 {
        let body = json!({"user": format!("u{u}"), "email": format!("u{u}@example.org"),
                          "time_zone": "Europe/Paris"});
        let request = http
            .post(ingest.url("/v1/tournaments/gift/registrations"))
            .bearer_auth(&site)
            .json(&body);
        let (s, answer) = tally_tests::read(request).await;
        assert_eq!(s, 202, "{answer}");
    }
    wait_status(&http, ingest, "gift", "u7", "received").await;

    // Only the registrant's token or a site key withdraws, even in an anonymous tournament;
    // an unknown registrant is a 404; withdrawing again is the same event.
    let (s, refused) = withdraw(&http, ingest, "gift", "u7", None).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (401, Some("token_required"))
    );
    let (s, unknown) = withdraw(&http, ingest, "gift", "nobody", Some(&site)).await;
    assert_eq!((s, unknown["error"]["field"].as_str()), (404, Some("user")));
    let (s, first) = withdraw(&http, ingest, "gift", "u7", Some(&site)).await;
    assert_eq!(s, 202, "{first}");
    let (s, again) = withdraw(&http, ingest, "gift", "u7", Some(&site)).await;
    assert_eq!((s, &again["id"]), (202, &first["id"]));
    wait_status(&http, ingest, "gift", "u7", "withdrawn").await;

    // Withdrawn before the draw: not drawn.
    let (s, _) = admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/gift/close",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let record = wait_until("the draw", Duration::from_secs(60), async || {
        let (_, record) = get(&http, &ingest.url("/v1/tournaments/gift/draw")).await;
        if record["status"] == "drawn" {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    let drawn =
        record["winners"].as_array().unwrap().len() + record["waitlist"].as_array().unwrap().len();
    assert_eq!(drawn, 6, "the withdrawn registrant is not drawn: {record}");
    let users: Vec<String> = (1..=6).map(|u| format!("u{u}")).collect();
    let drawn = wait_until("every result", Duration::from_secs(30), async || {
        let mut by_status: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for user in &users {
            let s = status(&http, ingest, "gift", user).await;
            let position = s["position"].as_u64().unwrap_or(0);
            let tag = s["status"].as_str().unwrap_or_default().to_owned();
            by_status
                .entry(tag)
                .or_default()
                .push((position, user.clone()));
        }
        let won = by_status.get("won").map_or(0, Vec::len);
        let waiting = by_status.get("waitlisted").map_or(0, Vec::len);
        if (won, waiting) == (2, 4) {
            Ok(by_status)
        } else {
            Err(format!("{by_status:?}"))
        }
    })
    .await;
    let winners: Vec<String> = drawn["won"].iter().map(|(_, u)| u.clone()).collect();
    let mut waitlist = drawn["waitlisted"].clone();
    waitlist.sort();
    let waitlist: Vec<String> = waitlist.into_iter().map(|(_, u)| u).collect();
    assert_eq!(
        status(&http, ingest, "gift", "u7").await["status"],
        "withdrawn",
        "a later result does not undo a withdrawal"
    );
    // The first waitlisted sees nobody ahead and both won places still unclaimed.
    let first = status(&http, ingest, "gift", &waitlist[0]).await;
    assert_eq!(
        (
            &first["position"],
            &first["ahead"],
            &first["unclaimed_places"]
        ),
        (&json!(1), &json!(0), &json!(2)),
        "{first}"
    );

    // A winner withdraws: the first waitlisted has the place, with a deadline of their own.
    let (s, body) = withdraw(&http, ingest, "gift", &winners[0], Some(&site)).await;
    assert_eq!(s, 202, "{body}");
    wait_status(&http, ingest, "gift", &winners[0], "withdrawn").await;
    let promoted = wait_status(&http, ingest, "gift", &waitlist[0], "won").await;
    assert_eq!(promoted["promoted"], true, "{promoted}");
    assert!(promoted["deadline"].is_string(), "{promoted}");
    // The next waitlisted leaves the queue: the one behind is next now.
    let (s, _) = withdraw(&http, ingest, "gift", &waitlist[1], Some(&site)).await;
    assert_eq!(s, 202);
    wait_status(&http, ingest, "gift", &waitlist[1], "withdrawn").await;
    let next = wait_until("the queue to move", Duration::from_secs(30), async || {
        let s = status(&http, ingest, "gift", &waitlist[2]).await;
        if s["ahead"] == 0 { Ok(s) } else { Err(s) }
    })
    .await;
    assert_eq!(next["position"], 3, "the drawn position stays: {next}");
    // The other winner claims, then gives the claimed place up: it goes to waitlist[2].
    let claim = ingest.url(&format!(
        "/v1/tournaments/gift/registrations/{}/claim",
        winners[1]
    ));
    let (s, body) = post(&http, &claim, &json!(null)).await;
    assert_eq!(s, 202, "{body}");
    wait_status(&http, ingest, "gift", &winners[1], "claimed").await;
    let (s, _) = withdraw(&http, ingest, "gift", &winners[1], Some(&site)).await;
    assert_eq!(s, 202);
    wait_status(&http, ingest, "gift", &waitlist[2], "won").await;
    // Nothing left to withdraw after a withdrawal's own place moved on; never over capacity.
    let mut held = 0;
    for user in &users {
        let s = status(&http, ingest, "gift", user).await;
        if s["status"] == "won" || s["status"] == "claimed" {
            held += 1;
        }
    }
    assert_eq!(held, 2, "never more places than the capacity");
    let last = status(&http, ingest, "gift", &waitlist[3]).await;
    assert_eq!(
        (&last["status"], &last["ahead"]),
        (&json!("waitlisted"), &json!(0)),
        "{last}"
    );

    // The webhooks: each withdrawal, and each promotion with its deadline.
    receiver
        .wait_for("every message", 6 + 1 + 4 + 2, Duration::from_secs(60))
        .await;
    let withdrawn = told(&receiver, "registration.withdrawn");
    let mut who: Vec<&String> = withdrawn.keys().collect();
    who.sort();
    let u7 = "u7".to_owned();
    let mut want = vec![&winners[0], &winners[1], &waitlist[1], &u7];
    want.sort();
    assert_eq!(who, want);
    let promotions = told(&receiver, "registration.promoted");
    assert_eq!(promotions.len(), 2, "{promotions:?}");
    for user in [&waitlist[0], &waitlist[2]] {
        assert!(
            promotions[user.as_str()]["deadline"].is_string(),
            "{promotions:?}"
        );
    }
    // The promoted are emailed (as are the two drawn winners) their claim link.
    let mails = smtp
        .wait_for("the winners' and the promoted's email", 4)
        .await;
    for user in [&waitlist[0], &waitlist[2]] {
        let mine: Vec<&String> = mails
            .iter()
            .filter(|m| m.contains(&format!("To: {user}@example.org")))
            .collect();
        assert_eq!(mine.len(), 1, "{user}: {mails:?}");
        assert!(mine[0].contains("came free"), "{}", mine[0]);
        assert!(mine[0].contains("(Europe/Paris)"), "{}", mine[0]);
    }

    // Postgres holds every change, and its fallback read agrees with Redis.
    let want: Vec<(String, i64)> = vec![
        ("claimed".into(), 1),
        ("handed_on".into(), 2),
        ("waitlisted".into(), 4),
        ("withdrawn".into(), 4),
        ("won".into(), 2),
    ];
    wait_until(
        "Postgres to hold every change",
        Duration::from_secs(30),
        async || {
            let rows = stored_statuses(&env, "gift").await;
            if rows == want {
                Ok(())
            } else {
                Err(format!("{rows:?}"))
            }
        },
    )
    .await;
    for user in users.iter().chain([&u7]) {
        let redis = status(&http, ingest, "gift", user).await;
        let postgres = tally_ingest::store::draw_result(&env.pool, "gift", user)
            .await
            .unwrap()
            .map(|s| serde_json::to_value(s).unwrap());
        assert_eq!(
            postgres.as_ref().map(|p| &p["status"]),
            Some(&redis["status"]),
            "{user}"
        );
    }
    let keys = tally_schema::redis_keys::Keys::new(env.name.clone());
    let mut redis = env.redis().await;
    let vacated: Vec<String> =
        redis::AsyncCommands::zrange(&mut redis, keys.draw_vacated("gift"), 0, -1)
            .await
            .unwrap();
    assert!(
        vacated.is_empty(),
        "every freed place was handed on: {vacated:?}"
    );
    traffic.abort();
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_come_waitlist_moves_up_when_someone_ahead_withdraws() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::start(&env).await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let site = env.api_key(Role::Site).await;
    let receiver = Receiver::start().await;
    let (_, secret) = register(&admin, &receiver.url, &["registration.promoted"]).await;
    receiver.with(|i| i.secrets = vec![secret]);
    admin
        .create("tournaments", json!({"id": "queue", "capacity": 2}))
        .await;
    let http = reqwest::Client::new();
    // One after the other: stream order is registration order.
    for u in 1..=5 {
        let url = ingest.url("/v1/tournaments/queue/registrations");
        let (s, body) = post(&http, &url, &json!({"user": format!("u{u}")})).await;
        assert_eq!(s, 202, "{body}");
    }
    let u5 = wait_status(&http, ingest, "queue", "u5", "waitlisted").await;
    assert_eq!(u5["position"], 3);

    // u1 (placed) and u4 (waitlisted) withdraw: u3 moves into a place, u5 up the queue.
    for user in ["u1", "u4"] {
        let (s, body) = withdraw(&http, ingest, "queue", user, Some(&site)).await;
        assert_eq!(s, 202, "{body}");
    }
    wait_status(&http, ingest, "queue", "u1", "withdrawn").await;
    wait_status(&http, ingest, "queue", "u4", "withdrawn").await;
    let u2 = status(&http, ingest, "queue", "u2").await;
    assert_eq!(
        (&u2["status"], &u2["position"]),
        (&json!("placed"), &json!(1))
    );
    let u3 = wait_status(&http, ingest, "queue", "u3", "placed").await;
    assert_eq!(u3["position"], 2);
    let u5 = status(&http, ingest, "queue", "u5").await;
    assert_eq!(
        (&u5["status"], &u5["position"]),
        (&json!("waitlisted"), &json!(1))
    );
    // The fallback read (Postgres) counts the same positions.
    wait_until("Postgres positions", Duration::from_secs(30), async || {
        let mut got = Vec::new();
        for user in ["u2", "u3", "u5"] {
            got.push(
                tally_ingest::store::registrant_position(&env.pool, "queue", user)
                    .await
                    .unwrap(),
            );
        }
        if got == [Some(1), Some(2), Some(3)] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    // u3 is told, once, with the place they hold; Postgres has the event.
    receiver
        .wait_for("u3's promotion", 1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let promoted = told(&receiver, "registration.promoted");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!(promoted["u3"]["position"], 2);
    assert!(
        promoted["u3"].get("deadline").is_none(),
        "a first-come place needs no claim"
    );
    assert_eq!(
        stored_statuses(&env, "queue").await,
        vec![("promoted".to_owned(), 1), ("withdrawn".to_owned(), 2)]
    );
    pipeline.stop().await;
}

/// A release naming someone who withdrew just before it (in stream order) promotes nobody (the
/// script frees the place again): the writer tells no promotion for it, while a promotion of
/// someone still waiting is told.
#[tokio::test]
async fn nobody_is_told_of_a_promotion_the_script_refused() {
    use tally_schema::event::{RegistrationStatus, StatusChange};
    let env = TestEnv::new().await;
    let store = tally_workers::store::PgStore::from_pool(env.pool.clone());
    let change = |user: &str, status, promoted: Option<&str>| RegistrationStatus {
        tournament: "race".try_into().unwrap(),
        user: user.try_into().unwrap(),
        status,
        position: None,
        deadline: promoted.map(|_| chrono::Utc::now()),
        promoted: promoted.map(|p| p.try_into().unwrap()),
    };
    let stored = |seq: u64, change: RegistrationStatus, step: &str| tally_schema::StoredEvent {
        stream_seq: seq,
        envelope: tally_schema::Envelope::keyed(
            change.event_id(step),
            tally_schema::Event::RegistrationStatus(change),
        ),
    };
    // bob withdraws, then ann's lapse names him (the release step read the waitlist before
    // his withdrawal was applied); a later hand-on names cy, still waiting. In two batches.
    store
        .write(&[stored(
            1,
            change("bob", StatusChange::Withdrawn, None),
            "withdrawn",
        )])
        .await
        .unwrap();
    store
        .write(&[
            stored(
                2,
                change("ann", StatusChange::Released, Some("bob")),
                "released",
            ),
            stored(
                3,
                change("ann", StatusChange::HandedOn, Some("cy")),
                "handed_on:2",
            ),
        ])
        .await
        .unwrap();
    let told: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_type, body::jsonb->'data'->>'user' FROM webhook_messages ORDER BY 1, 2",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let want = [
        ("registration.promoted", "cy"),
        ("registration.released", "ann"),
        ("registration.withdrawn", "bob"),
    ]
    .map(|(t, u)| (t.to_owned(), u.to_owned()));
    assert_eq!(told, want);
    let (released,): (Option<String>,) = sqlx::query_as(
        "SELECT body::jsonb->'data'->>'promoted' FROM webhook_messages
         WHERE event_type = 'registration.released'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        released, None,
        "the release names nobody it did not promote"
    );
}
