//! `tally`: the admin CLI. `keys` works on Postgres directly (it makes the first key, before
//! any key exists to call the API with); everything else goes through the admin API, exactly
//! as any other client would. It needs only the contract (`tally-schema`), no service.
//!
//! - [`keys`]: API keys, through schema's shared `api_keys` statements.
//! - [`admin`]: polls, arenas, tournaments and membership lists, through the admin API.
//! - [`draw`]: `verify-draw`, from a published audit record alone.
//! - [`output`]: tables for people, `--json` for scripts, a quiet end on a closed pipe.
//! - [`table`]: the aligned-table and `key: value` renderer.
//! - [`webhooks`]: webhook endpoints, their secrets, attempt logs and replays.

pub mod admin;
pub mod dead_letters;
pub mod draw;
pub mod jetstream;
pub mod keys;
pub mod output;
pub mod table;
pub mod webhooks;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use output::Format;
use tally_schema::resources::ResourceKind;
use tally_schema::roles::Role;

#[derive(Debug, clap::Parser)]
#[command(
    name = "tally",
    about = "Administer Tally: API keys, polls, arenas, tournaments, dead letters, stream backups."
)]
pub struct Cli {
    /// Base URL of an ingest instance (it serves the admin API).
    #[arg(long, env = "TALLY_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// An API key (`tally keys create` makes one).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the answer as JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// API keys, in Postgres.
    Keys {
        #[arg(
            long,
            global = true,
            env = "TALLY_DATABASE_URL",
            default_value = "postgres://tally:tally@127.0.0.1:5432/tally"
        )]
        database_url: String,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Polls: options, choice rules, window, result visibility.
    Polls {
        #[command(subcommand)]
        action: ResourceAction,
    },
    /// Arenas: the items compared in pairs.
    Arenas {
        #[command(subcommand)]
        action: ResourceAction,
    },
    /// Tournaments: teams, matches, score rules, registration window.
    Tournaments {
        #[command(subcommand)]
        action: ResourceAction,
    },
    /// Broadcast channels: retention, who may publish and follow, an upstream to poll.
    Channels {
        #[command(subcommand)]
        action: ResourceAction,
    },
    /// A tournament's priority-group membership list (registrants' groups come from it).
    Members {
        #[command(subcommand)]
        action: MembersAction,
    },
    /// Webhook endpoints: register, rotate secrets, enable, read attempts, replay.
    Webhooks {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// Messages the Postgres writer could not decode, kept in the dead-letter stream: list
    /// them, or put them back on the event stream once every consumer decodes them.
    DeadLetters {
        #[command(flatten)]
        nats: tally_kit::nats::NatsConfig,
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Tally's JetStream streams (events, dead letters, media) saved and restored through
    /// the server's snapshot API, with their consumers' state.
    Jetstream {
        #[command(flatten)]
        nats: tally_kit::nats::NatsConfig,
        #[command(subcommand)]
        action: JetStreamAction,
    },
    /// Recomputes a lottery draw from its published audit record alone and says whether the
    /// winners and the waitlist match (exit status 1 if not).
    VerifyDraw {
        /// The tournament, read from `<api>/v1/tournaments/<id>/draw`.
        #[arg(required_unless_present = "file")]
        tournament: Option<String>,
        /// Or a saved audit record.
        #[arg(long)]
        file: Option<String>,
        /// Your registration's receipt: also say where you are in the draw.
        #[arg(long)]
        receipt: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadLetterAction {
    /// The dead letters, oldest first: sequence, consumer, time, original subject, reason
    /// and the start of the payload (`--json`: all of it).
    List {
        /// From this dead-letter sequence on.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publishes these dead letters (by sequence) again on their original subjects and
    /// removes them from the dead-letter stream. The events keep their ids: Postgres stores
    /// each once.
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seqs: Vec<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookAction {
    /// Every endpoint: state, what it subscribes to, deliveries waiting and failed.
    List,
    /// One endpoint, every field.
    Get { endpoint: String },
    /// Registers an endpoint and prints its secret, this once.
    Create {
        url: String,
        /// An event type it receives (repeat the flag); none: every type.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Deletes an endpoint with its deliveries and attempt log.
    Delete { endpoint: String },
    /// A new secret, printed this once; the old one keeps signing for the overlap.
    Rotate {
        endpoint: String,
        #[arg(long, default_value_t = tally_schema::webhooks::RotateBody::DEFAULT_OVERLAP_SECS)]
        overlap_secs: u64,
    },
    /// Enables an endpoint (what waits for it goes out at once).
    Enable { endpoint: String },
    /// Disables an endpoint (what it subscribes to waits for it).
    Disable { endpoint: String },
    /// The newest attempts: message, time, status, latency, error.
    Attempts {
        endpoint: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Sends one message again, or what the endpoint missed since a time (RFC 3339).
    Replay {
        endpoint: String,
        #[arg(long, required_unless_present = "since", conflicts_with = "since")]
        message: Option<String>,
        #[arg(long)]
        since: Option<String>,
        /// With --since: delivered messages too.
        #[arg(long)]
        include_delivered: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum JetStreamAction {
    /// Saves each stream under DIR/<stream>/ (backup.json and stream.tar.s2, as `nats stream
    /// backup` writes them).
    Backup { dir: std::path::PathBuf },
    /// Restores every stream saved under DIR; none of them may exist.
    Restore { dir: std::path::PathBuf },
}

#[derive(Debug, clap::Subcommand)]
pub enum MembersAction {
    /// Adds (or moves) the members of a CSV file, `user,group` a line (a header line
    /// `user,group` is skipped; `-` reads stdin), sent 5,000 at a time.
    Import { tournament: String, file: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyAction {
    /// Makes a key and prints it once, alone on its line (`--json`: with its name and role);
    /// only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "admin", value_parser = role_parser())]
        role: Role,
    },
    /// Every key's name, role, creation time and state (never the key or its hash).
    List,
    /// Revokes the active key of that name (ingest stops taking it within seconds).
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ResourceAction {
    /// Every definition, a row each.
    List,
    /// One definition, every field.
    Get { id: String },
    /// Creates from a JSON definition (a file, or - for stdin).
    Create { file: String },
    /// Replaces the definition of `id`.
    Update { id: String, file: String },
    /// Opens the voting (or registration) window now.
    Open { id: String },
    /// Closes it now.
    Close { id: String },
}

/// `--role`: the roles' names, each with what it may do in `--help`.
fn role_parser() -> impl TypedValueParser<Value = Role> {
    let names = Role::ALL.map(|r| PossibleValue::new(r.as_str()).help(r.describe()));
    PossibleValuesParser::new(names).try_map(|name| name.parse::<Role>())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = Format::new(cli.json);
    let (kind, action) = match cli.command {
        Command::Keys {
            database_url,
            action,
        } => return keys::run(&database_url, action, format).await,
        Command::DeadLetters { nats, action } => {
            return dead_letters::run(&nats, action, format).await;
        }
        Command::Jetstream { nats, action } => {
            return jetstream::run(&nats, action, format).await;
        }
        Command::VerifyDraw {
            tournament,
            file,
            receipt,
        } => return draw::run(&cli.api, tournament, file, receipt, format).await,
        Command::Members {
            action: MembersAction::Import { tournament, file },
        } => {
            let admin = admin::Admin::new(&cli.api, cli.key, format)?;
            return admin.import_members(&tournament, &file).await;
        }
        Command::Webhooks { action } => {
            let admin = admin::Admin::new(&cli.api, cli.key, format)?;
            return webhooks::run(&admin, action).await;
        }
        Command::Polls { action } => (ResourceKind::Poll, action),
        Command::Arenas { action } => (ResourceKind::Arena, action),
        Command::Tournaments { action } => (ResourceKind::Tournament, action),
        Command::Channels { action } => (ResourceKind::Channel, action),
    };
    admin::Admin::new(&cli.api, cli.key, format)?
        .resource(kind, action)
        .await
}

/// A file's text, or stdin's for `-`.
fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading stdin");
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn roles_parse_by_name_and_default_to_admin() {
        let role = |args: &[&str]| {
            let cli =
                Cli::try_parse_from([&["tally", "keys", "create", "--name", "k"], args].concat())?;
            match cli.command {
                Command::Keys {
                    action: KeyAction::Create { role, .. },
                    ..
                } => Ok::<_, clap::Error>(role),
                _ => unreachable!(),
            }
        };
        assert_eq!(role(&[]).unwrap(), Role::Admin);
        for r in Role::ALL {
            assert_eq!(role(&["--role", r.as_str()]).unwrap(), r);
        }
        assert!(role(&["--role", "root"]).is_err());
    }

    #[test]
    fn json_is_a_flag_anywhere_on_the_line() {
        let before = Cli::try_parse_from(["tally", "--json", "polls", "list"]).unwrap();
        let after = Cli::try_parse_from(["tally", "polls", "list", "--json"]).unwrap();
        let plain = Cli::try_parse_from(["tally", "polls", "list"]).unwrap();
        assert!(before.json && after.json && !plain.json);
    }
}
