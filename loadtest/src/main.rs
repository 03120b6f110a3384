//! `tally-loadtest`: the scenarios from the field, open loop, with the references measured
//! in the same run, every outcome checked; a table, a JSON file and a PNG plot at the end.
//! Also the closed-loop `burst` the demo and the benches send. Parsing and dispatch only:
//! each scenario is a module of `tally_loadtest::scenarios`.

use clap::Parser;
use tally_loadtest::cli::{Cli, Scenario};
use tally_loadtest::report;
use tally_loadtest::scenarios::{
    Harness, arena, batch, burst, cost, crowd, flash_poll, followers, overload, registration_rush,
    suite, tournament,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, scenario } = Cli::parse();
    if let Scenario::CrowdPart(part) = &scenario {
        // A child of arena-crowd: its share of the voters, the result as JSON on stdout.
        return crowd::part(part).await;
    }
    if let Scenario::FollowersPart(part) = &scenario {
        // A child of channel-followers: its share of the followers, the result on stdout.
        return followers::part(part).await;
    }
    let h = Harness::connect(&settings).await?;
    let rows = match &scenario {
        Scenario::FlashPoll => flash_poll::run(&h).await?,
        Scenario::Arena => arena::run(&h).await?,
        Scenario::Tournament => tournament::run(&h).await?,
        Scenario::RegistrationRush => registration_rush::run(&h).await?,
        Scenario::Batch => batch::run(&h).await?,
        Scenario::ArenaCrowd(args) => crowd::run(&h, args).await?,
        Scenario::CrowdPart(_) => unreachable!("a crowd part answers above"),
        Scenario::ChannelFollowers(args) => followers::run(&h, args).await?,
        Scenario::FollowersPart(_) => unreachable!("a followers part answers above"),
        Scenario::Suite(args) => suite::run(&h, args).await?,
        Scenario::Overload(args) => overload::run(&h, args).await?,
        Scenario::Burst(args) => burst::run(&h, args).await?,
        Scenario::Cost(args) => cost::run(&h, args).await?,
    };
    let (prefix, ratios) = (scenario.file_prefix(), scenario.ratios_to());
    report::finish(&settings.out, prefix, &rows, ratios)
}
