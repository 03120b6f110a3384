//! `tally verify-draw`: recomputes a lottery draw from its published audit record alone and
//! says whether the winners and the waitlist match, and where a receipt's holder stands.

use crate::output::{self, Block, Format, Reply};
use crate::read;
use anyhow::{Context, bail};
use serde_json::json;
use tally_schema::lottery::{AuditRecord, pseudonym, unhex32, verify};

/// Where a registrant stands in a verified draw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Standing {
    Drawn,
    Waitlisted { position: usize },
    NotDrawn,
    NotRegistered,
}

pub async fn run(
    api: &str,
    tournament: Option<String>,
    file: Option<String>,
    receipt: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    // A bad receipt is refused before anything is fetched or printed.
    let me = match receipt {
        Some(r) => Some(pseudonym(
            &unhex32(r.trim()).context("a receipt is 64 hex digits")?,
        )),
        None => None,
    };
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
    let standing = match problems.is_empty() {
        true => me.as_deref().map(|me| standing(&record, me)),
        false => None,
    };
    // The verdict stands whether or not the output reaches anyone.
    output::print(
        format,
        &report(&record, &problems, me.as_deref(), standing.as_ref()),
    )?;
    if !problems.is_empty() {
        bail!("the draw of {} does not verify", record.tournament);
    }
    if standing == Some(Standing::NotRegistered) {
        bail!("{} is not among the registrants", me.unwrap_or_default());
    }
    Ok(())
}

fn standing(record: &AuditRecord, me: &str) -> Standing {
    let place = |list: &[String]| list.iter().position(|p| p == me);
    match (place(&record.winners), place(&record.waitlist)) {
        (Some(_), _) => Standing::Drawn,
        (_, Some(i)) => Standing::Waitlisted { position: i + 1 },
        _ if record.registrants.iter().any(|r| r.user == me) => Standing::NotDrawn,
        _ => Standing::NotRegistered,
    }
}

fn report(
    record: &AuditRecord,
    problems: &[String],
    me: Option<&str>,
    standing: Option<&Standing>,
) -> Reply {
    let mut json = json!({
        "tournament": record.tournament,
        "verified": problems.is_empty(),
        "registrants": record.registrants.len(),
        "winners": record.winners.len(),
        "waitlist": record.waitlist.len(),
        "problems": problems,
    });
    let mut human = Vec::new();
    if problems.is_empty() {
        human.push(Block::Line(format!(
            "verified: {} — {} registrants, {} winners, {} on the waitlist",
            record.tournament,
            record.registrants.len(),
            record.winners.len(),
            record.waitlist.len()
        )));
    }
    human.extend(
        problems
            .iter()
            .map(|p| Block::Line(format!("MISMATCH: {p}"))),
    );
    if let (Some(me), Some(standing)) = (me, standing) {
        let (result, line) = match standing {
            Standing::Drawn => ("drawn", format!("{me}: drawn a place")),
            Standing::Waitlisted { position } => (
                "waitlisted",
                format!("{me}: waitlisted, position {position}"),
            ),
            Standing::NotDrawn => ("not_drawn", format!("{me}: registered, not drawn")),
            // Said on stderr, as the command's error.
            Standing::NotRegistered => ("not_registered", String::new()),
        };
        let position = match standing {
            Standing::Waitlisted { position } => json!(position),
            _ => json!(null),
        };
        json["receipt"] = json!({"pseudonym": me, "result": result, "position": position});
        if !line.is_empty() {
            human.push(Block::Line(line));
        }
    }
    Reply::new(json, human)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        serde_json::from_value(json!({
            "tournament": "lucky", "algorithm": "tally-draw-v1", "commitment": "00",
            "seed": "00", "digest": "00", "registrants": [{"user": "a"}, {"user": "b"}, {"user": "c"}],
            "winners": ["a"], "waitlist": ["c", "b"],
        }))
        .unwrap()
    }

    #[test]
    fn a_receipt_finds_its_place() {
        let r = record();
        assert_eq!(standing(&r, "a"), Standing::Drawn);
        assert_eq!(standing(&r, "b"), Standing::Waitlisted { position: 2 });
        assert_eq!(standing(&r, "z"), Standing::NotRegistered);
        let reply = report(&r, &[], Some("b"), Some(&standing(&r, "b")));
        assert_eq!(
            reply.human_text(),
            "verified: lucky — 3 registrants, 1 winners, 2 on the waitlist\n\
             b: waitlisted, position 2\n"
        );
        assert_eq!(
            reply.json["receipt"],
            json!({"pseudonym": "b", "result": "waitlisted", "position": 2})
        );
    }

    #[test]
    fn mismatches_are_listed() {
        let reply = report(&record(), &["the winners differ".into()], None, None);
        assert_eq!(reply.human_text(), "MISMATCH: the winners differ\n");
        assert_eq!(reply.json["verified"], false);
    }
}
