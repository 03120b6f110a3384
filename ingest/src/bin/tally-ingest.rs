use clap::Parser;
use tally_ingest::IngestConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    tally_kit::telemetry::init_tracing();
    tally_kit::telemetry::metrics();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tally_ingest::serve(config, listener, tally_kit::shutdown::signal()).await?;
    Ok(())
}
