//! The read side: the aggregator's live views in Redis, each read in one round trip.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
pub use tally_schema::api::Ranked;
use tally_schema::api::{MatchView, PollResults};
use tally_schema::ids::{MatchId, TournamentId};
use tally_schema::redis_keys::Keys;
use tally_schema::resources::SortOrder;
use tally_schema::status::{MatchStatus, RegistrationState, WaitlistOutlook};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot reach Redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("Redis: {0}")]
    Read(#[from] redis::RedisError),
    /// Redis did not answer in time (it may be reconnecting, retrying with backoff).
    #[error("no answer from Redis within {0:?}")]
    Timeout(std::time::Duration),
}

#[derive(Clone)]
pub struct Views {
    conn: ConnectionManager,
    keys: Keys,
}

/// Teams a match view lists at most (a match has at most 1,000 listed teams).
pub const MATCH_TEAMS: usize = 1000;

impl Views {
    /// One match: its status and its teams' scores in it, ranked in the tournament's order.
    pub async fn match_view(
        &self,
        tournament: &TournamentId,
        match_id: &MatchId,
        status: MatchStatus,
        order: SortOrder,
    ) -> Result<MatchView, ViewError> {
        let key = self
            .keys
            .match_scores(tournament.as_str(), match_id.as_str());
        let teams = self.top(&key, MATCH_TEAMS, order).await?;
        Ok(MatchView {
            tournament: tournament.clone(),
            match_id: match_id.clone(),
            status,
            teams,
        })
    }

    /// Connects, checking Redis answers.
    pub async fn connect(url: &str, keys: Keys) -> Result<Self, ViewError> {
        let connect = |source| ViewError::Connect {
            url: url.to_owned(),
            source,
        };
        let client = redis::Client::open(url).map_err(connect)?;
        let conn = ConnectionManager::new(client).await.map_err(connect)?;
        Ok(Self { conn, keys })
    }

    /// A poll's results: options by votes, most first.
    pub async fn poll_results(&self, poll: &str) -> Result<PollResults, ViewError> {
        let mut conn = self.conn.clone();
        let tally: Vec<(String, i64)> = conn.hgetall(self.keys.poll_tally(poll)).await?;
        Ok(PollResults::new(poll, tally))
    }

    /// A JSON document stored whole (the ranking job's fits), if present.
    pub async fn document(&self, key: &str) -> Result<Option<serde_json::Value>, ViewError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(key).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// A user's position among a tournament's registrants (1 = first in stream order).
    pub async fn registrant_position(
        &self,
        tournament: &str,
        user: &str,
    ) -> Result<Option<u64>, ViewError> {
        let mut conn = self.conn.clone();
        let raw: Option<u64> = conn.hget(self.keys.registrants(tournament), user).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        // Those ahead who withdrew no longer count: a first-come waitlist moves up.
        let gone: u64 = conn
            .zcount(self.keys.withdrawn(tournament), "-inf", format!("({raw}"))
            .await?;
        Ok(Some(raw.saturating_sub(gone)))
    }

    /// For a lottery's waitlisted user: how many still wait ahead of them, and how many won
    /// places are not claimed yet (each may still come down the waitlist).
    pub async fn waitlist_outlook(
        &self,
        tournament: &str,
        user: &str,
    ) -> Result<WaitlistOutlook, ViewError> {
        let mut conn = self.conn.clone();
        let (ahead, unclaimed, vacated): (Option<u64>, u64, u64) = redis::pipe()
            .zrank(self.keys.draw_waitlist(tournament), user)
            .zcard(self.keys.draw_deadlines(tournament))
            .zcard(self.keys.draw_vacated(tournament))
            .query_async(&mut conn)
            .await?;
        Ok(WaitlistOutlook {
            ahead,
            unclaimed_places: unclaimed + vacated,
        })
    }

