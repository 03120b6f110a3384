//! What an event does to Redis, as the flat record the batch script applies, and the Elo
//! rule the script implements (here as the reference the tests check it against).

use tally_schema::redis_keys::Keys;
use tally_schema::{Event, StoredEvent};

/// One event for `scripts/apply_batch.lua`: seq, seen, kind, key, key2, a, b.
pub fn record(keys: &Keys, event: &StoredEvent) -> [String; 7] {
    let seen = match event.envelope.keyed {
        true => keys.seen(&event.envelope.id),
        false => String::new(),
    };
    let [seq, kind, key, key2, a, b] = effect(keys, event);
    [seq, seen, kind, key, key2, a, b]
}

fn effect(keys: &Keys, event: &StoredEvent) -> [String; 6] {
    let seq = event.stream_seq.to_string();
    let none = String::new;
    match &event.envelope.event {
        Event::PollVote(v) => {
            let options: Vec<&str> = v.options.iter().map(|o| o.as_str()).collect();
            [
                seq,
                "poll".into(),
                keys.poll_tally(v.poll.as_str()),
                keys.poll_choices(v.poll.as_str()),
                options.join(","),
                v.voter.to_string(),
            ]
        }
        Event::Score(s) => [
            seq,
            format!("score_{}", s.effect.as_str()),
            keys.standings(s.tournament.as_str()),
            keys.match_scores(s.tournament.as_str(), s.match_id.as_str()),
            s.team.to_string(),
            s.points.to_string(),
        ],
        Event::Registration(r) => [
            seq,
            "reg".into(),
            keys.registrations(r.tournament.as_str()),
            keys.registrants(r.tournament.as_str()),
            r.group.as_ref().map(|g| g.to_string()).unwrap_or_default(),
            r.user.to_string(),
        ],
        Event::PairVote(p) => [
            seq,
            "pair".into(),
            keys.arena_elo(p.arena.as_str()),
            keys.session_elo(p.arena.as_str(), p.session.as_str()),
            p.winner.to_string(),
            p.loser.to_string(),
        ],
        Event::MediaUploaded(_) => [seq, "none".into(), none(), none(), none(), none()],
        Event::RegistrationStatus(s) => [
            seq,
            "rstatus".into(),
            keys.draw_results(s.tournament.as_str()),
            s.promoted
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            s.user.to_string(),
            serde_json::to_string(&StatusRecord {
                event: s.status,
                change: s.state_change(),
                deadlines: keys.draw_deadlines(s.tournament.as_str()),
                waitlist: keys.draw_waitlist(s.tournament.as_str()),
                vacated: keys.draw_vacated(s.tournament.as_str()),
                positions: keys.registrants(s.tournament.as_str()),
                withdrawn: keys.withdrawn(s.tournament.as_str()),
                due: s.deadline.map(|d| d.timestamp_millis().to_string()),
            })
            .expect("a state change serializes"),
        ],
    }
}

/// The `b` of an `rstatus` record: the change, the states to write, and the indexes the
/// script keeps beside the status hash so the release step and the first-come positions
/// read only what is due.
#[derive(serde::Serialize)]
struct StatusRecord {
    event: tally_schema::event::StatusChange,
    #[serde(flatten)]
    change: tally_schema::status::StateChange,
    deadlines: String,
    waitlist: String,
    vacated: String,
    /// The registrant → position hash, read to index a withdrawal by position.
    positions: String,
    withdrawn: String,
    /// The claim deadline in ms since the epoch, as text: Lua would print a large number
    /// in exponent form when it passes it to Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<String>,
}

/// Elo after "winner beat loser": both move by K × (1 − the winner's expected score).
pub fn elo_update(winner: f64, loser: f64, k: f64) -> (f64, f64) {
    let expected = 1.0 / (1.0 + 10f64.powf((loser - winner) / 400.0));
    let delta = k * (1.0 - expected);
    (winner + delta, loser - delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ratings_move_by_half_k() {
        assert_eq!(elo_update(1000.0, 1000.0, 32.0), (1016.0, 984.0));
    }

    #[test]
    fn an_upset_moves_more_than_an_expected_win() {
        let (fav_win, _) = elo_update(1200.0, 1000.0, 32.0);
        let (upset, _) = elo_update(1000.0, 1200.0, 32.0);
        assert!(upset - 1000.0 > fav_win - 1200.0);
        // Points are conserved.
        let (w, l) = elo_update(1234.5, 987.25, 24.0);
        assert!((w + l - (1234.5 + 987.25)).abs() < 1e-9);
    }

    #[test]
    fn the_script_compares_the_tags_the_schema_writes() {
        use tally_schema::event::StatusChange;
        let script = include_str!("../scripts/apply_batch.lua");
        for change in StatusChange::ALL {
            assert!(script.contains(&format!("'{}'", change.as_str())));
        }
    }

    #[test]
    fn records_carry_keys_and_arguments() {
        let keys = Keys::new("p");
        let event = StoredEvent {
            stream_seq: 7,
            envelope: tally_schema::Envelope::new(
                tally_schema::api::PollVoteBody {
                    id: None,
                    voter: "v".try_into().unwrap(),
                    options: vec!["a".try_into().unwrap(), "b".try_into().unwrap()],
                }
                .into_event("final".try_into().unwrap()),
            ),
        };
        let r = record(&keys, &event);
        assert_eq!(
            r,
            [
                "7",
                "",
                "poll",
                "p:poll:final:tally",
                "p:poll:final:choices",
                "a,b",
                "v"
            ]
            .map(String::from)
        );
        let keyed = StoredEvent {
            envelope: tally_schema::Envelope::keyed(
                uuid::Uuid::nil(),
                event.envelope.event.clone(),
            ),
            ..event
        };
        assert_eq!(
            record(&keys, &keyed)[1],
            "p:seen:00000000-0000-0000-0000-000000000000"
        );
    }
}
