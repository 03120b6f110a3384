//! The resource definitions every event is checked against, held in memory so the hot path
//! never waits on Postgres: loaded at start, reloaded when a change is announced on NATS, and
//! every `catalog_refresh_secs` as a fallback for a missed announcement. The membership lists,
//! which can hold millions of users, are not reloaded whole: each reload applies only the
//! changes made since the last one (`store::member_changes`).

use crate::access;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{self, StoreError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tally_schema::Event;
use tally_schema::ids::GroupId;
use tally_schema::resources::{
    Arena, Channel, Poll, RateLimit, Refusal, Resource, ResourceKind, Tournament,
};

/// Every definition at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    polls: HashMap<String, Poll>,
    arenas: HashMap<String, Arena>,
    tournaments: HashMap<String, Tournament>,
    channels: HashMap<String, Channel>,
    /// Each lottery's pseudonym key (tally-draw-v2), for registrants' receipts.
    pseudonym_keys: HashMap<String, [u8; 32]>,
}

/// The priority-group lists (tournament → user → group), kept up to date change by change.
#[derive(Debug, Default)]
struct Members {
    /// Every change up to this mark is applied.
    mark: i64,
    lists: HashMap<String, HashMap<String, GroupId>>,
}

impl Members {
    fn apply(&mut self, mark: i64, changes: Vec<store::MemberChange>) -> usize {
        let applied = changes.len();
        for c in changes {
            match c.group {
                Some(group) => {
                    self.lists
                        .entry(c.tournament)
                        .or_default()
                        .insert(c.user, group);
                }
                None => {
                    if let Some(list) = self.lists.get_mut(&c.tournament) {
                        list.remove(&c.user);
                        if list.is_empty() {
                            self.lists.remove(&c.tournament);
                        }
                    }
                }
            }
        }
        self.mark = mark;
        applied
    }
}

impl Snapshot {
    fn from_resources(resources: Vec<Resource>) -> Self {
        let mut snapshot = Self::default();
        for r in resources {
            snapshot.insert(r);
        }
        snapshot
    }

    fn insert(&mut self, r: Resource) {
        match r {
            Resource::Poll(p) => drop(self.polls.insert(p.id.to_string(), p)),
            Resource::Arena(a) => drop(self.arenas.insert(a.id.to_string(), a)),
            Resource::Tournament(t) => drop(self.tournaments.insert(t.id.to_string(), t)),
            Resource::Channel(c) => drop(self.channels.insert(c.id.to_string(), c)),
        }
    }

    pub fn channel(&self, id: &str) -> Result<&Channel, ApiError> {
        self.channels
            .get(id)
            .ok_or_else(|| unknown(ResourceKind::Channel, id))
    }

    pub fn poll(&self, id: &str) -> Result<&Poll, ApiError> {
        self.polls
            .get(id)
            .ok_or_else(|| unknown(ResourceKind::Poll, id))
    }

    pub fn arena(&self, id: &str) -> Result<&Arena, ApiError> {
        self.arenas
            .get(id)
            .ok_or_else(|| unknown(ResourceKind::Arena, id))
    }

    pub fn tournament(&self, id: &str) -> Result<&Tournament, ApiError> {
        self.tournaments
            .get(id)
            .ok_or_else(|| unknown(ResourceKind::Tournament, id))
    }

    /// A registrant's receipt in a lottery (hex), from which they find their pseudonym in
    /// the public draw record; `None` outside v2 lotteries.
    pub fn receipt(&self, tournament: &str, user: &str) -> Option<String> {
        let key = self.pseudonym_keys.get(tournament)?;
        let receipt = tally_schema::lottery::receipt(key, user);
        Some(tally_schema::lottery::hex(&receipt))
    }

