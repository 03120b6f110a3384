//! Rate limits at the edge, checked after an event passed its resource's rules and before it
//! is published. GCRA per rule and key: in process with `governor`, or shared in Redis (one
//! script call per request, all of its rules at once) where several ingest instances must
//! agree. A refused request is answered 429 with `Retry-After`, `RateLimit` and
//! `RateLimit-Policy` and publishes nothing.

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tally_schema::redis_keys::Keys;
use tally_schema::resources::{LimitBy, RateLimit, RouteLimit};
use tally_schema::{Event, Kind};

/// Where limiter state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LimitStore {
    /// In this process: exact for one instance, each instance counts alone.
    #[default]
    Memory,
    /// In Redis: every instance shares the same counts (one round trip per limited request).
    Redis,
}

/// A refused request: which policy, its quota, and when to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub policy: String,
    pub quota: u32,
    pub window_secs: u64,
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct LimitError(#[from] redis::RedisError);

/// A configured route rule, with its name and (in process) its limiter made once.
struct RouteRule {
    policy: Arc<str>,
    rule: RateLimit,
    limiter: Option<Arc<Keyed>>,
}

/// One rule as it applies to one event: its name, the counted key, and the limiter when
/// it is already known.
struct Applied {
    policy: Arc<str>,
    rule: RateLimit,
    key: String,
    limiter: Option<Arc<Keyed>>,
}

type Keyed = governor::DefaultKeyedRateLimiter<String>;

enum Backend {
    Memory(RwLock<HashMap<String, Arc<Keyed>>>),
    Redis {
        conn: ConnectionManager,
        script: redis::Script,
        keys: Keys,
    },
}

pub struct RateLimiter {
    routes: HashMap<Kind, Vec<RouteRule>>,
    backend: Backend,
}

/// The actor an event is counted for: voter, session, team or user.
fn actor(event: &Event) -> &str {
    match event {
        Event::PollVote(v) => v.voter.as_str(),
        Event::PairVote(v) => v.session.as_str(),
        Event::Score(s) => s.team.as_str(),
        Event::Registration(r) => r.user.as_str(),
        Event::MediaUploaded(m) => m.user.as_ref().map_or("", |u| u.as_str()),
        Event::RegistrationStatus(s) => s.user.as_str(),
    }
}

/// The rules for `event`: the route's, each replaced by the resource's rule of the same `by`.
fn rules_for(
    routes: &HashMap<Kind, Vec<RouteRule>>,
    event: &Event,
    resource: &[RateLimit],
    ip: IpAddr,
) -> Vec<Applied> {
    let kind = event.kind().as_str();
    let scope = event.scope();
    let route = routes.get(&event.kind()).map(Vec::as_slice).unwrap_or(&[]);
    let from_route = route
        .iter()
        .filter(|r| !resource.iter().any(|o| o.by == r.rule.by))
        .map(|r| (r.policy.clone(), r.rule, r.limiter.clone()));
    let from_resource = resource.iter().map(|r| {
        let policy: Arc<str> = format!("{kind}.{scope}.{}", r.by.as_str()).into();
        (policy, *r, None)
    });
    from_route
        .chain(from_resource)
        .map(|(policy, rule, limiter)| {
            let key = match rule.by {
                LimitBy::Actor => format!("{scope}\u{1f}{}", actor(event)),
                LimitBy::Ip => ip_bucket(ip),
                LimitBy::Scope => scope.to_owned(),
            };
            Applied {
                policy,
                rule,
                key,
                limiter,
            }
        })
        .collect()
}

/// The address a per-IP limit counts by: an IPv6 client by its /64 (one subscriber's
/// network, which hands out 2^64 addresses), an IPv4 one (or IPv4-mapped) by its address.
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl RateLimiter {
    pub fn new(
        routes: &[RouteLimit],
        store: LimitStore,
        redis: Option<(ConnectionManager, Keys)>,
    ) -> Self {
        let mut by_kind: HashMap<Kind, Vec<RouteRule>> = HashMap::new();
        // Uploads are costly: each user gets 10 a minute, and each address (or IPv6 /64) 30,
        // unless configured otherwise (a made-up user name does not buy more uploads).
        let media_default = |by, limit| RouteLimit {
            kind: Kind::MediaUploaded,
            limit: RateLimit {
                by,
                limit,
                per: tally_schema::resources::Per::Minute,
                burst: None,
            },
        };
        let defaults = [
            media_default(LimitBy::Actor, 10),
            media_default(LimitBy::Ip, 30),
        ];
        for r in defaults.iter().chain(routes) {
            let rules = by_kind.entry(r.kind).or_default();
            // A later rule with the same `by` replaces an earlier one.
            rules.retain(|o| o.rule.by != r.limit.by);
            rules.push(RouteRule {
                policy: format!("{}.{}", r.kind.as_str(), r.limit.by.as_str()).into(),
                rule: r.limit,
                limiter: (store == LimitStore::Memory)
                    .then(|| Arc::new(governor::RateLimiter::keyed(quota(&r.limit)))),
            });
        }
        let backend = match (store, redis) {
            (LimitStore::Redis, Some((conn, keys))) => Backend::Redis {
                conn,
                script: redis::Script::new(include_str!("../scripts/gcra.lua")),
                keys,
            },
            _ => Backend::Memory(RwLock::default()),
        };
        Self {
            routes: by_kind,
            backend,
        }
    }

    /// Admits or refuses one event. With no rule for it this costs one hash lookup.
    pub async fn check(
        &self,
        event: &Event,
        resource: &[RateLimit],
        ip: IpAddr,
    ) -> Result<Result<(), Limited>, LimitError> {
        if resource.is_empty() && !self.routes.contains_key(&event.kind()) {
            return Ok(Ok(()));
        }
        let applied = rules_for(&self.routes, event, resource, ip);
        match &self.backend {
            Backend::Memory(limiters) => Ok(self.check_memory(limiters, &applied)),
            Backend::Redis { conn, script, keys } => {
                check_redis(conn, script, keys, &applied).await
            }
        }
    }

    fn check_memory(
        &self,
        limiters: &RwLock<HashMap<String, Arc<Keyed>>>,
        applied: &[Applied],
    ) -> Result<(), Limited> {
        use governor::clock::Clock;
        let clock = governor::clock::DefaultClock::default();
        for a in applied {
            let limiter = match &a.limiter {
                Some(l) => l.clone(),
                None => resource_limiter(limiters, a),
            };
            // Rules are checked in turn; one that refuses leaves the earlier ones charged
            // (governor has no "peek"), which only ever errs towards fewer requests.
            if let Err(not_until) = limiter.check_key(&a.key) {
                return Err(limited(a, not_until.wait_time_from(clock.now())));
            }
        }
        Ok(())
    }

    /// Forgets keys whose state is back to fresh, so memory follows recent clients only.
    pub fn sweep(&self) {
        if let Backend::Memory(limiters) = &self.backend {
            let route = self
                .routes
                .values()
                .flatten()
                .filter_map(|r| r.limiter.clone());
            let limiters: Vec<Arc<Keyed>> = limiters
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .chain(route)
                .collect();
            let mut keys = 0;
            for l in limiters {
                l.retain_recent();
                l.shrink_to_fit();
                keys += l.len();
            }
            metrics::gauge!("tally_ingest_rate_limit_keys").set(keys as f64);
        }
    }
}

/// The limiter of a resource's own rule, made on first use; the quota is part of its
/// identity, so a changed limit starts afresh.
fn resource_limiter(limiters: &RwLock<HashMap<String, Arc<Keyed>>>, a: &Applied) -> Arc<Keyed> {
    let id = format!("{}|{:?}", a.policy, a.rule);
    if let Some(l) = limiters.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return l.clone();
    }
    limiters
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_insert_with(|| Arc::new(governor::RateLimiter::keyed(quota(&a.rule))))
        .clone()
}

