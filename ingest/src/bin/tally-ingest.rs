use clap::Parser;

// Many small allocations per request across threads: glibc malloc was a quarter of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