    /// A user's lottery result, once drawn.
    pub async fn draw_result(
        &self,
        tournament: &str,
        user: &str,
    ) -> Result<Option<RegistrationState>, ViewError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.hget(self.keys.draw_results(tournament), user).await?;
        Ok(text.and_then(|t| RegistrationState::from_json(&t).ok()))
    }

    /// Whether `voter` has a vote counted in `poll`.
    pub async fn has_voted(&self, poll: &str, voter: &str) -> Result<bool, ViewError> {
        let mut conn = self.conn.clone();
        Ok(conn.hexists(self.keys.poll_choices(poll), voter).await?)
    }

    /// The first `limit` of a sorted set in `order`.
    pub async fn top(
        &self,
        key: &str,
        limit: usize,
        order: SortOrder,
    ) -> Result<Vec<Ranked>, ViewError> {
        let mut conn = self.conn.clone();
        let end = limit as isize - 1;
        let top: Vec<(String, f64)> = match order {
            SortOrder::Desc => conn.zrevrange_withscores(key, 0, end).await?,
            SortOrder::Asc => conn.zrange_withscores(key, 0, end).await?,
        };
        Ok(Ranked::list(top, 0))
    }

    /// The entries within `radius` places of `member`, or None when it is not ranked.
    pub async fn around(
        &self,
        key: &str,
        member: &str,
        radius: usize,
        order: SortOrder,
    ) -> Result<Option<Vec<Ranked>>, ViewError> {
        let mut conn = self.conn.clone();
        let rank: Option<usize> = match order {
            SortOrder::Desc => conn.zrevrank(key, member).await?,
            SortOrder::Asc => conn.zrank(key, member).await?,
        };
        let Some(rank) = rank else { return Ok(None) };
        let start = rank.saturating_sub(radius);
        let (first, last) = (start as isize, (rank + radius) as isize);
        let window: Vec<(String, f64)> = match order {
            SortOrder::Desc => conn.zrevrange_withscores(key, first, last).await?,
            SortOrder::Asc => conn.zrange_withscores(key, first, last).await?,
        };
        Ok(Some(Ranked::list(window, start as u64)))
    }

    /// Registrations per group of a tournament, and the total.
    pub async fn registrations(
        &self,
        tournament: &str,
    ) -> Result<(i64, Vec<(String, i64)>), ViewError> {
        let mut conn = self.conn.clone();
        let mut counts: Vec<(String, i64)> =
            conn.hgetall(self.keys.registrations(tournament)).await?;
        let total = counts
            .iter()
            .find(|(g, _)| g == "_total")
            .map_or(0, |(_, n)| *n);
        counts.retain(|(g, _)| g != "_total");
        counts.sort();
        Ok((total, counts))
    }

    /// The shared connection (the Redis rate-limit store uses it too).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

/// The first `limit` of a ranking (each entry `(id, score)`, best first).
pub fn top_of(ranking: &[(String, f64)], limit: usize) -> Vec<Ranked> {
    Ranked::list(ranking.iter().take(limit).cloned().collect(), 0)
}

/// The entries within `radius` places of `member`, or None when it is not ranked.
pub fn around_in(ranking: &[(String, f64)], member: &str, radius: usize) -> Option<Vec<Ranked>> {
    let rank = ranking.iter().position(|(id, _)| id == member)?;
    let start = rank.saturating_sub(radius);
    let end = (rank + radius + 1).min(ranking.len());
    Some(Ranked::list(ranking[start..end].to_vec(), start as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_of_a_ranking_read_like_the_sorted_set_commands() {
        let ranking: Vec<(String, f64)> = ["a", "b", "c", "d"]
            .iter()
            .zip([4.0, 3.0, 2.0, 1.0])
            .map(|(i, s)| (i.to_string(), s))
            .collect();
        let ids = |r: Vec<super::Ranked>| r.into_iter().map(|r| (r.rank, r.id)).collect::<Vec<_>>();
        assert_eq!(
            ids(super::top_of(&ranking, 2)),
            vec![(1, "a".into()), (2, "b".into())]
        );
        assert_eq!(
            ids(super::around_in(&ranking, "c", 1).unwrap()),
            vec![(2, "b".into()), (3, "c".into()), (4, "d".into())]
        );
        assert_eq!(
            ids(super::around_in(&ranking, "a", 0).unwrap()),
            vec![(1, "a".into())]
        );
        assert!(super::around_in(&ranking, "z", 2).is_none());
    }

    #[test]
    fn ranks_count_from_the_window_start() {
        let r = tally_schema::api::Ranked::list(vec![("a".into(), 3.0), ("b".into(), 1.0)], 4);
        assert_eq!((r[0].rank, r[1].rank), (5, 6));
    }
}
