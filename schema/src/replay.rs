//! The live views recomputed from stored events in stream order: what the batch script
//! (`aggregator/scripts/apply_batch.lua`) keeps in Redis, folded here from Postgres rows so
//! reads can be answered while Redis cannot. Same rules, same order, same ties.

use crate::event::{RegistrationStatus, StatusChange};
use crate::resources::{ScoreEffect, SortOrder};
use crate::status::RegistrationState;
use std::collections::HashMap;

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
/// the draw sets a state once, a claim applies only over `won`, a release only over `won`,
/// and promotes its user only if that user is still waitlisted. For one user's state, pass
/// that user's changes and those of every user whose release names them.
pub fn registration_states(
    changes: impl IntoIterator<Item = RegistrationStatus>,
) -> HashMap<String, RegistrationState> {
    let mut states: HashMap<String, RegistrationState> = HashMap::new();
    for change in changes {
        let next = change.state_change();
        let user = change.user.as_str().to_owned();
        let won = matches!(states.get(&user), Some(RegistrationState::Won { .. }));
        match change.status {
            StatusChange::Won | StatusChange::Waitlisted => {
                states.entry(user).or_insert(next.user);
            }
            StatusChange::Claimed if won => {
                states.insert(user, next.user);
            }
            StatusChange::Released if won => {
                states.insert(user, next.user);
                if let (Some(promoted), Some(state)) = (change.promoted, next.promoted) {
                    let promoted = promoted.as_str().to_owned();
                    if matches!(
                        states.get(&promoted),
                        Some(RegistrationState::Waitlisted { .. })
                    ) {
                        states.insert(promoted, state);
                    }
                }
            }
            StatusChange::Claimed | StatusChange::Released => {}
        }
    }
    states
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
            deadline: matches!(status, StatusChange::Won | StatusChange::Released)
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
}
