//! Every Redis key: written by the aggregator, read by ingest's read API, named in one place.

/// Key names under one prefix (`tally` in production; tests use their own).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash: option → votes.
    pub fn poll_tally(&self, poll: &str) -> String {
        format!("{}:poll:{poll}:tally", self.prefix)
    }

    /// Hash: voter → their current options joined by ',' (a later vote replaces it).
    pub fn poll_choices(&self, poll: &str) -> String {
        format!("{}:poll:{poll}:choices", self.prefix)
    }

    /// Sorted set: team → points.
    pub fn standings(&self, tournament: &str) -> String {
        format!("{}:standings:{tournament}", self.prefix)
    }

    /// Sorted set: team → its score in one match, combined as the standings are.
    pub fn match_scores(&self, tournament: &str, match_id: &str) -> String {
        format!("{}:match:{tournament}:{match_id}", self.prefix)
    }

    /// Hash: group → registrants, and `_total` (each user counted once).
    pub fn registrations(&self, tournament: &str) -> String {
        format!("{}:registrations:{tournament}", self.prefix)
    }

    /// Hash: user → their position among the tournament's registrants, in stream order.
    pub fn registrants(&self, tournament: &str) -> String {
        format!("{}:registrations:{tournament}:positions", self.prefix)
    }

    /// Sorted set: user → registration position, of each registrant who withdrew; a
    /// first-come position counts only those still registered ahead.
    pub fn withdrawn(&self, tournament: &str) -> String {
        format!("{}:registrations:{tournament}:withdrawn", self.prefix)
    }

    /// The stream sequence of the latest withdrawal whose first-come promotions the workers
    /// have announced.
    pub fn promotions_mark(&self, tournament: &str) -> String {
        format!("{}:registrations:{tournament}:promoted", self.prefix)
    }

    /// Sorted set: user → stream sequence, of each place freed (a winner withdrew, or a
    /// promotion found its user gone) and not yet handed on by the release step.
    pub fn draw_vacated(&self, tournament: &str) -> String {
        format!("{}:draw:{tournament}:vacated", self.prefix)
    }

    /// Hash: user → their lottery result as JSON (written by the draw job).
    pub fn draw_results(&self, tournament: &str) -> String {
        format!("{}:draw:{tournament}", self.prefix)
    }

    /// String with a TTL: set by the worker whose turn it is to call a channel's upstream in
    /// the current interval (`SET NX PX`), so workers together call it once per interval.
    pub fn upstream_turn(&self, channel: &str) -> String {
        format!("{}:channel:{channel}:upstream-turn", self.prefix)
    }

    /// Sorted set: user → claim deadline (ms since the epoch) of each won place not yet
    /// claimed or released. The release step reads only what is due from it, never the
    /// whole status hash.
    pub fn draw_deadlines(&self, tournament: &str) -> String {
        format!("{}:draw:{tournament}:deadlines", self.prefix)
    }

    /// The latest claim deadline (ms) the reminder step has reminded of: it reads only the
    /// deadlines after it.
    pub fn draw_reminded(&self, tournament: &str) -> String {
        format!("{}:draw:{tournament}:reminded", self.prefix)
    }

    /// Sorted set: user → waitlist position of each user still waitlisted.
    pub fn draw_waitlist(&self, tournament: &str) -> String {
        format!("{}:draw:{tournament}:waitlist", self.prefix)
    }

    /// Sorted set: item → Elo rating over every vote of the arena.
    pub fn arena_elo(&self, arena: &str) -> String {
        format!("{}:elo:{arena}", self.prefix)
    }

    /// String: the arena's latest Bradley–Terry fit as JSON (written by the ranking job).
    pub fn bradley_terry(&self, arena: &str) -> String {
        format!("{}:bt:{arena}", self.prefix)
    }

    /// String with a TTL: a request signature (hex) already used; a replay is refused.
    pub fn signature_seen(&self, signature_hex: &str) -> String {
        format!("{}:sigseen:{signature_hex}", self.prefix)
    }

    /// Integer: bytes of media a tournament has stored (its quota's count, kept by ingest).
    pub fn media_bytes(&self, tournament: &str) -> String {
        format!("{}:media:{tournament}:bytes", self.prefix)
    }

    /// GCRA state of one rate-limit bucket: the policy (`kind.by`), the rule's fingerprint
    /// (a changed rule starts afresh) and the bucket (actor, address or /64).
    pub fn rate_limit(&self, policy: &str, rule: &str, bucket: &str) -> String {
        format!("{}:ratelimit:{policy}:{rule}:{bucket}", self.prefix)
    }

    /// Sorted set: item → Elo rating over one session's votes (expires).
    pub fn session_elo(&self, arena: &str, session: &str) -> String {
        format!("{}:elo:{arena}:session:{session}", self.prefix)
    }

    /// String with a TTL: a keyed event with this id was applied.
    pub fn seen(&self, id: &uuid::Uuid) -> String {
        format!("{}:seen:{id}", self.prefix)
    }

    /// String: the highest stream sequence a sink has applied.
    pub fn applied_seq(&self, consumer: &str) -> String {
        format!("{}:sink:{consumer}:applied_seq", self.prefix)
    }
}
