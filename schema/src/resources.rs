//! Polls, arenas and tournaments as operators define them, and the rules ingest checks every
//! event against. The definitions are the admin API's bodies and what Postgres stores (as
//! JSON); the rules are pure functions, so ingest can apply them from memory.

use crate::api::{FieldError, Validate};
pub use crate::channels::Channel;
use crate::ids::{
    ArenaId, GroupId, ItemId, MatchId, OptionId, PollId, TeamId, TournamentId, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// At most this many options in a poll, items in an arena, teams, matches or groups.
pub const MAX_MEMBERS: usize = 1000;
/// Titles are for people: short.
pub const MAX_TITLE_CHARS: usize = 200;

/// The kinds of resource; names the admin routes and the `resources.kind` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Poll,
    Arena,
    Tournament,
    Channel,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [Self::Poll, Self::Arena, Self::Tournament, Self::Channel];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Arena => "arena",
            Self::Tournament => "tournament",
            Self::Channel => "channel",
        }
    }

    /// The collection name in admin URLs: `/admin/v1/{plural}`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Poll => "polls",
            Self::Arena => "arenas",
            Self::Tournament => "tournaments",
            Self::Channel => "channels",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// When results of a poll may be read by the public.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Always,
    /// Only to a voter who has voted (the read names the voter).
    AfterVoting,
    AfterClose,
    /// Only with an admin key.
    Never,
}

/// Who a resource's participants are. `anonymous`: the body names the voter, session or
/// user, as a public poll needs. `token`: the user comes from a token the organiser's site
/// issued (its `sub`), or from a site key that vouches for the user it names; a body or path
/// naming anyone else is refused.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    #[default]
    Anonymous,
    Token,
}

impl Identity {
    fn is_anonymous(&self) -> bool {
        *self == Identity::Anonymous
    }
}

/// Who may post a tournament's scores.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoresFrom {
    /// Any caller (the default of anonymous tournaments).
    Anyone,
    /// Admin and scorekeeper keys only (the default of tournaments that require identity).
    Keys,
    /// Those keys, and users whose token names the team (its team claim).
    TeamToken,
}

/// A poll: its options, how many a voter may pick, when it is open, who sees results.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    pub id: PollId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub title: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 2, max_items = 1000))]
    pub options: Vec<OptionId>,
    /// Several options per vote (at most `max_choices`); otherwise exactly one.
    #[serde(default)]
    pub multiple: bool,
    /// For multiple-choice polls; defaults to every option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_choices: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub visibility: Visibility,
    /// Whether the voter comes from a user token.
    #[serde(default, skip_serializing_if = "Identity::is_anonymous")]
    pub identity: Identity,
    /// Limits for this poll, replacing the route's limit of the same kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
}

/// An arena: the items voters compare two at a time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arena {
    pub id: ArenaId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub title: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 2, max_items = 1000))]
    pub items: Vec<ItemId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// Whether the session comes from a user token.
    #[serde(default, skip_serializing_if = "Identity::is_anonymous")]
    pub identity: Identity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
}

/// How a team's score events combine into its standing (as in Nakama's leaderboards).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreOperator {
    /// Points add up.
    #[default]
    Incr,
    /// The best single score counts (highest when sorted descending, lowest ascending).
    Best,
    /// The latest score replaces the standing.
    Set,
}

/// Which end of the standings leads.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Highest first.
    #[default]
    Desc,
    /// Lowest first (times, strokes).
    Asc,
}

/// How registration places are given out (issue 5 draws them).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    #[default]
    FirstCome,
    Lottery,
}

/// A priority group and its weight in a lottery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityGroup {
    pub id: GroupId,
    #[cfg_attr(
        feature = "openapi",
        schema(exclusive_minimum = 0.0, maximum = 1_000_000.0)
    )]
    pub weight: f64,
}

/// A match and the teams that play it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchDef {
    pub id: MatchId,
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub teams: Vec<TeamId>,
    /// `scheduled` → `live` → `final`; a final match takes no more scores.
    #[serde(
        default,
        skip_serializing_if = "crate::status::MatchStatus::is_scheduled"
    )]
    pub status: crate::status::MatchStatus,
}

