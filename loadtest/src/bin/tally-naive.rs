//! The naive reference: what a team would build without Tally. One `INSERT` per request
//! straight into Postgres, answered 202 after the commit. Same request shape as ingest's vote.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use clap::Parser;
use tally_schema::api::PollVoteBody;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8098")]
    addr: std::net::SocketAddr,
    #[arg(long, env = "TALLY_DATABASE_URL")]
    database_url: String,
    /// Postgres connections (a typical pool size).
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

async fn vote(
    State(pool): State<sqlx::PgPool>,
    Path(poll): Path<String>,
    axum::Json(body): axum::Json<PollVoteBody>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), StatusCode> {
    let id = uuid::Uuid::now_v7();
    let options: Vec<String> = body.options.iter().map(|o| o.as_str().to_owned()).collect();
    sqlx::query("INSERT INTO naive_votes (id, poll, voter, options) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(poll)
        .bind(body.voter.as_str())
        .bind(options)
        .execute(&pool)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"id": id})),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.connections)
        .connect(&args.database_url)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS naive_votes (id uuid PRIMARY KEY, poll text NOT NULL, \
         voter text NOT NULL, options text[] NOT NULL, received_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let app = axum::Router::new()
        .route("/v1/polls/{poll}/votes", axum::routing::post(vote))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
