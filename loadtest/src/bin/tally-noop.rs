//! The HTTP ceiling: an axum server that reads the body and answers 202 with a small JSON,
//! doing nothing else. Ingest's figures are reported beside this one's under the same load.

use axum::body::Bytes;
use axum::http::StatusCode;
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8099")]
    addr: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = axum::Router::new().fallback(|_body: Bytes| async {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"id": "00000000-0000-0000-0000-000000000000", "seq": 0})),
        )
    });
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