/// A tournament: teams and matches (empty lists accept any), how scores combine, and its
/// registration window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tournament {
    pub id: TournamentId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub title: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub teams: Vec<TeamId>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub matches: Vec<MatchDef>,
    #[serde(default)]
    pub score_operator: ScoreOperator,
    #[serde(default)]
    pub sort: SortOrder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_opens_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_closes_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub capacity: Option<u32>,
    #[serde(default)]
    pub mode: RegistrationMode,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub groups: Vec<PriorityGroup>,
    /// Lottery: how long a winner (or a user promoted from the waitlist) has to claim the
    /// place, in seconds (default 48 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 31_536_000))]
    pub claim_window_secs: Option<u64>,
    /// Whether registrants (and uploaders) come from a user token; their priority group
    /// then comes from the token's group claim or a site key, never from the body.
    #[serde(default, skip_serializing_if = "Identity::is_anonymous")]
    pub identity: Identity,
    /// Who may post scores; by default anyone in an anonymous tournament, keys otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores_from: Option<ScoresFrom>,
    /// Bytes of media the tournament may store (originals, after metadata removal); by
    /// default ingest's `TALLY_MEDIA_QUOTA_BYTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub media_quota_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Email the winners (and those promoted from the waitlist) with their claim link and
    /// deadline, to the address their token or the site's key gives at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<crate::email::EmailNotices>,
}

/// Whose requests a rate limit counts together.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBy {
    /// The voter, session, team or user named in the event (per resource).
    Actor,
    /// The client's IP address.
    Ip,
    /// Everyone writing to the same poll, arena or tournament.
    Scope,
}

impl LimitBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Actor => "actor",
            Self::Ip => "ip",
            Self::Scope => "scope",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    pub fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }
}

/// `limit` requests per `per`, with bursts of up to `burst` (default: `limit`), counted by
/// `by` (GCRA: requests are spread evenly, a burst borrows from the coming window).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub by: LimitBy,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000_000))]
    pub limit: u32,
    pub per: Per,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000_000))]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub const MAX: u32 = 1_000_000_000;

    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.limit)
    }

    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.per.seconds()) / self.limit.max(1)
    }

    fn check(&self, field: &str) -> Result<(), FieldError> {
        let ok = |n: u32| (1..=Self::MAX).contains(&n);
        if !ok(self.limit) {
            return Err(FieldError::invalid(
                "invalid_value",
                format!("{field}.limit"),
                "must be between 1 and 1e9",
            ));
        }
        if !ok(self.burst()) {
            return Err(FieldError::invalid(
                "invalid_value",
                format!("{field}.burst"),
                "must be between 1 and 1e9",
            ));
        }
        Ok(())
    }
}

/// A configured limit for every event of one kind, written `kind:by=limit/per[,burst=n]`,
/// e.g. `registration:actor=5/minute` or `registration:scope=1000/minute,burst=20`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimit {
    pub kind: crate::Kind,
    pub limit: RateLimit,
}

impl std::str::FromStr for RouteLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("'{s}': expected kind:by=limit/per[,burst=n]");
        let (kind, rest) = s.trim().split_once(':').ok_or_else(usage)?;
        let kind = crate::Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| format!("'{kind}' is not an event kind"))?;
        let (rule, burst) = match rest.split_once(",burst=") {
            Some((rule, b)) => (rule, Some(b.parse().map_err(|_| usage())?)),
            None => (rest, None),
        };
        let (by, rate) = rule.split_once('=').ok_or_else(usage)?;
        let (limit, per) = rate.split_once('/').ok_or_else(usage)?;
        let quoted = |v: &str| serde_json::Value::String(v.to_owned());
        let limit = RateLimit {
            by: serde_json::from_value(quoted(by)).map_err(|_| usage())?,
            limit: limit.parse().map_err(|_| usage())?,
            per: serde_json::from_value(quoted(per)).map_err(|_| usage())?,
            burst,
        };
        limit.check("limit").map_err(|e| e.to_string())?;
        Ok(Self { kind, limit })
    }
}

/// What a score does to a standing, decided at the edge from the tournament's operator and
/// sort order and carried in the event, so every sink and every rebuild applies the same rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreEffect {
    #[default]
    Add,
    Replace,
    /// Keep the higher of the standing and this score.
    Max,
    /// Keep the lower.
    Min,
}