    pub fn len(&self) -> usize {
        self.polls.len() + self.arenas.len() + self.tournaments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unknown(kind: ResourceKind, id: &str) -> ApiError {
    ApiError::NotFound {
        field: kind.as_str().to_owned(),
        message: format!("no such {}: '{id}'", kind.as_str()),
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict { code, message } => ApiError::Conflict { code, message },
            Refusal::Invalid(e) => ApiError::Field(e),
        }
    }
}

/// The shared, swappable snapshot. Readers take an `Arc` and never block a reload for long.
#[derive(Clone)]
pub struct Catalog {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    pool: PgPool,
    /// Held from a reload's read to its swap, and by [`Catalog::put`]: a reload that read
    /// Postgres before a definition was stored cannot swap it back out after it was put.
    changing: Arc<tokio::sync::Mutex<()>>,
    /// Apart from the snapshot: changed in place, a few entries at a time, never copied.
    members: Arc<RwLock<Members>>,
}

impl Catalog {
    pub async fn load(pool: PgPool) -> Result<Self, StoreError> {
        let catalog = Self {
            snapshot: Default::default(),
            pool,
            changing: Arc::default(),
            members: Arc::default(),
        };
        catalog.reload().await?;
        Ok(catalog)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads every definition from Postgres and swaps them in at once.
    #[tracing::instrument(name = "catalog_reload", skip_all)]
    pub async fn reload(&self) -> Result<usize, StoreError> {
        let _changing = self.changing.lock().await;
        let mut snapshot = Snapshot::from_resources(store::list_all(&self.pool).await?);
        snapshot.pseudonym_keys = store::pseudonym_keys(&self.pool).await?;
        let since = self.members.read().unwrap_or_else(|e| e.into_inner()).mark;
        let (mark, changes) = store::member_changes(&self.pool, since).await?;
        if !changes.is_empty() || mark != since {
            let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
            if mark < since {
                tracing::warn!(
                    mark,
                    since,
                    "Membership changes numbered anew (a restored database): reading every list again."
                );
                members.lists.clear();
            }
            let applied = members.apply(mark, changes);
            metrics::counter!("tally_ingest_catalog_member_changes_rows_total")
                .increment(applied as u64);
        }
        let n = snapshot.len();
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        metrics::gauge!("tally_ingest_catalog_resources").set(n as f64);
        Ok(n)
    }

    /// Makes a definition this instance just stored visible to it at once.
    pub async fn put(&self, resource: Resource) {
        let _changing = self.changing.lock().await;
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot {
            polls: guard.polls.clone(),
            arenas: guard.arenas.clone(),
            tournaments: guard.tournaments.clone(),
            channels: guard.channels.clone(),
            pseudonym_keys: guard.pseudonym_keys.clone(),
        };
        next.insert(resource);
        *guard = Arc::new(next);
    }

    /// Checks an event against its resource's rules and who may send it, and stamps what the
    /// resource decides (a score's effect, a registrant's group). Unknown resource → 404,
    /// credentials missing → 401 or not enough → 403, closed window → 409, bad member → 422.
    /// Returns the event and the resource's own rate limits.
    pub fn admit(
        &self,
        event: Event,
        principal: &Principal,
        now: DateTime<Utc>,
    ) -> Result<(Event, Vec<RateLimit>), ApiError> {
        let snapshot = self.snapshot();
        Ok(match event {
            Event::PollVote(v) => {
                let poll = snapshot.poll(v.poll.as_str())?;
                access::act_as(principal, poll.identity, "voter", v.voter.as_str())?;
                poll.check_vote(&v.options, now)?;
                (Event::PollVote(v), poll.rate_limits.clone())
            }
            Event::PairVote(v) => {
                // winner == loser was refused with the body (`same_as_winner`).
                let arena = snapshot.arena(v.arena.as_str())?;
                access::act_as(principal, arena.identity, "session", v.session.as_str())?;
                arena.check_vote(&v.winner, &v.loser, now)?;
                (Event::PairVote(v), arena.rate_limits.clone())
            }
            Event::Score(mut s) => {
                let t = snapshot.tournament(s.tournament.as_str())?;
                access::score(principal, t.scores_from(), &s.team)?;
                t.check_score(&s.match_id, &s.team)?;
                s.effect = t.score_effect();
                (Event::Score(s), t.rate_limits.clone())
            }
            Event::Registration(mut r) => {
                let t = snapshot.tournament(r.tournament.as_str())?;
                access::act_as(principal, t.identity, "user", r.user.as_str())?;
                let members = self.members.read().unwrap_or_else(|e| e.into_inner());
                let listed = members.lists.get(r.tournament.as_str());
                r.group = access::group(principal, t.identity, listed, &r.user, r.group.take())?;
                drop(members);
                t.check_registration(&r.user, r.group.as_ref(), now)?;
                (Event::Registration(r), t.rate_limits.clone())
            }
            // Made by the workers and by the claim and withdraw routes, never taken from a
            // client body.
            Event::RegistrationStatus(s) => {
                let t = snapshot.tournament(s.tournament.as_str())?;
                access::act_as(principal, t.identity, "user", s.user.as_str())?;
                (Event::RegistrationStatus(s), t.rate_limits.clone())
            }
            Event::MediaUploaded(m) => {
                let t = snapshot.tournament(m.tournament.as_str())?;
                if let Some(user) = &m.user {
                    access::act_as(principal, t.identity, "user", user.as_str())?;
                }
                (Event::MediaUploaded(m), t.rate_limits.clone())
            }
        })
    }

    /// Reloads on every announcement and on a timer; runs until the subscription ends.
    pub async fn follow(self, mut changes: async_nats::Subscriber, every: Duration) {
        use futures::StreamExt;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = changes.next() => {
                    if message.is_none() {
                        return;
                    }
                }
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload().await {
                // The last good snapshot stays in force; events keep flowing.
                tracing::warn!(error = %e, "Catalog reload failed; keeping the previous one.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(user: &str, group: Option<&str>) -> store::MemberChange {
        store::MemberChange {
            tournament: "club".into(),
            user: user.into(),
            group: group.map(|g| GroupId::try_from(g).unwrap()),
        }
    }

    #[test]
    fn membership_changes_apply_in_order() {
        let mut members = Members::default();
        members.apply(3, vec![change("a", Some("vip")), change("b", Some("vip"))]);
        // Moved, removed, and a removal of someone never listed.
        members.apply(
            6,
            vec![
                change("a", Some("members")),
                change("b", None),
                change("z", None),
            ],
        );
        let club = &members.lists["club"];
        assert_eq!(club.len(), 1);
        assert_eq!(club["a"].as_str(), "members");
        assert_eq!(members.mark, 6);
        // The last member gone: the tournament has no list, as if it never had one.
        members.apply(7, vec![change("a", None)]);
        assert!(!members.lists.contains_key("club"));
    }
}
