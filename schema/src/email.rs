//! Email for the winner's journey: a tournament's settings ([`EmailNotices`]), where an
//! address comes from ([`Contact`]: a user token's `email` and `zoneinfo` claims, or what a
//! site key vouches for), and the messages themselves ([`render`]: text and HTML, the claim
//! link, the deadline in the registrant's time zone when known).
//!
//! An address is personal data: it is kept in Postgres (`registrant_contacts`), never on the
//! stream, in Redis, in ClickHouse or in any public record.

use crate::api::{FieldError, check_http_url};
use crate::ids::{TournamentId, UserId};
use crate::webhooks::EventType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A tournament's email: who sends it and where winners claim.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailNotices {
    /// The sender, `name@host` or `Name <name@host>`.
    pub from: String,
    /// The claim page; `{tournament}` and `{user}` are filled in.
    pub claim_url: String,
}

impl EmailNotices {
    pub fn validate(&self) -> Result<(), FieldError> {
        let address = self
            .from
            .rsplit_once('<')
            .map_or(self.from.as_str(), |(_, a)| a.trim_end_matches('>'));
        check_email("email.from", address)?;
        if self.from.chars().any(char::is_control) || self.from.len() > 320 {
            return Err(FieldError::invalid(
                "invalid_value",
                "email.from",
                "must be one line of at most 320 characters",
            ));
        }
        check_http_url("email.claim_url", &self.claim_link("t", "u"))
    }

    /// The claim page of one registrant.
    pub fn claim_link(&self, tournament: &str, user: &str) -> String {
        self.claim_url
            .replace("{tournament}", tournament)
            .replace("{user}", user)
    }
}

/// Where a registrant is told: an address and, when known, an IANA time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: String,
    pub time_zone: Option<String>,
}

/// An address as Tally takes it: one `@`, a host with a dot, no spaces, at most 254 bytes.
pub fn check_email(field: &str, email: &str) -> Result<(), FieldError> {
    let ok = email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        && email.split_once('@').is_some_and(|(local, host)| {
            !local.is_empty() && host.contains('.') && !host.contains('@') && !host.starts_with('.')
        });
    match ok {
        true => Ok(()),
        false => Err(FieldError::invalid(
            "invalid_value",
            field,
            "must be an email address (name@host.tld, at most 254 characters)",
        )),
    }
}

/// An IANA time zone name (`Europe/Paris`).
pub fn check_time_zone(field: &str, zone: &str) -> Result<(), FieldError> {
    match zone.parse::<chrono_tz::Tz>() {
        Ok(_) => Ok(()),
        Err(_) => Err(FieldError::invalid(
            "invalid_value",
            field,
            "must be an IANA time zone name such as Europe/Paris",
        )),
    }
}

/// One email, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The email a registration message makes, if it is one that mails (`registration.won`,
/// `registration.promoted`): the place, the claim link, and the deadline in the registrant's
/// time zone (UTC when unknown).
pub fn render(
    kind: EventType,
    tournament: &TournamentId,
    title: &str,
    user: &UserId,
    deadline: Option<DateTime<Utc>>,
    notices: &EmailNotices,
    time_zone: Option<&str>,
) -> Option<Rendered> {
    let name = if title.is_empty() {
        tournament.as_str()
    } else {
        title
    };
    let opening = match kind {
        EventType::RegistrationWon => format!("You were drawn a place in {name}."),
        EventType::RegistrationPromoted => {
            format!("A place in {name} came free and it is yours: you were next on the waitlist.")
        }
        _ => return None,
    };
    let when = deadline.map(|d| local_time(d, time_zone));
    let claim = notices.claim_link(tournament.as_str(), user.as_str());
    // A first-come promotion holds the place at once: nothing to claim.
    let (deadline_line, claims) = match (&when, kind) {
        (Some(when), _) => (
            format!("Claim it before {when}, or it goes to the next on the waitlist."),
            true,
        ),
        (None, EventType::RegistrationPromoted) => (
            "The place is held for you; there is nothing more to do.".to_owned(),
            false,
        ),
        (None, _) => ("Claim it to keep it.".to_owned(), true),
    };
    let (subject, text, html) = match claims {
        true => (
            format!("Your place in {name}: claim it"),
            format!("{opening}\n\n{deadline_line}\n\nClaim your place: {claim}\n"),
            format!(
                "<!doctype html>\n<html><body>\n<p>{}</p>\n<p>{}</p>\n<p><a href=\"{}\">Claim your place</a></p>\n</body></html>\n",
                escape(&opening),
                escape(&deadline_line),
                escape(&claim)
            ),
        ),
        false => (
            format!("Your place in {name}"),
            format!("{opening}\n\n{deadline_line}\n"),
            format!(
                "<!doctype html>\n<html><body>\n<p>{}</p>\n<p>{}</p>\n</body></html>\n",
                escape(&opening),
                escape(&deadline_line)
            ),
        ),
    };
    Some(Rendered {
        subject,
        text,
        html,
    })
}