impl ScoreEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Replace => "replace",
            Self::Max => "max",
            Self::Min => "min",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Add, Self::Replace, Self::Max, Self::Min]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

/// An open/closed window; `None` ends are unbounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
}

impl Window {
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.opens_at.is_none_or(|o| now >= o) && self.closes_at.is_none_or(|c| now < c)
    }

    pub fn has_closed(&self, now: DateTime<Utc>) -> bool {
        self.closes_at.is_some_and(|c| now >= c)
    }

    pub(crate) fn check(&self, field: &str) -> Result<(), FieldError> {
        match (self.opens_at, self.closes_at) {
            (Some(o), Some(c)) if c <= o => Err(FieldError::invalid(
                "invalid_window",
                field,
                "must be later than the opening time",
            )),
            _ => Ok(()),
        }
    }

    /// Open from `now`: the start moves to now, and an end already passed is dropped.
    fn opened(self, now: DateTime<Utc>) -> Self {
        Self {
            opens_at: Some(now),
            closes_at: self.closes_at.filter(|c| *c > now),
        }
    }

    /// Closed from `now` (a start in the future moves back so the window stays valid).
    fn closed(self, now: DateTime<Utc>) -> Self {
        Self {
            opens_at: self
                .opens_at
                .map(|o| o.min(now - chrono::Duration::milliseconds(1))),
            closes_at: Some(now),
        }
    }
}

/// Why an event breaks a resource's rules: 409 with a code, or 422 naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl Refusal {
    fn window(code: &'static str, what: &str, window: &Window, now: DateTime<Utc>) -> Self {
        let message = match (window.has_closed(now), window.opens_at, window.closes_at) {
            (true, _, Some(c)) => format!("{what} closed at {}", c.to_rfc3339()),
            (_, Some(o), _) => format!("{what} opens at {}", o.to_rfc3339()),
            _ => format!("{what} is not open"),
        };
        Self::Conflict { code, message }
    }
}

fn not_listed(field: &str, what: &str, id: &str) -> Refusal {
    FieldError::invalid("unknown_member", field, format!("'{id}' is not {what}")).into()
}

impl Poll {
    pub fn window(&self) -> Window {
        Window {
            opens_at: self.opens_at,
            closes_at: self.closes_at,
        }
    }

    /// The most options one vote may name.
    pub fn max_choices(&self) -> usize {
        match self.multiple {
            true => self.max_choices.unwrap_or(self.options.len()),
            false => 1,
        }
    }

    /// Whether a vote with these options may be taken now.
    pub fn check_vote(&self, options: &[OptionId], now: DateTime<Utc>) -> Result<(), Refusal> {
        if !self.window().contains(now) {
            return Err(Refusal::window(
                "poll_closed",
                "the poll",
                &self.window(),
                now,
            ));
        }
        let max = self.max_choices();
        if options.len() > max {
            return Err(FieldError::invalid(
                "too_many_choices",
                "options",
                format!("this poll takes at most {max} option(s) per vote"),
            )
            .into());
        }
        match options.iter().position(|o| !self.options.contains(o)) {
            Some(i) => Err(not_listed(
                &format!("options[{i}]"),
                "an option of this poll",
                options[i].as_str(),
            )),
            None => Ok(()),
        }
    }

    /// Whether the public may read the results now; `voted` says if the reader has voted.
    pub fn results_visible(&self, now: DateTime<Utc>, voted: bool) -> bool {
        match self.visibility {
            Visibility::Always => true,
            Visibility::AfterVoting => voted,
            Visibility::AfterClose => self.window().has_closed(now),
            Visibility::Never => false,
        }
    }
}

impl Arena {
    pub fn window(&self) -> Window {
        Window {
            opens_at: self.opens_at,
            closes_at: self.closes_at,
        }
    }

    pub fn check_vote(
        &self,
        winner: &ItemId,
        loser: &ItemId,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if !self.window().contains(now) {
            return Err(Refusal::window(
                "poll_closed",
                "the arena",
                &self.window(),
                now,
            ));
        }
        for (field, item) in [("winner", winner), ("loser", loser)] {
            if !self.items.contains(item) {
                return Err(not_listed(field, "an item of this arena", item.as_str()));
            }
        }
        Ok(())
    }
}

