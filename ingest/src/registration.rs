//! What a registrant's position means under the tournament's rules.

use serde::Serialize;
use tally_schema::resources::{RegistrationMode, Tournament};

/// A registration's state as the status endpoint answers it.
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// First-come: inside the capacity (or no capacity set).
    Placed { position: u64 },
    /// First-come: beyond the capacity; `position` counts from the first place past it.
    Waitlisted { position: u64 },
    /// Lottery: registered; everyone inside the window has the same chance at the draw.
    Received {
        #[serde(skip_serializing_if = "Option::is_none")]
        draw_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// `position` is 1 for the first registrant in stream order.
pub fn status(tournament: &Tournament, position: u64) -> Status {
    match (tournament.mode, tournament.capacity) {
        (RegistrationMode::Lottery, _) => Status::Received {
            draw_at: tournament.registration_closes_at,
        },
        (RegistrationMode::FirstCome, Some(capacity)) if position > u64::from(capacity) => {
            Status::Waitlisted {
                position: position - u64::from(capacity),
            }
        }
        (RegistrationMode::FirstCome, _) => Status::Placed { position },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_go_to_the_first_positions_up_to_the_capacity() {
        let mut t: Tournament =
            serde_json::from_value(serde_json::json!({"id": "t", "capacity": 700})).unwrap();
        assert_eq!(status(&t, 1), Status::Placed { position: 1 });
        assert_eq!(status(&t, 700), Status::Placed { position: 700 });
        assert_eq!(status(&t, 701), Status::Waitlisted { position: 1 });
        t.capacity = None;
        assert_eq!(status(&t, 10_000), Status::Placed { position: 10_000 });
        t.mode = RegistrationMode::Lottery;
        assert!(matches!(status(&t, 1), Status::Received { .. }));
    }
}
