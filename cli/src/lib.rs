//! `tally`: the admin CLI. `keys` works on Postgres directly (it makes the first key, before
//! any key exists to call the API with); everything else goes through the admin API, exactly
//! as any other client would.

use anyhow::{Context, bail};
use tally_ingest::auth::Role;
use tally_schema::resources::ResourceKind;

#[derive(Debug, clap::Parser)]
#[command(
    name = "tally",
    about = "Administer Tally: API keys, polls, arenas, tournaments."
)]
pub struct Cli {
    /// Base URL of an ingest instance (it serves the admin API).
    #[arg(long, env = "TALLY_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// An API key (`tally keys create` makes one).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
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
    /// A tournament's priority-group membership list (registrants' groups come from it).
    Members {
        #[command(subcommand)]
        action: MembersAction,
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
pub enum MembersAction {
    /// Adds (or moves) the members of a CSV file, `user,group` a line (a header line
    /// `user,group` is skipped; `-` reads stdin), sent 5,000 at a time.
    Import { tournament: String, file: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyAction {
    /// Makes a key and prints it once; only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: Role,
    },
    List,
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ResourceAction {
    List,
    Get {
        id: String,
    },
    /// Creates from a JSON definition (a file, or - for stdin).
    Create {
        file: String,
    },
    /// Replaces the definition of `id`.
    Update {
        id: String,
        file: String,
    },
    /// Opens the voting (or registration) window now.
    Open {
        id: String,
    },
    /// Closes it now.
    Close {
        id: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (kind, action) = match cli.command {
        Command::Keys {
            database_url,
            action,
        } => return keys(&database_url, action).await,
        Command::VerifyDraw {
            tournament,
            file,
            receipt,
        } => {
            return verify_draw(&cli.api, tournament, file, receipt).await;
        }
        Command::Members {
            action: MembersAction::Import { tournament, file },
        } => return import_members(&cli.api, cli.key, &tournament, &file).await,
        Command::Polls { action } => (ResourceKind::Poll, action),
        Command::Arenas { action } => (ResourceKind::Arena, action),
        Command::Tournaments { action } => (ResourceKind::Tournament, action),
    };
    let Some(key) = cli.key else {
        bail!("set --key or TALLY_API_KEY (tally keys create makes one)");
    };
    let base = format!(
        "{}/admin/v1/{}",
        cli.api.trim_end_matches('/'),
        kind.plural()
    );
    let client = reqwest::Client::new();
    let request = match action {
        ResourceAction::List => client.get(&base),
        ResourceAction::Get { id } => client.get(format!("{base}/{id}")),
        ResourceAction::Create { file } => client.post(&base).body(read(&file)?),
        ResourceAction::Update { id, file } => {
            client.put(format!("{base}/{id}")).body(read(&file)?)
        }
        ResourceAction::Open { id } => client.post(format!("{base}/{id}/open")),
        ResourceAction::Close { id } => client.post(format!("{base}/{id}/close")),
    };
    let response = request
        .bearer_auth(key)
        .header("content-type", "application/json")
        .send()
        .await
        .with_context(|| format!("cannot reach {}", cli.api))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        bail!("the API answered {status}");
    }
    Ok(())
}

async fn verify_draw(
    api: &str,
    tournament: Option<String>,
    file: Option<String>,
    receipt: Option<String>,
) -> anyhow::Result<()> {
    use tally_schema::lottery::{AuditRecord, pseudonym, unhex32, verify};
    let text = match (file, tournament) {
        (Some(file), _) => read(&file)?,
        (None, Some(t)) => {
            let url = format!("{}/v1/tournaments/{t}/draw", api.trim_end_matches('/'));
            reqwest::get(&url)
                .await
                .with_context(|| format!("cannot reach {url}"))?
                .error_for_status()?
                .text()
                .await?
        }
        (None, None) => bail!("name a tournament or --file"),
    };
    let record: AuditRecord = serde_json::from_str(&text)
        .context("not a drawn lottery's audit record (is it drawn yet?)")?;
    let problems = verify(&record);
    if problems.is_empty() {
        println!(
            "verified: {} — {} registrants, {} winners, {} on the waitlist",
            record.tournament,
            record.registrants.len(),
            record.winners.len(),
            record.waitlist.len()
        );
        if let Some(receipt) = receipt {
            let receipt = unhex32(receipt.trim()).context("a receipt is 64 hex digits")?;
            let me = pseudonym(&receipt);
            let place = |list: &[String]| list.iter().position(|p| *p == me);
            match (place(&record.winners), place(&record.waitlist)) {
                (Some(_), _) => println!("{me}: drawn a place"),
                (_, Some(i)) => println!("{me}: waitlisted, position {}", i + 1),
                _ if record.registrants.iter().any(|r| r.user == me) => {
                    println!("{me}: registered, not drawn")
                }
                _ => bail!("{me} is not among the registrants"),
            }
        }
        return Ok(());
    }
    for p in &problems {
        println!("MISMATCH: {p}");
    }
    bail!("the draw of {} does not verify", record.tournament)
}

/// The members of a `user,group` CSV. Ids cannot hold commas or quotes, so a line is split at
/// its comma; a bad line is reported with its number before anything is sent.
fn parse_members(text: &str) -> anyhow::Result<Vec<tally_schema::api::GroupMember>> {
    let mut members = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("user,group")) {
            continue;
        }
        let Some((user, group)) = line.split_once(',') else {
            bail!("line {}: want user,group", i + 1);
        };
        let member = tally_schema::api::GroupMember {
            user: user
                .trim()
                .try_into()
                .with_context(|| format!("line {}: user", i + 1))?,
            group: group
                .trim()
                .try_into()
                .with_context(|| format!("line {}: group", i + 1))?,
        };
        members.push(member);
    }
    Ok(members)
}

async fn import_members(
    api: &str,
    key: Option<String>,
    tournament: &str,
    file: &str,
) -> anyhow::Result<()> {
    let Some(key) = key else {
        bail!("set --key or TALLY_API_KEY (tally keys create makes one)");
    };
    let members = parse_members(&read(file)?)?;
    let url = format!(
        "{}/admin/v1/tournaments/{tournament}/members",
        api.trim_end_matches('/')
    );
    let client = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    for chunk in members.chunks(tally_schema::api::MAX_MEMBERS_PER_CALL) {
        let response = client
            .post(&url)
            .bearer_auth(&key)
            .json(&serde_json::json!({ "members": chunk }))
            .send()
            .await
            .with_context(|| format!("cannot reach {api}"))?;
        let status = response.status();
        last = response.json().await.unwrap_or_default();
        if !status.is_success() {
            println!("{}", serde_json::to_string_pretty(&last)?);
            bail!("the API answered {status}");
        }
    }
    println!("imported {} members: {}", members.len(), last["groups"]);
    Ok(())
}

fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading stdin");
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

async fn keys(database_url: &str, action: KeyAction) -> anyhow::Result<()> {
    use tally_ingest::{auth, resource_store};
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .context("connecting to Postgres")?;
    tally_schema::MIGRATOR.run(&pool).await?;
    match action {
        KeyAction::Create { name, role } => {
            let key = auth::generate_key();
            resource_store::create_key(&pool, &name, role.as_str(), &auth::hash_key(&key)).await?;
            // The only time the key exists outside the caller's hands: print it, nothing else.
            println!("{key}");
        }
        KeyAction::List => {
            for (name, role, created, revoked) in resource_store::list_keys(&pool).await? {
                let state = if revoked { "revoked" } else { "active" };
                println!("{name}\t{role}\t{}\t{state}", created.to_rfc3339());
            }
        }
        KeyAction::Revoke { name } => {
            if !resource_store::revoke_key(&pool, &name).await? {
                bail!("no active key named {name}");
            }
            println!("revoked {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
