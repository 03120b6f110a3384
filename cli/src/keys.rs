//! `tally keys`: API keys, straight in Postgres (the first key is made before any key exists
//! to call the API with), through schema's shared `api_keys` statements.

use crate::KeyAction;
use crate::output::{self, Block, Format, Reply};
use crate::table::Table;
use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tally_schema::roles::{self, Role, queries};

/// One row of `api_keys`, never its hash.
struct KeyRow {
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    revoked: bool,
}

pub async fn run(database_url: &str, action: KeyAction, format: Format) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .context("connecting to Postgres")?;
    tally_schema::MIGRATOR.run(&pool).await?;
    let reply = match action {
        KeyAction::Create { name, role } => {
            let key = roles::generate_key(&mut rand::rng());
            let hash = roles::hash_key(&key);
            sqlx::query(queries::CREATE_KEY)
                .bind(uuid::Uuid::now_v7())
                .bind(&name)
                .bind(role.as_str())
                .bind(hash.as_slice())
                .execute(&pool)
                .await
                .with_context(|| format!("storing the key {name}"))?;
            created(&name, role, key)
        }
        KeyAction::List => {
            let rows: Vec<(String, String, DateTime<Utc>, bool)> =
                sqlx::query_as(queries::LIST_KEYS).fetch_all(&pool).await?;
            let rows = rows
                .into_iter()
                .map(|(name, role, created_at, revoked)| KeyRow {
                    name,
                    role,
                    created_at,
                    revoked,
                });
            listing(rows)
        }
        KeyAction::Revoke { name } => {
            let revoked = sqlx::query(queries::REVOKE_KEY)
                .bind(&name)
                .execute(&pool)
                .await?
                .rows_affected();
            if revoked != 1 {
                bail!("no active key named {name}");
            }
            Reply::new(
                json!({"name": name, "revoked": true}),
                [Block::Line(format!("revoked {name}"))],
            )
        }
    };
    output::print(format, &reply)
}

/// The only time the key exists outside the caller's hands. People get the key alone on its
/// line, so `tally keys create … > key-file` keeps working; scripts get it with its name.
fn created(name: &str, role: Role, key: String) -> Reply {
    Reply::new(
        json!({"name": name, "role": role, "key": key}),
        [Block::Line(key)],
    )
}

fn listing(rows: impl IntoIterator<Item = KeyRow>) -> Reply {
    let mut table = Table::new(["name", "role", "created", "state"]);
    let mut items = Vec::new();
    for row in rows {
        let created = row.created_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let state = if row.revoked { "revoked" } else { "active" };
        table.row([row.name.as_str(), &row.role, &created, state]);
        items.push(json!({
            "name": row.name,
            "role": row.role,
            "created_at": row.created_at,
            "revoked": row.revoked,
        }));
    }
    Reply::new(json!({"items": items}), [Block::Table(table)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_printed_alone_for_people_and_with_its_name_for_scripts() {
        let reply = created("ops", Role::Viewer, "tally_00ff".into());
        assert_eq!(reply.human_text(), "tally_00ff\n");
        assert_eq!(
            reply.json,
            json!({"name": "ops", "role": "viewer", "key": "tally_00ff"})
        );
    }

    #[test]
    fn keys_list_as_a_table_and_as_items() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let reply = listing([
            KeyRow {
                name: "ops".into(),
                role: "admin".into(),
                created_at: at("2026-03-01T10:00:00Z"),
                revoked: false,
            },
            KeyRow {
                name: "old-scoreboard".into(),
                role: "scorekeeper".into(),
                created_at: at("2025-12-24T08:30:00.123Z"),
                revoked: true,
            },
        ]);
        assert_eq!(
            reply.human_text(),
            "NAME            ROLE         CREATED               STATE\n\
             ops             admin        2026-03-01T10:00:00Z  active\n\
             old-scoreboard  scorekeeper  2025-12-24T08:30:00Z  revoked\n"
        );
        assert_eq!(reply.json["items"][1]["revoked"], true);
        assert_eq!(reply.json["items"][0]["created_at"], "2026-03-01T10:00:00Z");
    }
}
