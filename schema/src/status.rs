//! A registration's state, an upload's and a match's: what the status read answers, what the Redis status view holds per
//! drawn user, and what a claim or a release may change. The one typed form; the batch script
//! (`aggregator/scripts/apply_batch.lua`) compares the same `status` tags this serializes to.

use crate::event::{RegistrationStatus, StatusChange};
use crate::resources::{RegistrationMode, Tournament};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A registrant's state, serialized with a `status` tag (`{"status": "won", "deadline": …}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RegistrationState {
    /// First-come: inside the capacity (or no capacity set).
    Placed { position: u64 },
    /// First-come: beyond the capacity, counted from the first place past it; lottery: drawn
    /// onto the waitlist at `position`.
    Waitlisted { position: u64 },
    /// Lottery: registered; everyone inside the window has the same chance at the draw.
    Received {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        draw_at: Option<DateTime<Utc>>,
    },
    /// Lottery: drawn a place (or promoted from the waitlist); claim it before `deadline`.
    Won {
        #[serde(default)]
        deadline: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        promoted: bool,
    },
    /// A won place, confirmed.
    Claimed,
    /// A won place not claimed in time.
    Released,
    /// The registrant gave up the registration (and any place it held); final.
    Withdrawn,
}

impl RegistrationState {
    /// Where a registrant stands before any draw, from `position` (1 for the first registrant
    /// in stream order still registered: those ahead who withdrew do not count) under the
    /// tournament's rules.
    pub fn before_draw(tournament: &Tournament, position: u64) -> Self {
        match (tournament.mode, tournament.capacity) {
            (RegistrationMode::Lottery, _) => Self::Received {
                draw_at: tournament.registration_closes_at,
            },
            (RegistrationMode::FirstCome, Some(capacity)) if position > u64::from(capacity) => {
                Self::Waitlisted {
                    position: position - u64::from(capacity),
                }
            }
            (RegistrationMode::FirstCome, _) => Self::Placed { position },
        }
    }

    /// The deadline of a won place that has passed by `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Won {
                deadline: Some(d), ..
            } if *d <= now => Some(*d),
            _ => None,
        }
    }

    pub fn to_json(&self) -> String {
        // A plain enum of plain fields serializes without fail.
        serde_json::to_string(self).expect("a registration state serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Where a lottery's waitlisted registrant stands beyond their drawn position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitlistOutlook {
    /// Still waitlisted ahead of them (0: next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
    /// Won places not claimed yet, and freed places not yet handed on: each may still come
    /// down the waitlist.
    pub unclaimed_places: u64,
}

/// What became of an upload: `received` (in the object store, not yet in Postgres), `stored`
/// until the workers queue its thumbnail job, then `queued`, then `done` (variants made) or
/// `failed` (the image was rejected, with a reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MediaStatus {
    Received,
    Stored,
    Queued,
    Done,
    Failed,
}

impl MediaStatus {
    /// As stored in `media_status.status` (all but `received`) and served by the media read.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Stored => "stored",
            Self::Queued => "queued",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Received,
            Self::Stored,
            Self::Queued,
            Self::Done,
            Self::Failed,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// Where a match stands: `scheduled`, then `live`, then `final` (scores refused from then on).
/// Set by an admin or scorekeeper key; it only moves forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    #[default]
    Scheduled,
    Live,
    Final,
}

impl MatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Final => "final",
        }
    }

    pub fn is_scheduled(&self) -> bool {
        *self == Self::Scheduled
    }

    /// Whether a match may go from `self` to `next`: forward only (or staying where it is).
    pub fn may_become(self, next: Self) -> bool {
        next >= self
    }
}

/// What a status change writes to the status view: the user's new state, and the promoted
/// user's (a release that hands the place on). The batch script applies it only where the
/// current state allows (a claim only over `won`, a release only over an unclaimed `won`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateChange {
    pub user: RegistrationState,
    pub promoted: Option<RegistrationState>,
}

impl RegistrationStatus {
    pub fn state_change(&self) -> StateChange {
        let user = match self.status {
            StatusChange::Won => RegistrationState::Won {
                deadline: self.deadline,
                promoted: false,
            },
            StatusChange::Waitlisted => RegistrationState::Waitlisted {
                position: self.position.map_or(0, u64::from),
            },
            StatusChange::Claimed => RegistrationState::Claimed,
            StatusChange::Released => RegistrationState::Released,
            // Neither a hand-on nor a first-come promotion writes its registrant's state: the
            // one is already withdrawn or released, the other's place follows from positions.
            StatusChange::Withdrawn | StatusChange::HandedOn => RegistrationState::Withdrawn,
            StatusChange::Promoted => RegistrationState::Placed {
                position: self.position.map_or(0, u64::from),
            },
        };
        let promoted = self.promoted.as_ref().map(|_| RegistrationState::Won {
            deadline: self.deadline,
            promoted: true,
        });
        StateChange { user, promoted }
    }
}

/// A freed place and whom it goes to: a lapsed winner's (`Released`) or a vacated one's
/// (`HandedOn`), with the next waitlisted user, if anyone is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handing {
    pub user: String,
    pub change: StatusChange,
    pub promoted: Option<String>,
}

