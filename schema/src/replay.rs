//! The live views recomputed from stored events in stream order: what the batch script
//! (`aggregator/scripts/apply_batch.lua`) keeps in Redis, folded here from Postgres rows so
//! reads can be answered while Redis cannot. Same rules, same order, same ties.

use crate::event::{RegistrationStatus, StatusChange};
use crate::resources::{ScoreEffect, SortOrder};
use crate::status::RegistrationState;
use std::collections::{HashMap, HashSet};

impl ScoreEffect {
    /// A team's standing after a score of `points` (`None`: the team has none yet), as the
    /// script's ZINCRBY, ZADD, ZADD GT and ZADD LT leave it.
    pub fn apply(self, standing: Option<f64>, points: f64) -> f64 {
        match (self, standing) {
            (Self::Add, s) => s.unwrap_or(0.0) + points,
            (Self::Replace, _) | (_, None) => points,
            (Self::Max, Some(s)) => s.max(points),
            (Self::Min, Some(s)) => s.min(points),
        }
    }
}

/// Standings from a tournament's scores in stream order, ranked as the sorted set ranks
/// them: by standing in `order`, ties by team id in the same direction.
pub fn standings(
    scores: impl IntoIterator<Item = (String, ScoreEffect, i64)>,
    order: SortOrder,
) -> Vec<(String, f64)> {
    let mut by_team: HashMap<String, f64> = HashMap::new();
    for (team, effect, points) in scores {
        let standing = by_team.get(&team).copied();
        by_team.insert(team, effect.apply(standing, points as f64));
    }
    let mut ranked: Vec<(String, f64)> = by_team.into_iter().collect();
    ranked.sort_by(|(ta, a), (tb, b)| a.total_cmp(b).then_with(|| ta.cmp(tb)));
    if order == SortOrder::Desc {
        ranked.reverse();
    }
    ranked
}

/// Registration states after these status changes, in stream order, by the script's rules:
/// the draw sets a state once, a claim applies only over `won`, a release only over `won`;
/// a withdrawal applies once over anything but a release, and frees a won or claimed place
/// (a place won after its user withdrew is freed too); a hand-on applies only to a freed
/// place. A release or hand-on promotes its user only if that user is still waitlisted, and
/// otherwise frees the place again. For one user's state, pass that user's changes and
/// those of every user whose release or hand-on names them.
pub fn registration_states(
    changes: impl IntoIterator<Item = RegistrationStatus>,
) -> HashMap<String, RegistrationState> {
    registrations(changes).states
}

/// A tournament's registrations folded: each user's state, and the freed places not handed
/// on yet (the script's `vacated` set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registrations {
    pub states: HashMap<String, RegistrationState>,
    pub vacated: HashSet<String>,
}

impl Registrations {
    /// What a lottery's waitlisted `user` reads beside their state (as the Redis views
    /// answer it: the waitlist's rank, the deadlines and freed places counted).
    pub fn waitlist_outlook(&self, user: &str) -> crate::status::WaitlistOutlook {
        let position = match self.states.get(user) {
            Some(RegistrationState::Waitlisted { position }) => Some(*position),
            _ => None,
        };
        let ahead = position.map(|mine| {
            let before = |s: &RegistrationState| {
                matches!(s, RegistrationState::Waitlisted { position } if *position < mine)
            };
            self.states.values().filter(|s| before(s)).count() as u64
        });
        let won = self
            .states
            .values()
            .filter(|s| matches!(s, RegistrationState::Won { .. }))
            .count();
        crate::status::WaitlistOutlook {
            ahead,
            unclaimed_places: (won + self.vacated.len()) as u64,
        }
    }
}

