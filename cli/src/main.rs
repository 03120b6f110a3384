use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = tally_cli::Cli::parse();
    match tally_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