/// Which places to hand on now, and to whom: vacated places first (withdrawn winners, and
/// promotions that found their user gone, in the order given: stream order), then expired
/// winners (earliest deadline first), paired with waitlisted users in waitlist order.
pub fn release_plan(
    vacated: impl IntoIterator<Item = String>,
    states: impl IntoIterator<Item = (String, RegistrationState)>,
    now: DateTime<Utc>,
) -> Vec<Handing> {
    let mut expired = Vec::new();
    let mut waiting = Vec::new();
    for (user, state) in states {
        match state {
            RegistrationState::Waitlisted { position } => waiting.push((position, user)),
            other => expired.extend(other.expired_at(now).map(|d| (d, user))),
        }
    }
    expired.sort();
    waiting.sort();
    let mut next = waiting.into_iter().map(|(_, u)| u);
    let vacated = vacated.into_iter().map(|u| (u, StatusChange::HandedOn));
    let expired = expired
        .into_iter()
        .map(|(_, u)| (u, StatusChange::Released));
    vacated
        .chain(expired)
        .map(|(user, change)| Handing {
            user,
            change,
            promoted: next.next(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn places_go_to_the_first_positions_up_to_the_capacity() {
        let mut t: Tournament =
            serde_json::from_value(json!({"id": "t", "capacity": 700})).unwrap();
        let at = |t: &Tournament, p| RegistrationState::before_draw(t, p);
        assert_eq!(at(&t, 1), RegistrationState::Placed { position: 1 });
        assert_eq!(at(&t, 700), RegistrationState::Placed { position: 700 });
        assert_eq!(at(&t, 701), RegistrationState::Waitlisted { position: 1 });
        t.capacity = None;
        assert_eq!(
            at(&t, 10_000),
            RegistrationState::Placed { position: 10_000 }
        );
        t.mode = RegistrationMode::Lottery;
        assert!(matches!(at(&t, 1), RegistrationState::Received { .. }));
    }

    #[test]
    fn states_travel_with_the_tags_the_batch_script_compares() {
        let deadline: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let won = RegistrationState::Won {
            deadline: Some(deadline),
            promoted: false,
        };
        assert_eq!(
            serde_json::to_value(&won).unwrap(),
            json!({"status": "won", "deadline": "2026-01-01T00:00:00Z"})
        );
        for (state, tag) in [
            (won, "won"),
            (RegistrationState::Waitlisted { position: 2 }, "waitlisted"),
            (RegistrationState::Claimed, "claimed"),
            (RegistrationState::Released, "released"),
            (RegistrationState::Withdrawn, "withdrawn"),
        ] {
            assert_eq!(serde_json::to_value(&state).unwrap()["status"], tag);
            assert_eq!(
                RegistrationState::from_json(&state.to_json()).unwrap(),
                state
            );
        }
    }

    #[test]
    fn media_statuses_are_stored_as_they_serialize() {
        for s in [
            MediaStatus::Received,
            MediaStatus::Stored,
            MediaStatus::Queued,
            MediaStatus::Done,
            MediaStatus::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(MediaStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn a_release_promotes_with_the_new_deadline() {
        let deadline: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let change = RegistrationStatus {
            tournament: "t".try_into().unwrap(),
            user: "a".try_into().unwrap(),
            status: StatusChange::Released,
            position: None,
            deadline: Some(deadline),
            promoted: Some("b".try_into().unwrap()),
        }
        .state_change();
        assert_eq!(change.user, RegistrationState::Released);
        assert_eq!(
            change.promoted,
            Some(RegistrationState::Won {
                deadline: Some(deadline),
                promoted: true
            })
        );
        assert!(
            change.promoted.unwrap().expired_at(deadline).is_some()
                && RegistrationState::Claimed.expired_at(deadline).is_none()
        );
    }

    #[test]
    fn expired_winners_pass_their_places_down_the_waitlist_in_order() {
        let at = |s: &str| -> DateTime<Utc> { format!("2030-01-01T00:00:{s}Z").parse().unwrap() };
        let won = |s| RegistrationState::Won {
            deadline: Some(at(s)),
            promoted: false,
        };
        let states = || {
            [
                ("a", won("10")),
                ("b", won("05")),
                ("c", won("50")),
                ("d", RegistrationState::Claimed),
                ("w2", RegistrationState::Waitlisted { position: 2 }),
                ("w1", RegistrationState::Waitlisted { position: 1 }),
            ]
            .map(|(u, s)| (u.to_owned(), s))
        };
        let hand = |user: &str, change, promoted: Option<&str>| Handing {
            user: user.to_owned(),
            change,
            promoted: promoted.map(str::to_owned),
        };
        let none = std::iter::empty::<String>;
        assert_eq!(
            release_plan(none(), states(), at("20")),
            vec![
                hand("b", StatusChange::Released, Some("w1")),
                hand("a", StatusChange::Released, Some("w2"))
            ]
        );
        let later: DateTime<Utc> = "2030-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(
            release_plan(none(), states(), later)[2],
            hand("c", StatusChange::Released, None)
        );
        // A withdrawn winner's place goes first, to the first waitlisted.
        assert_eq!(
            release_plan(["v".to_owned()], states(), at("20")),
            vec![
                hand("v", StatusChange::HandedOn, Some("w1")),
                hand("b", StatusChange::Released, Some("w2")),
                hand("a", StatusChange::Released, None)
            ]
        );
    }
}
