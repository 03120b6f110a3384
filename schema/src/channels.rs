//! Broadcast channels: an operator's own data on a live stream. A channel is a resource like a
//! poll (defined through the admin API, kept in `resources`); its messages live in a
//! JetStream stream of their own, so the channel's retention (messages and age) is the
//! stream's, and a message's stream sequence is the SSE event id a follower resumes from.

use crate::api::{FieldError, Validate};
use crate::ids::{ChannelId, GroupId};
use crate::resources::{Window, check_title};
use crate::roles::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A channel: who may publish and follow, how long messages are kept, how fast followers
/// are served, and optionally an upstream URL the workers poll for it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub id: ChannelId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub title: String,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub publishers: Publishers,
    #[serde(default)]
    pub followers: Followers,
    #[serde(default)]
    pub delivery: Delivery,
    /// An HTTP JSON URL the workers fetch on a schedule and publish when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// Publishes are taken inside this window; followers may read at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
}

/// How many messages, and for how long, the channel's stream keeps (the oldest go first): a
/// follower can resume from anything still kept.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub messages: u32,
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 2_592_000))]
    pub max_age_secs: u64,
}

impl Retention {
    pub const MAX_MESSAGES: u32 = 1_000_000;
    pub const MIN_AGE_SECS: u64 = 60;
    pub const MAX_AGE_SECS: u64 = 30 * 24 * 3600;
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            messages: 1000,
            max_age_secs: 24 * 3600,
        }
    }
}

/// Who may publish: an admin key always; a key of `role`; a user token whose group claim is
/// `group`. Neither set: admin keys only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publishers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "site"))]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
}

impl Default for Publishers {
    fn default() -> Self {
        Self {
            role: Some(Role::Site),
            group: None,
        }
    }
}

/// Who may follow: anyone, or the holder of a valid user token.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Followers {
    #[default]
    Public,
    Token,
}

/// What a follower that cannot keep up receives: only the newest message (a price, a score),
/// or every message in order (a feed of moves).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    #[default]
    Latest,
    Every,
}

/// An upstream the workers poll: at most one call per `every_secs` across every worker, at
/// most `burst` calls at once and `per_minute` on average (a token bucket), each within
/// `timeout_ms` and `max_bytes`. After `failures_to_open` failures in a row the circuit opens
/// for `open_secs` (no calls), then one call tries again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `http://` or `https://`.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    #[serde(default = "Upstream::default_every")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub every_secs: u32,
    #[serde(default = "Upstream::default_timeout")]
    #[cfg_attr(feature = "openapi", schema(minimum = 100, maximum = 60000))]
    pub timeout_ms: u32,
    #[serde(default = "Upstream::default_burst")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub burst: u32,
    #[serde(default = "Upstream::default_per_minute")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 6000))]
    pub per_minute: u32,
    #[serde(default = "Upstream::default_failures")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub failures_to_open: u32,
    #[serde(default = "Upstream::default_open")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub open_secs: u32,
    #[serde(default = "Upstream::default_max_bytes")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_048_576))]
    pub max_bytes: u32,
}

impl Upstream {
    fn default_every() -> u32 {
        5
    }
    fn default_timeout() -> u32 {
        2000
    }
    fn default_burst() -> u32 {
        3
    }
    fn default_per_minute() -> u32 {
        30
    }
    fn default_failures() -> u32 {
        3
    }
    fn default_open() -> u32 {
        30
    }
    fn default_max_bytes() -> u32 {
        65536
    }
}

impl Channel {
    pub fn window(&self) -> Window {
        Window {
            opens_at: self.opens_at,
            closes_at: self.closes_at,
        }
    }
}

fn within<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), FieldError> {
    match value >= min && value <= max {
        true => Ok(()),
        false => Err(FieldError::invalid(
            "out_of_range",
            field,
            format!("must be from {min} to {max}"),
        )),
    }
}

impl Validate for Channel {
    fn validate(&self) -> Result<(), FieldError> {
        check_title(&self.title)?;
        self.window().check("closes_at")?;
        let r = &self.retention;
        within("retention.messages", r.messages, 1, Retention::MAX_MESSAGES)?;
        within(
            "retention.max_age_secs",
            r.max_age_secs,
            Retention::MIN_AGE_SECS,
            Retention::MAX_AGE_SECS,
        )?;
        if let Some(u) = &self.upstream {
            crate::api::check_http_url("upstream.url", &u.url)?;
            within("upstream.every_secs", u.every_secs, 1, 86400)?;
            within("upstream.timeout_ms", u.timeout_ms, 100, 60000)?;
            within("upstream.burst", u.burst, 1, 1000)?;
            within("upstream.per_minute", u.per_minute, 1, 6000)?;
            within("upstream.failures_to_open", u.failures_to_open, 1, 1000)?;
            within("upstream.open_secs", u.open_secs, 1, 86400)?;
            within("upstream.max_bytes", u.max_bytes, 1, 1_048_576)?;
        }
        Ok(())
    }
}

/// What a channel message is: the SSE event name a follower sees, and the
/// [`header::EVENT`] it is stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A publisher's payload (or an upstream's new value).
    Message,
    /// The upstream cannot be reached: the payload is the last good value, now stale.
    Stale,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Message, Self::Stale]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Headers of a channel message.
pub mod header {
    /// [`super::MessageKind`]; absent means a message.
    pub const EVENT: &str = "Tally-Channel-Event";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode;

    #[test]
    fn a_bare_channel_takes_the_defaults() {
        let c: Channel = decode(br#"{"id": "prices"}"#).unwrap();
        assert_eq!(c.retention, Retention::default());
        assert_eq!(c.publishers.role, Some(Role::Site));
        assert_eq!(c.followers, Followers::Public);
        assert_eq!(c.delivery, Delivery::Latest);
        assert!(c.upstream.is_none());
    }

    #[test]
    fn bounds_name_their_field() {
        let field = |body: &str| decode::<Channel>(body.as_bytes()).unwrap_err().field;
        assert_eq!(
            field(r#"{"id": "p", "retention": {"messages": 0, "max_age_secs": 60}}"#),
            "retention.messages"
        );
        assert_eq!(
            field(r#"{"id": "p", "retention": {"messages": 5, "max_age_secs": 1}}"#),
            "retention.max_age_secs"
        );
        assert_eq!(
            field(r#"{"id": "p", "upstream": {"url": "file:///etc/passwd"}}"#),
            "upstream.url"
        );
        assert_eq!(
            field(r#"{"id": "p", "upstream": {"url": "http://x", "every_secs": 0}}"#),
            "upstream.every_secs"
        );
        assert_eq!(field(r#"{"id": "p.q"}"#), "id");
        assert_eq!(field(r#"{"id": "p", "delivery": "sometimes"}"#), "delivery");
    }

    #[test]
    fn message_kinds_round_trip() {
        for k in [MessageKind::Message, MessageKind::Stale] {
            assert_eq!(MessageKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MessageKind::parse("other"), None);
    }
}
