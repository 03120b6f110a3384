//! `tally`: parse the command line, run it, say what failed on stderr (exit status 1).

use clap::Parser;
use std::io::Write;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = tally_cli::Cli::parse();
    match tally_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn a failure into a panic.
            let _ = writeln!(std::io::stderr().lock(), "tally: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