/// [`registration_states`], with the freed places.
pub fn registrations(changes: impl IntoIterator<Item = RegistrationStatus>) -> Registrations {
    use RegistrationState as S;
    let mut states: HashMap<String, RegistrationState> = HashMap::new();
    // Freed places not handed on yet (the script's `vacated` set).
    let mut vacated: HashSet<String> = HashSet::new();
    for change in changes {
        let next = change.state_change();
        let user = change.user.as_str().to_owned();
        let current = states.get(&user);
        let hands_on = match (change.status, current) {
            (StatusChange::Won | StatusChange::Waitlisted, None) => {
                states.insert(user, next.user);
                false
            }
            (StatusChange::Won, Some(S::Withdrawn)) => {
                vacated.insert(user);
                false
            }
            (StatusChange::Claimed, Some(S::Won { .. })) => {
                states.insert(user, next.user);
                false
            }
            (StatusChange::Released, Some(S::Won { .. })) => {
                states.insert(user.clone(), next.user);
                true
            }
            (StatusChange::Withdrawn, Some(S::Withdrawn | S::Released)) => false,
            (StatusChange::Withdrawn, current) => {
                if matches!(current, Some(S::Won { .. } | S::Claimed)) {
                    vacated.insert(user.clone());
                }
                states.insert(user, next.user);
                false
            }
            (StatusChange::HandedOn, _) => vacated.remove(&user),
            _ => false,
        };
        if !hands_on {
            continue;
        }
        if let (Some(promoted), Some(state)) = (change.promoted, next.promoted) {
            let promoted = promoted.as_str().to_owned();
            if matches!(states.get(&promoted), Some(S::Waitlisted { .. })) {
                states.insert(promoted, state);
            } else {
                vacated.insert(change.user.as_str().to_owned());
            }
        }
    }
    Registrations { states, vacated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn score_effects_fold_like_the_sorted_set_commands() {
        let scores = [
            ("owls", ScoreEffect::Add, 3),
            ("owls", ScoreEffect::Add, -1),
            ("bats", ScoreEffect::Max, 5),
            ("bats", ScoreEffect::Max, 4),
            ("cats", ScoreEffect::Min, 7),
            ("cats", ScoreEffect::Min, 9),
            ("ants", ScoreEffect::Replace, 1),
            ("ants", ScoreEffect::Replace, 7),
        ]
        .map(|(t, e, p)| (t.to_owned(), e, p));
        let desc = standings(scores.clone(), SortOrder::Desc);
        let teams: Vec<(&str, f64)> = desc.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        // ZREVRANGE: highest first, equal standings by member, also reversed.
        assert_eq!(
            teams,
            vec![("cats", 7.0), ("ants", 7.0), ("bats", 5.0), ("owls", 2.0)]
        );
        let asc = standings(scores, SortOrder::Asc);
        assert_eq!(asc.first().map(|(t, _)| t.as_str()), Some("owls"));
        assert_eq!(asc[2].0, "ants");
    }

    fn change(user: &str, status: StatusChange, promoted: Option<&str>) -> RegistrationStatus {
        let deadline: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        RegistrationStatus {
            tournament: "cup".try_into().unwrap(),
            user: user.try_into().unwrap(),
            status,
            position: (status == StatusChange::Waitlisted).then_some(1),
            deadline: matches!(
                status,
                StatusChange::Won | StatusChange::Released | StatusChange::HandedOn
            )
            .then_some(deadline),
            promoted: promoted.map(|p| p.try_into().unwrap()),
        }
    }

    #[test]
    fn statuses_fold_by_the_scripts_rules() {
        use StatusChange::*;
        let states = registration_states([
            change("ann", Won, None),
            change("bob", Waitlisted, None),
            change("cy", Waitlisted, None),
            change("dee", Won, None),
            // A second draw result changes nothing; a claim over a waitlisted place neither.
            change("ann", Waitlisted, None),
            change("cy", Claimed, None),
            // dee claims in time; her late release is refused, so cy is not promoted.
            change("dee", Claimed, None),
            change("dee", Released, Some("cy")),
            // ann lets it lapse: bob is promoted, and a second release names no one new.
            change("ann", Released, Some("bob")),
            change("ann", Released, Some("cy")),
        ]);
        let status = |u: &str| states[u].to_json();
        assert!(status("ann").contains("\"released\""));
        assert!(status("bob").contains("\"won\"") && status("bob").contains("\"promoted\":true"));
        assert!(status("cy").contains("\"waitlisted\""));
        assert_eq!(states["dee"], RegistrationState::Claimed);
    }

    #[test]
    fn a_withdrawn_place_is_handed_on_once_and_again_if_its_user_left() {
        use StatusChange::*;
        let states = registration_states([
            change("ann", Won, None),
            change("bob", Waitlisted, None),
            change("cy", Waitlisted, None),
            change("dee", Waitlisted, None),
            // bob leaves the waitlist; ann gives her place up.
            change("bob", Withdrawn, None),
            change("ann", Withdrawn, None),
            // A hand-on to bob finds him gone: the place is freed again, and goes to cy.
            change("ann", HandedOn, Some("bob")),
            change("ann", HandedOn, Some("cy")),
            // A third hand-on of the same place finds nothing to hand on.
            change("ann", HandedOn, Some("dee")),
            // A withdrawal after a lapse changes nothing; a second withdrawal neither.
            change("ann", Withdrawn, None),
        ]);
        assert_eq!(states["ann"], RegistrationState::Withdrawn);
        assert_eq!(states["bob"], RegistrationState::Withdrawn);
        assert!(matches!(
            states["cy"],
            RegistrationState::Won { promoted: true, .. }
        ));
        assert!(matches!(
            states["dee"],
            RegistrationState::Waitlisted { .. }
        ));
        // A winner who withdrew before the draw's result arrived frees the place it brings.
        let late = registration_states([
            change("eve", Withdrawn, None),
            change("eve", Won, None),
            change("fay", Waitlisted, None),
            change("eve", HandedOn, Some("fay")),
        ]);
        assert_eq!(late["eve"], RegistrationState::Withdrawn);
        assert!(matches!(late["fay"], RegistrationState::Won { .. }));
    }
}