impl Tournament {
    pub fn registration_window(&self) -> Window {
        Window {
            opens_at: self.registration_opens_at,
            closes_at: self.registration_closes_at,
        }
    }

    pub const DEFAULT_CLAIM_WINDOW_SECS: u64 = 48 * 3600;

    pub fn claim_window(&self) -> chrono::Duration {
        let secs = self
            .claim_window_secs
            .unwrap_or(Self::DEFAULT_CLAIM_WINDOW_SECS);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
    }

    pub fn scores_from(&self) -> ScoresFrom {
        self.scores_from.unwrap_or(match self.identity {
            Identity::Anonymous => ScoresFrom::Anyone,
            Identity::Token => ScoresFrom::Keys,
        })
    }

    pub fn score_effect(&self) -> ScoreEffect {
        match (self.score_operator, self.sort) {
            (ScoreOperator::Incr, _) => ScoreEffect::Add,
            (ScoreOperator::Set, _) => ScoreEffect::Replace,
            (ScoreOperator::Best, SortOrder::Desc) => ScoreEffect::Max,
            (ScoreOperator::Best, SortOrder::Asc) => ScoreEffect::Min,
        }
    }

    /// Whether its standings are final: it lists matches and every one is final, so every
    /// score is refused (`match_final`) from now on.
    pub fn is_final(&self) -> bool {
        !self.matches.is_empty()
            && self
                .matches
                .iter()
                .all(|m| m.status == crate::status::MatchStatus::Final)
    }

    pub fn check_score(&self, match_id: &MatchId, team: &TeamId) -> Result<(), Refusal> {
        if !self.teams.is_empty() && !self.teams.contains(team) {
            return Err(not_listed(
                "team",
                "a team of this tournament",
                team.as_str(),
            ));
        }
        if self.matches.is_empty() {
            return Ok(());
        }
        let Some(m) = self.matches.iter().find(|m| &m.id == match_id) else {
            return Err(not_listed(
                "match",
                "a match of this tournament",
                match_id.as_str(),
            ));
        };
        if !m.teams.is_empty() && !m.teams.contains(team) {
            return Err(not_listed("team", "a team of this match", team.as_str()));
        }
        if m.status == crate::status::MatchStatus::Final {
            return Err(Refusal::Conflict {
                code: "match_final",
                message: format!("match '{match_id}' is final: it takes no more scores"),
            });
        }
        Ok(())
    }

    pub fn check_registration(
        &self,
        _user: &UserId,
        group: Option<&GroupId>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let window = self.registration_window();
        if !window.contains(now) {
            return Err(Refusal::window(
                "window_closed",
                "registration",
                &window,
                now,
            ));
        }
        match group {
            Some(g) if !self.groups.iter().any(|p| &p.id == g) => Err(not_listed(
                "group",
                "a priority group of this tournament",
                g.as_str(),
            )),
            _ => Ok(()),
        }
    }
}

