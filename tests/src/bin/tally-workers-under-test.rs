//! The workers binary, built inside this package so tests can SIGKILL a real process
//! (`CARGO_BIN_EXE_*` only names a package's own binaries). Same entry point as `tally-workers`,
//! and like it the system allocator (a global allocator declared there belongs here too).
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_workers::main_with(tally_workers::Cli::parse()).await
}
