//! The restore drill (issue 20): Postgres archiving its WAL through pgBackRest, a backup
//! taken during a burst, the server killed and its data directory deleted, then the documented
//! restore (`deploy/backup.sh restore`, `tally-workers replay`) while votes keep coming.
//! Postgres ends with exactly the acknowledged events: what the backup lacked, the writer
//! took again from the stream.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tally_tests::faults::{OwnedPostgres, OwnedServer, Scratch};
use tally_tests::nats_cluster::repo_root;
use tally_tests::{Pipeline, Servers, TestEnv, Writer, fixtures, post_votes};

/// Runs `deploy/backup.sh` for the cluster in `scratch` (on `port`, once it runs).
fn backup_sh(scratch: &Path, port: Option<u16>, args: &[&str]) -> String {
    let mut command = std::process::Command::new(repo_root().join("deploy/backup.sh"));
    command
        .args(args)
        .env("TALLY_PG_DATA", OwnedPostgres::data_dir(scratch))
        .env("TALLY_PG_SOCKET", scratch)
        .env("TALLY_BACKUP_REPO", scratch.join("backup"));
    if let Some(port) = port {
        command.env("TALLY_PG_PORT", port.to_string());
    }
    let out = command.output().expect("deploy/backup.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deploy/backup.sh {args:?}: {stderr}");
    eprint!("{stderr}");
    String::from_utf8(out.stdout).expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restored_from_a_backup_taken_mid_burst_holds_exactly_the_acknowledged_events() {
    let scratch = Scratch::new("restore-drill");
    let dir = scratch.0.clone();
    // Postgres set up as docs/operations.md says: its WAL archived through pgBackRest.
    let archive = backup_sh(&dir, None, &["archive-command"]);
    let settings = [
        ("wal_level", "replica"),
        ("archive_mode", "on"),
        ("archive_timeout", "1"),
        ("archive_command", archive.trim()),
    ];
    let mut pg = OwnedPostgres::start_with(&dir, &settings).await;
    backup_sh(&dir, Some(pg.port), &["setup"]);
    let env = TestEnv::on(Servers {
        database_url: pg.url(),
        ..Servers::default()
    })
    .await;
    env.define([fixtures::poll("drill")]).await;
    let mut pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let url = pipeline.ingest.base_url();

    let mut acknowledged: HashSet<_> = post_votes(url.clone(), "drill", 2000, 50).await;
    // The backup runs while votes keep coming.
    let during = tokio::spawn(post_votes(url.clone(), "drill", 12_000, 4));
    let port = pg.port;
    let (d, started) = (dir.clone(), Instant::now());
    tokio::task::spawn_blocking(move || backup_sh(&d, Some(port), &["full"]))
        .await
        .unwrap();
    let backup_took = started.elapsed();
    acknowledged.extend(during.await.unwrap());
    acknowledged.extend(post_votes(url.clone(), "drill", 2000, 50).await);
    env.assert_exactly_stored(&acknowledged, Duration::from_secs(60))
        .await;

    // The disk is lost: the writer stopped, Postgres killed, its data directory gone.
    pipeline.writer.take().expect("a writer").stop().await;
    pg.proc.kill().await;
    std::fs::remove_dir_all(OwnedPostgres::data_dir(&dir)).unwrap();
    // Votes keep coming meanwhile: JetStream holds them.
    acknowledged.extend(post_votes(url.clone(), "drill", 1000, 50).await);

    // The documented restore, to the backup itself (the case with the most to fill in).
    let restoring = Instant::now();
    backup_sh(&dir, Some(pg.port), &["restore", "--to-backup"]);
    pg.proc.restart();
    pg.wait_ready().await;
    let restored = env.stored_ids().await.len();
    assert!(
        restored >= 2000 && restored < acknowledged.len(),
        "the backup holds {restored} of {} events: it should hold the first burst and lack \
         what came after it",
        acknowledged.len()
    );
    let (first, last) = tally_workers::replay(&env.workers_config()).await.unwrap();
    assert_eq!(first, 1);
    let writer = Writer::start(env.workers_config()).await;
    env.assert_exactly_stored(&acknowledged, Duration::from_secs(120))
        .await;
    eprintln!(
        "restore drill: backup {backup_took:?} during the burst; restore and replay of \
         {last} stream messages into a database holding {restored} of {} events: {:?}",
        acknowledged.len(),
        restoring.elapsed()
    );
    writer.stop().await;
    pipeline.stop().await;
}