/// Any of them, as the catalog holds them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Resource {
    Poll(Poll),
    Arena(Arena),
    Tournament(Tournament),
    Channel(Channel),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Poll(_) => ResourceKind::Poll,
            Self::Arena(_) => ResourceKind::Arena,
            Self::Tournament(_) => ResourceKind::Tournament,
            Self::Channel(_) => ResourceKind::Channel,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Poll(p) => p.id.as_str(),
            Self::Arena(a) => a.id.as_str(),
            Self::Tournament(t) => t.id.as_str(),
            Self::Channel(c) => c.id.as_str(),
        }
    }

    /// Decodes a definition of a known kind (strictly: the admin API's bodies and the stored
    /// JSON use the same types).
    pub fn decode(kind: ResourceKind, bytes: &[u8]) -> Result<Self, FieldError> {
        use crate::api::decode;
        Ok(match kind {
            ResourceKind::Poll => Self::Poll(decode(bytes)?),
            ResourceKind::Arena => Self::Arena(decode(bytes)?),
            ResourceKind::Tournament => Self::Tournament(decode(bytes)?),
            ResourceKind::Channel => Self::Channel(decode(bytes)?),
        })
    }

    /// The same resource opened (`true`) or closed now: the voting window of polls and arenas,
    /// the registration window of tournaments, the publishing window of channels.
    pub fn with_window_state(mut self, open: bool, now: DateTime<Utc>) -> Self {
        let change = |w: Window| if open { w.opened(now) } else { w.closed(now) };
        match &mut self {
            Self::Poll(p) => {
                let w = change(p.window());
                (p.opens_at, p.closes_at) = (w.opens_at, w.closes_at);
            }
            Self::Arena(a) => {
                let w = change(a.window());
                (a.opens_at, a.closes_at) = (w.opens_at, w.closes_at);
            }
            Self::Tournament(t) => {
                let w = change(t.registration_window());
                (t.registration_opens_at, t.registration_closes_at) = (w.opens_at, w.closes_at);
            }
            Self::Channel(c) => {
                let w = change(c.window());
                (c.opens_at, c.closes_at) = (w.opens_at, w.closes_at);
            }
        }
        self
    }

    /// Whether `self` may replace `old` at `now`. Score rules are fixed once a tournament
    /// exists: every score already applied was combined under them. A lottery's rules
    /// (mode, capacity, groups and weights, window) are fixed once its registration has
    /// opened: the draw's commitment covers them. Closing a window that was left open-ended
    /// is what the committed rules say the operator does, so it stays allowed.
    pub fn check_change_from(&self, old: &Resource, now: DateTime<Utc>) -> Result<(), Refusal> {
        let (Self::Tournament(new), Self::Tournament(old)) = (self, old) else {
            return Ok(());
        };
        // A match's status only moves forward, and a final match stays.
        for before in &old.matches {
            let after = new.matches.iter().find(|m| m.id == before.id);
            let moved_back = after.is_none_or(|m| !before.status.may_become(m.status));
            if before.status != crate::status::MatchStatus::Scheduled && moved_back {
                return Err(Refusal::Conflict {
                    code: "match_status_backwards",
                    message: format!(
                        "match '{}' is {}: its status only moves forward (scheduled, live, final) \
                         and a started match stays listed",
                        before.id,
                        before.status.as_str()
                    ),
                });
            }
        }
        if new.score_effect() != old.score_effect() {
            return Err(Refusal::Conflict {
                code: "immutable_field",
                message: "score_operator and sort cannot change once a tournament exists".into(),
            });
        }
        let opened = old.registration_opens_at.is_none_or(|o| o <= now);
        if old.mode == RegistrationMode::Lottery && opened {
            let closes_ok = new.registration_closes_at == old.registration_closes_at
                || old.registration_closes_at.is_none();
            let same = new.mode == old.mode
                && new.capacity == old.capacity
                && new.groups == old.groups
                && new.registration_opens_at == old.registration_opens_at
                && closes_ok;
            if !same {
                return Err(Refusal::Conflict {
                    code: "rules_frozen",
                    message: "a lottery's mode, capacity, groups and window cannot change once \
                              its registration has opened: the draw is committed to them"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

pub(crate) fn check_title(title: &str) -> Result<(), FieldError> {
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            "invalid_value",
            "title",
            format!("must be at most {MAX_TITLE_CHARS} printable characters"),
        ));
    }
    Ok(())
}

fn check_limits(limits: &[RateLimit]) -> Result<(), FieldError> {
    for (i, l) in limits.iter().enumerate() {
        l.check(&format!("rate_limits[{i}]"))?;
        if limits[..i].iter().any(|o| o.by == l.by) {
            return Err(FieldError::invalid(
                "duplicate",
                format!("rate_limits[{i}].by"),
                "one limit per 'by'",
            ));
        }
    }
    Ok(())
}

/// Members listed once each, within [min, MAX_MEMBERS].
fn check_members<T: PartialEq + std::fmt::Display>(
    field: &str,
    members: &[T],
    min: usize,
) -> Result<(), FieldError> {
    if members.len() < min || members.len() > MAX_MEMBERS {
        return Err(FieldError::invalid(
            "invalid_length",
            field,
            format!("must list between {min} and {MAX_MEMBERS} entries"),
        ));
    }
    for (i, m) in members.iter().enumerate() {
        if members[..i].contains(m) {
            return Err(FieldError::invalid(
                "duplicate",
                format!("{field}[{i}]"),
                format!("'{m}' is listed twice"),
            ));
        }
    }
    Ok(())
}

impl Validate for Poll {
    fn validate(&self) -> Result<(), FieldError> {
        check_title(&self.title)?;
        check_members("options", &self.options, 2)?;
        self.window().check("closes_at")?;
        check_limits(&self.rate_limits)?;
        match (self.multiple, self.max_choices) {
            (false, Some(_)) => Err(FieldError::invalid(
                "invalid_value",
                "max_choices",
                "only multiple-choice polls take max_choices",
            )),
            (true, Some(m)) if m == 0 || m > self.options.len() => Err(FieldError::invalid(
                "invalid_value",
                "max_choices",
                "must be between 1 and the number of options",
            )),
            _ => Ok(()),
        }
    }
}

impl Validate for Arena {
    fn validate(&self) -> Result<(), FieldError> {
        check_title(&self.title)?;
        check_members("items", &self.items, 2)?;
        check_limits(&self.rate_limits)?;
        self.window().check("closes_at")
    }
}

impl Validate for Tournament {
    fn validate(&self) -> Result<(), FieldError> {
        check_title(&self.title)?;
        check_members("teams", &self.teams, 0)?;
        let match_ids: Vec<&MatchId> = self.matches.iter().map(|m| &m.id).collect();
        check_members("matches", &match_ids, 0)?;
        for (i, m) in self.matches.iter().enumerate() {
            check_members(&format!("matches[{i}].teams"), &m.teams, 0)?;
            if let Some(j) = m
                .teams
                .iter()
                .position(|t| !self.teams.is_empty() && !self.teams.contains(t))
            {
                return Err(FieldError::invalid(
                    "unknown_member",
                    format!("matches[{i}].teams[{j}]"),
                    "is not a team of this tournament",
                ));
            }
        }
        self.registration_window().check("registration_closes_at")?;
        check_limits(&self.rate_limits)?;
        if let Some(email) = &self.email {
            email.validate()?;
        }
        if self
            .claim_window_secs
            .is_some_and(|s| s == 0 || s > 365 * 86400)
        {
            return Err(FieldError::invalid(
                "invalid_value",
                "claim_window_secs",
                "must be between 1 second and a year",
            ));
        }
        if self.capacity == Some(0) {
            return Err(FieldError::invalid(
                "invalid_value",
                "capacity",
                "must be at least 1",
            ));
        }
        let group_ids: Vec<&GroupId> = self.groups.iter().map(|g| &g.id).collect();
        check_members("groups", &group_ids, 0)?;
        for (i, g) in self.groups.iter().enumerate() {
            if !(g.weight.is_finite() && g.weight > 0.0 && g.weight <= 1e6) {
                return Err(FieldError::invalid(
                    "invalid_value",
                    format!("groups[{i}].weight"),
                    "must be a positive number up to 1e6",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn poll() -> Poll {
        serde_json::from_value(serde_json::json!({
            "id": "p", "options": ["a", "b", "c"],
            "opens_at": at(0), "closes_at": at(100),
        }))
        .unwrap()
    }

    fn opts(ids: &[&str]) -> Vec<OptionId> {
        ids.iter()
            .map(|s| OptionId::try_from(*s).unwrap())
            .collect()
    }

    fn refusal_code(r: Result<(), Refusal>) -> (&'static str, String) {
        match r.unwrap_err() {
            Refusal::Conflict { code, .. } => (code, String::new()),
            Refusal::Invalid(e) => (e.code, e.field),
        }
    }

    #[test]
    fn votes_count_only_inside_the_window() {
        let p = poll();
        assert!(p.check_vote(&opts(&["a"]), at(0)).is_ok());
        assert!(p.check_vote(&opts(&["a"]), at(99)).is_ok());
        assert_eq!(
            refusal_code(p.check_vote(&opts(&["a"]), at(-1))).0,
            "poll_closed"
        );
        assert_eq!(
            refusal_code(p.check_vote(&opts(&["a"]), at(100))).0,
            "poll_closed"
        );
    }

    #[test]
    fn single_choice_takes_one_known_option() {
        let p = poll();
        assert_eq!(
            refusal_code(p.check_vote(&opts(&["a", "b"]), at(1))),
            ("too_many_choices", "options".into())
        );
        assert_eq!(
            refusal_code(p.check_vote(&opts(&["z"]), at(1))),
            ("unknown_member", "options[0]".into())
        );
    }

    #[test]
    fn multiple_choice_honours_its_maximum() {
        let p = Poll {
            multiple: true,
            max_choices: Some(2),
            ..poll()
        };
        assert!(p.check_vote(&opts(&["a", "c"]), at(1)).is_ok());
        assert_eq!(
            refusal_code(p.check_vote(&opts(&["a", "b", "c"]), at(1))).0,
            "too_many_choices"
        );
        assert_eq!(p.validate(), Ok(()));
        let bad = Poll {
            max_choices: Some(4),
            ..p
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_choices");
    }

    #[test]
    fn arenas_refuse_unknown_items() {
        let a: Arena =
            serde_json::from_value(serde_json::json!({"id": "ar", "items": ["x", "y"]})).unwrap();
        let item = |s: &str| ItemId::try_from(s).unwrap();
        assert!(a.check_vote(&item("x"), &item("y"), at(0)).is_ok());
        assert_eq!(
            refusal_code(a.check_vote(&item("x"), &item("q"), at(0))),
            ("unknown_member", "loser".into())
        );
    }

    #[test]
    fn tournaments_check_teams_matches_groups_and_the_window() {
        let t: Tournament = serde_json::from_value(serde_json::json!({
            "id": "cup", "teams": ["owls", "bats", "cats"],
            "matches": [{"id": "m1", "teams": ["owls", "bats"]}],
            "registration_closes_at": at(10),
            "groups": [{"id": "members", "weight": 2.0}],
        }))
        .unwrap();
        assert_eq!(t.validate(), Ok(()));
        let (m, team) = (
            MatchId::try_from("m1").unwrap(),
            TeamId::try_from("cats").unwrap(),
        );
        assert_eq!(
            refusal_code(t.check_score(&m, &team)),
            ("unknown_member", "team".into())
        );
        let user = UserId::try_from("u").unwrap();
        let group = GroupId::try_from("vip").unwrap();
        assert_eq!(
            refusal_code(t.check_registration(&user, Some(&group), at(0))).1,
            "group"
        );
        assert_eq!(
            refusal_code(t.check_registration(&user, None, at(10))).0,
            "window_closed"
        );
    }

    #[test]
    fn a_final_match_refuses_scores_and_statuses_only_move_forward() {
        use crate::status::MatchStatus;
        let with = |status: &str| -> Resource {
            Resource::Tournament(
                serde_json::from_value(serde_json::json!({
                    "id": "cup",
                    "matches": [{"id": "m1", "teams": ["owls", "bats"], "status": status}],
                }))
                .unwrap(),
            )
        };
        let (m, owls) = (
            MatchId::try_from("m1").unwrap(),
            TeamId::try_from("owls").unwrap(),
        );
        let Resource::Tournament(live) = with("live") else {
            unreachable!()
        };
        assert_eq!(live.check_score(&m, &owls), Ok(()));
        let Resource::Tournament(done) = with("final") else {
            unreachable!()
        };
        assert_eq!(refusal_code(done.check_score(&m, &owls)).0, "match_final");
        let now = at(0);
        assert_eq!(
            with("live").check_change_from(&with("scheduled"), now),
            Ok(())
        );
        assert_eq!(with("final").check_change_from(&with("live"), now), Ok(()));
        let backwards = with("live").check_change_from(&with("final"), now);
        assert!(matches!(
            backwards,
            Err(Refusal::Conflict {
                code: "match_status_backwards",
                ..
            })
        ));
        assert!(MatchStatus::Scheduled.may_become(MatchStatus::Final));
        assert!(!MatchStatus::Final.may_become(MatchStatus::Live));
    }

    #[test]
    fn best_means_max_or_min_by_sort_order() {
        let mut t: Tournament = serde_json::from_value(serde_json::json!({"id": "t"})).unwrap();
        assert_eq!(t.score_effect(), ScoreEffect::Add);
        t.score_operator = ScoreOperator::Best;
        assert_eq!(t.score_effect(), ScoreEffect::Max);
        t.sort = SortOrder::Asc;
        assert_eq!(t.score_effect(), ScoreEffect::Min);
        let old = Resource::Tournament(Tournament {
            sort: SortOrder::Desc,
            ..t.clone()
        });
        assert!(
            Resource::Tournament(t)
                .check_change_from(&old, chrono::Utc::now())
                .is_err()
        );
    }

    #[test]
    fn a_lotterys_rules_freeze_when_its_registration_opens() {
        let now = chrono::Utc::now();
        let t = |v: serde_json::Value| Resource::Tournament(serde_json::from_value(v).unwrap());
        let soon = (now + chrono::Duration::hours(1)).to_rfc3339();
        let waiting = t(
            serde_json::json!({"id": "t", "mode": "lottery", "capacity": 10,
                                           "registration_opens_at": soon}),
        );
        let open = t(serde_json::json!({"id": "t", "mode": "lottery", "capacity": 10}));
        let more = |r: &Resource| {
            let Resource::Tournament(mut t) = r.clone() else {
                unreachable!()
            };
            t.capacity = Some(11);
            Resource::Tournament(t)
        };
        assert!(more(&waiting).check_change_from(&waiting, now).is_ok());
        let refused = more(&open).check_change_from(&open, now).unwrap_err();
        assert!(matches!(
            refused,
            Refusal::Conflict {
                code: "rules_frozen",
                ..
            }
        ));
        // Closing an open-ended window is what the committed rules say the operator does.
        let closed = open.clone().with_window_state(false, now);
        assert!(closed.check_change_from(&open, now).is_ok());
        // Reopening it is not.
        let reopened = closed.clone().with_window_state(true, now);
        assert!(reopened.check_change_from(&closed, now).is_err());
    }

    #[test]
    fn route_limits_parse_from_their_written_form() {
        let r: RouteLimit = "registration:actor=5/minute".parse().unwrap();
        assert_eq!(r.kind, crate::Kind::Registration);
        assert_eq!(
            (r.limit.by, r.limit.limit, r.limit.per),
            (LimitBy::Actor, 5, Per::Minute)
        );
        assert_eq!(r.limit.burst(), 5);
        assert_eq!(
            r.limit.emission_interval(),
            std::time::Duration::from_secs(12)
        );
        let r: RouteLimit = "poll_vote:scope=1000/minute,burst=20".parse().unwrap();
        assert_eq!(r.limit.burst(), 20);
        for bad in [
            "vote:ip=1/second",
            "poll_vote:ip=0/second",
            "poll_vote:who=1/second",
            "poll_vote:ip=1/fortnight",
            "poll_vote:ip",
        ] {
            assert!(bad.parse::<RouteLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn opening_and_closing_move_the_window() {
        let closed = Resource::Poll(poll()).with_window_state(false, at(50));
        let Resource::Poll(p) = &closed else { panic!() };
        assert!(!p.window().contains(at(50)) && p.window().has_closed(at(50)));
        let reopened = closed.with_window_state(true, at(200));
        let Resource::Poll(p) = reopened else {
            panic!()
        };
        assert!(p.window().contains(at(200)) && p.closes_at.is_none());
    }

    #[test]
    fn definitions_are_validated() {
        let bad = |v: serde_json::Value| {
            Resource::decode(ResourceKind::Poll, v.to_string().as_bytes()).unwrap_err()
        };
        assert_eq!(
            bad(serde_json::json!({"id": "p", "options": ["a"]})).field,
            "options"
        );
        assert_eq!(
            bad(serde_json::json!({"id": "p", "options": ["a", "a"]})).field,
            "options[1]"
        );
        assert_eq!(
            bad(serde_json::json!({"id": "p", "options": ["a", "b"], "owner": "me"})).code,
            "unknown_field"
        );
        assert_eq!(
            bad(serde_json::json!({"id": "p", "options": ["a", "b"],
                "opens_at": at(5), "closes_at": at(5)}))
            .field,
            "closes_at"
        );
    }
}
