//! The ingest binary, built inside this package so tests can SIGKILL a real process
//! (`CARGO_BIN_EXE_*` only names a package's own binaries). Same entry point and the same
//! allocator as `tally-ingest` (ingest/src/bin/tally-ingest.rs).
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_ingest::main_with(tally_ingest::IngestConfig::parse()).await
}
