use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aggregator::main_with(tally_aggregator::config::Cli::parse()).await
}
