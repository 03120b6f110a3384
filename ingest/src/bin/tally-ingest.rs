use clap::Parser;

// Many small allocations per request across threads: glibc malloc was a quarter of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_ingest::main_with(tally_ingest::IngestConfig::parse()).await
}