/// `2026-12-07 18:00 CET (Europe/Paris)`, or `… UTC` without a zone.
pub fn local_time(at: DateTime<Utc>, time_zone: Option<&str>) -> String {
    match time_zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok()) {
        Some(zone) => {
            let local = at.with_timezone(&zone);
            format!("{} ({zone})", local.format("%Y-%m-%d %H:%M %Z"))
        }
        None => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notices() -> EmailNotices {
        EmailNotices {
            from: "Cup <noreply@example.org>".into(),
            claim_url: "https://example.org/claim?t={tournament}&u={user}".into(),
        }
    }

    #[test]
    fn a_winner_reads_the_deadline_in_their_own_time_zone_and_finds_the_claim_link() {
        let deadline: DateTime<Utc> = "2026-12-07T17:00:00Z".parse().unwrap();
        let (t, u) = ("cup".try_into().unwrap(), "ann".try_into().unwrap());
        let won = EventType::RegistrationWon;
        let mail = render(
            won,
            &t,
            "The Cup",
            &u,
            Some(deadline),
            &notices(),
            Some("Europe/Paris"),
        )
        .unwrap();
        assert!(
            mail.text.contains("2026-12-07 18:00 CET (Europe/Paris)"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("https://example.org/claim?t=cup&u=ann"));
        assert!(
            mail.html
                .contains("href=\"https://example.org/claim?t=cup&amp;u=ann\"")
        );
        assert!(mail.subject.contains("The Cup"));
        let utc = render(won, &t, "", &u, Some(deadline), &notices(), None).unwrap();
        assert!(utc.text.contains("2026-12-07 17:00 UTC"), "{}", utc.text);
        let claimed = EventType::RegistrationClaimed;
        assert_eq!(render(claimed, &t, "", &u, None, &notices(), None), None);
        // A first-come promotion holds the place: no deadline, no claim link.
        let promoted = EventType::RegistrationPromoted;
        let held = render(promoted, &t, "", &u, None, &notices(), None).unwrap();
        assert!(held.text.contains("nothing more to do") && !held.text.contains("claim?"));
    }

    #[test]
    fn addresses_zones_and_settings_are_checked() {
        assert!(check_email("email", "ann@example.org").is_ok());
        for bad in [
            "ann",
            "ann@host",
            "@example.org",
            "a b@example.org",
            "a@b@example.org",
        ] {
            assert_eq!(
                check_email("email", bad).unwrap_err().field,
                "email",
                "{bad}"
            );
        }
        assert!(check_time_zone("time_zone", "America/New_York").is_ok());
        assert!(check_time_zone("time_zone", "Mars/Olympus").is_err());
        assert!(notices().validate().is_ok());
        let bad = EmailNotices {
            claim_url: "javascript:alert(1)".into(),
            ..notices()
        };
        assert_eq!(bad.validate().unwrap_err().field, "email.claim_url");
        let bad = EmailNotices {
            from: "nobody".into(),
            ..notices()
        };
        assert_eq!(bad.validate().unwrap_err().field, "email.from");
    }
}
