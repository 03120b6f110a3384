use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_workers::main_with(tally_workers::Cli::parse()).await
}