fn quota(rule: &RateLimit) -> governor::Quota {
    let burst = NonZeroU32::new(rule.burst()).unwrap_or(NonZeroU32::MIN);
    governor::Quota::with_period(rule.emission_interval())
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

fn limited(a: &Applied, retry_after: Duration) -> Limited {
    Limited {
        policy: a.policy.to_string(),
        quota: a.rule.limit,
        window_secs: a.rule.per.seconds(),
        retry_after,
    }
}

async fn check_redis(
    conn: &ConnectionManager,
    script: &redis::Script,
    keys: &Keys,
    applied: &[Applied],
) -> Result<Result<(), Limited>, LimitError> {
    let mut invocation = script.prepare_invoke();
    for a in applied {
        let rule = format!("{}/{:?}/{}", a.rule.limit, a.rule.per, a.rule.burst());
        invocation.key(keys.rate_limit(&a.policy, &rule, &a.key));
        let emission_us = a.rule.emission_interval().as_micros().max(1) as u64;
        invocation.arg(emission_us).arg(a.rule.burst());
    }
    let mut conn = conn.clone();
    let (refused, wait_us): (usize, u64) = invocation.invoke_async(&mut conn).await?;
    Ok(match refused {
        0 => Ok(()),
        i => Err(limited(&applied[i - 1], Duration::from_micros(wait_us))),
    })
}

/// Runs [`RateLimiter::sweep`] every `every` until the task is dropped.
pub async fn sweep_forever(limiter: Arc<RateLimiter>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        limiter.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(voter: &str) -> Event {
        let body =
            serde_json::json!({"type": "poll_vote", "poll": "p", "voter": voter, "options": ["a"]});
        serde_json::from_value(body).unwrap()
    }

    fn limiter(specs: &[&str]) -> RateLimiter {
        let routes: Vec<RouteLimit> = specs.iter().map(|s| s.parse().unwrap()).collect();
        RateLimiter::new(&routes, LimitStore::Memory, None)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn ipv6_clients_count_per_64() {
        let b = |s: &str| ip_bucket(s.parse().unwrap());
        assert_eq!(
            b("2001:db8:1:2:aaaa::1"),
            b("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
        assert_eq!(b("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(b("192.0.2.7"), "192.0.2.7");
    }

    #[tokio::test]
    async fn each_actor_has_its_own_allowance() {
        let l = limiter(&["poll_vote:actor=2/minute"]);
        for _ in 0..2 {
            assert_eq!(l.check(&vote("ann"), &[], IP).await.unwrap(), Ok(()));
        }
        let refused = l.check(&vote("ann"), &[], IP).await.unwrap().unwrap_err();
        assert_eq!(
            (refused.policy.as_str(), refused.quota, refused.window_secs),
            ("poll_vote.actor", 2, 60)
        );
        assert!(
            refused.retry_after > Duration::from_secs(20)
                && refused.retry_after <= Duration::from_secs(30)
        );
        assert_eq!(
            l.check(&vote("bob"), &[], IP).await.unwrap(),
            Ok(()),
            "others are unaffected"
        );
    }

    #[tokio::test]
    async fn a_resource_rule_replaces_the_route_rule_of_the_same_kind() {
        let l = limiter(&["poll_vote:actor=1/minute", "poll_vote:ip=100/second"]);
        let generous = [RateLimit {
            by: LimitBy::Actor,
            limit: 3,
            per: tally_schema::resources::Per::Minute,
            burst: None,
        }];
        for _ in 0..3 {
            assert_eq!(l.check(&vote("ann"), &generous, IP).await.unwrap(), Ok(()));
        }
        let refused = l
            .check(&vote("ann"), &generous, IP)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.policy, "poll_vote.p.actor");
    }

    #[tokio::test]
    async fn events_without_rules_pass() {
        let l = limiter(&["registration:ip=1/hour"]);
        for _ in 0..10 {
            assert_eq!(l.check(&vote("ann"), &[], IP).await.unwrap(), Ok(()));
        }
    }
}
