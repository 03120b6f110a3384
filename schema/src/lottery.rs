//! The verifiable lottery draw. Everything a verifier needs is published in the audit record
//! (seed, digest, rules, results); `docs/lottery.md` states the same algorithm in prose for
//! verifiers written in other languages.
//!
//! `tally-draw-v2` (every new lottery) draws over pseudonyms, never user ids: each registrant
//! gets a receipt, `HMAC-SHA256(pseudonym key, "tally-receipt-v1\0" ‖ user)`, in their
//! registration answer, and appears in the public record as `pseudonym = hex(SHA-256(receipt))`
//! cut to 32 digits; the pseudonym key is the tournament's secret and is never published. The
//! commitment covers the rules too: `SHA-256(seed ‖ SHA-256(rules))`, `rules` being the
//! published text of capacity, window and group weights ([`rules_text`]). Steps 2–5 below are
//! those of `tally-draw-v1` with the pseudonym in the place of the user.
//!
//! 1. Before registration opens, publish the commitment `SHA-256(seed)` of a 32-byte secret
//!    seed.
//! 2. At the close, freeze the registrants: one line `user \t group \n` per registrant
//!    (`group` empty when none), sorted by `user` as bytes, concatenated as UTF-8; the
//!    digest is `SHA-256` of that text.
//! 3. The draw key is `SHA-256(seed ‖ digest)` (64 bytes in). The random stream is the
//!    ChaCha20 keystream under that key with an all-zero 64-bit nonce and a block counter
//!    from 0 (as RFC 7539 with a zero 96-bit nonce), read as consecutive little-endian u64s.
//! 4. The i-th registrant in the sorted order takes the i-th u64 `x` and gets
//!    `u = ((x >> 11) + 1) / 2^53` (in (0, 1]) and the key `ln(u) / w`, where `w` is its
//!    group's weight (1 without a group): Efraimidis–Spirakis weighted sampling without
//!    replacement, on a log scale.
//! 5. Registrants sorted by key, highest first (ties: `user` ascending as bytes): the first
//!    `capacity` win, the rest form the waitlist in that order.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The algorithm of every new lottery.
pub const ALGORITHM: &str = "tally-draw-v2";
/// Draws over user ids, committed to the seed alone: lotteries defined before v2.
pub const ALGORITHM_V1: &str = "tally-draw-v1";

/// One registrant as the draw sees it: a pseudonym (v2) or a user id (v1), and a group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registrant {
    #[serde(alias = "pseudonym")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A registrant as v2's public record shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublicRegistrant<'a> {
    pub pseudonym: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
}

/// What a user's registration answer gives them: the key to their own line of the record.
pub fn receipt(pseudonym_key: &[u8; 32], user: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(pseudonym_key).expect("HMAC takes any key");
    mac.update(b"tally-receipt-v1\0");
    mac.update(user.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The name a receipt's holder has in the public record: 32 hex digits of SHA-256(receipt).
pub fn pseudonym(receipt: &[u8; 32]) -> String {
    hex(&Sha256::digest(receipt)[..16])
}

/// The rules a lottery commits to, as the exact text that is hashed and published: one
/// `name\tvalue\n` line each for `algorithm`, `capacity` (empty: everyone wins),
/// `opens_at` and `closes_at` (RFC 3339, empty: when the operator opens or closes it), then
/// `group\t<id>\t<weight>\n` per priority group sorted by id (weight as the shortest decimal
/// that reads back as the same double).
pub fn rules_text(
    capacity: Option<u32>,
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
    closes_at: Option<chrono::DateTime<chrono::Utc>>,
    weights: &HashMap<String, f64>,
) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default()
    };
    let mut text = format!(
        "algorithm\t{ALGORITHM}\ncapacity\t{}\nopens_at\t{}\ncloses_at\t{}\n",
        capacity.map(|c| c.to_string()).unwrap_or_default(),
        time(opens_at),
        time(closes_at),
    );
    let mut groups: Vec<_> = weights.iter().collect();
    groups.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (id, weight) in groups {
        text.push_str(&format!("group\t{id}\t{weight:?}\n"));
    }
    text
}

/// Capacity and weights read back from a rules text (what the draw and a verifier use).
pub fn parse_rules(text: &str) -> Result<(Option<u32>, HashMap<String, f64>), String> {
    let mut capacity = None;
    let mut weights = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["capacity", ""] => capacity = None,
            ["capacity", c] => capacity = Some(c.parse().map_err(|_| format!("capacity {c}"))?),
            ["group", id, w] => {
                let w: f64 = w.parse().map_err(|_| format!("weight {w}"))?;
                weights.insert((*id).to_owned(), w);
            }
            ["algorithm" | "opens_at" | "closes_at", _] => {}
            _ => return Err(format!("unreadable rules line {line:?}")),
        }
    }
    Ok((capacity, weights))
}

/// v2's commitment: SHA-256(seed ‖ SHA-256(rules)).
pub fn commitment_v2(seed: &[u8; 32], rules: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(seed)
        .chain_update(Sha256::digest(rules.as_bytes()))
        .finalize()
        .into()
}

/// Winners and waitlist, in drawn order, and the digest of the frozen list.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub digest: [u8; 32],
    pub winners: Vec<String>,
    pub waitlist: Vec<String>,
}

pub fn commitment(seed: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(seed).into()
}

/// Sorts the registrants into the canonical order and digests them.
pub fn freeze(mut registrants: Vec<Registrant>) -> (Vec<Registrant>, [u8; 32]) {
    registrants.sort_by(|a, b| a.user.as_bytes().cmp(b.user.as_bytes()));
    let mut hasher = Sha256::new();
    for r in &registrants {
        hasher.update(r.user.as_bytes());
        hasher.update(b"\t");
        hasher.update(r.group.as_deref().unwrap_or("").as_bytes());
        hasher.update(b"\n");
    }
    (registrants, hasher.finalize().into())
}

/// The draw. `weights` maps group ids to weights; a registrant without a group, or in a
/// group missing from the map, weighs 1.
pub fn draw(
    seed: &[u8; 32],
    registrants: Vec<Registrant>,
    weights: &HashMap<String, f64>,
    capacity: usize,
) -> Outcome {
    let (registrants, digest) = freeze(registrants);
    let key: [u8; 32] = Sha256::new()
        .chain_update(seed)
        .chain_update(digest)
        .finalize()
        .into();
    let mut stream = ChaCha20Rng::from_seed(key);
    let mut keyed: Vec<(f64, String)> = registrants
        .into_iter()
        .map(|r| {
            let u = ((stream.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let w = r
                .group
                .as_ref()
                .and_then(|g| weights.get(g))
                .copied()
                .unwrap_or(1.0);
            (u.ln() / w, r.user)
        })
        .collect();
    keyed.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    let mut order: Vec<String> = keyed.into_iter().map(|(_, user)| user).collect();
    let waitlist = order.split_off(capacity.min(order.len()));
    Outcome {
        digest,
        winners: order,
        waitlist,
    }
}

/// A drawn lottery's published record (`GET /v1/tournaments/{t}/draw`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct AuditRecord {
    pub tournament: String,
    pub algorithm: String,
    pub commitment: String,
    /// v2: the committed rules text.
    #[serde(default)]
    pub rules: Option<String>,
    pub seed: String,
    pub digest: String,
    pub capacity: Option<u32>,
    #[serde(default)]
    pub weights: HashMap<String, f64>,
    pub registrants: Vec<Registrant>,
    pub winners: Vec<String>,
    pub waitlist: Vec<String>,
}

/// Recomputes a draw from its record alone; returns what does not match (empty: verified).
pub fn verify(record: &AuditRecord) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(seed) = unhex32(&record.seed) else {
        problems.push("the seed is not 64 hex digits".into());
        return problems;
    };
    let (capacity, weights) = match (record.algorithm.as_str(), &record.rules) {
        (ALGORITHM_V1, _) => {
            if hex(&commitment(&seed)) != record.commitment {
                problems.push("SHA-256(seed) is not the published commitment".into());
            }
            (record.capacity, record.weights.clone())
        }
        (ALGORITHM, Some(rules)) => {
            if hex(&commitment_v2(&seed, rules)) != record.commitment {
                problems.push("SHA-256(seed ‖ SHA-256(rules)) is not the commitment".into());
            }
            match parse_rules(rules) {
                Ok((capacity, weights)) => {
                    if capacity != record.capacity || weights != record.weights {
                        problems.push("capacity or weights differ from the committed rules".into());
                    }
                    (capacity, weights)
                }
                Err(e) => {
                    problems.push(format!("the rules do not read: {e}"));
                    return problems;
                }
            }
        }
        (ALGORITHM, None) => {
            problems.push("a tally-draw-v2 record without its rules".into());
            return problems;
        }
        (other, _) => {
            problems.push(format!("unknown algorithm {other}"));
            return problems;
        }
    };
    let capacity = capacity.unwrap_or(u32::MAX) as usize;
    let outcome = draw(&seed, record.registrants.clone(), &weights, capacity);
    if hex(&outcome.digest) != record.digest {
        problems.push("the registrant list does not hash to the published digest".into());
    }
    if outcome.winners != record.winners {
        problems.push("the winners differ from the recomputed draw".into());
    }
    if outcome.waitlist != record.waitlist {
        problems.push("the waitlist differs from the recomputed draw".into());
    }
    problems
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A finished draw: what the audit record stores.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawResult {
    pub capacity: Option<u32>,
    pub weights: HashMap<String, f64>,
    /// The frozen registrant list, by user id (kept private to the operator).
    pub registrants: Vec<Registrant>,
    /// Winners and waitlist by user id.
    pub outcome: Outcome,
    /// v2: what the public record shows instead (pseudonyms); v1 records show `registrants`.
    pub public: Option<PublicLists>,
}

/// The pseudonymous lists of a v2 draw's public record.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicLists {
    pub registrants: Vec<serde_json::Value>,
    pub winners: Vec<String>,
    pub waitlist: Vec<String>,
}

/// `tally-draw-v2`: the draw runs over each registrant's pseudonym, under the committed rules
/// (not the definition's: they are the same, since the rules froze when registration opened).
pub fn draw_v2(
    seed: &[u8; 32],
    pseudonym_key: &[u8; 32],
    rules: &str,
    registrants: Vec<Registrant>,
) -> Result<DrawResult, String> {
    let (capacity, weights) = parse_rules(rules)?;
    let mut users_by_pseudonym = HashMap::with_capacity(registrants.len());
    let pseudonymous: Vec<Registrant> = registrants
        .iter()
        .map(|r| {
            let p = pseudonym(&receipt(pseudonym_key, &r.user));
            users_by_pseudonym.insert(p.clone(), r.user.clone());
            Registrant {
                user: p,
                group: r.group.clone(),
            }
        })
        .collect();
    let drawn = draw_v1(seed, pseudonymous, weights, capacity);
    let user = |p: &String| users_by_pseudonym[p].clone();
    let outcome = Outcome {
        digest: drawn.outcome.digest,
        winners: drawn.outcome.winners.iter().map(user).collect(),
        waitlist: drawn.outcome.waitlist.iter().map(user).collect(),
    };
    let public = PublicLists {
        registrants: drawn
            .registrants
            .iter()
            .map(|r| {
                serde_json::to_value(PublicRegistrant {
                    pseudonym: &r.user,
                    group: r.group.as_deref(),
                })
                .expect("a plain struct serializes")
            })
            .collect(),
        winners: drawn.outcome.winners,
        waitlist: drawn.outcome.waitlist,
    };
    Ok(DrawResult {
        capacity,
        weights: drawn.weights,
        registrants: freeze(registrants).0,
        outcome,
        public: Some(public),
    })
}

/// `tally-draw-v1`, for lotteries committed before pseudonyms: the draw over user ids, by the
/// definition's capacity and weights.
pub fn draw_v1(
    seed: &[u8; 32],
    registrants: Vec<Registrant>,
    weights: HashMap<String, f64>,
    capacity: Option<u32>,
) -> DrawResult {
    let (frozen, _) = freeze(registrants.clone());
    let outcome = draw(
        seed,
        registrants,
        &weights,
        capacity.unwrap_or(u32::MAX) as usize,
    );
    DrawResult {
        capacity,
        weights,
        registrants: frozen,
        outcome,
        public: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::RngCore;

    fn reg(user: &str, group: Option<&str>) -> Registrant {
        Registrant {
            user: user.into(),
            group: group.map(Into::into),
        }
    }

    #[test]
    fn the_random_stream_is_the_chacha20_keystream() {
        // Expected values from pycryptodome: ChaCha20.new(key=k, nonce=bytes(8)) encrypting
        // zeros, read as little-endian u64s — an implementation independent of rand_chacha.
        let key: [u8; 32] = Sha256::digest(b"tally test vector").into();
        assert_eq!(
            hex(&key),
            "0502eb6d4b58006af9f022e9d2e454a37adedfa6085268e39d309829e4999a98"
        );
        let mut stream = ChaCha20Rng::from_seed(key);
        let words: Vec<u64> = (0..4).map(|_| stream.next_u64()).collect();
        assert_eq!(
            words,
            [
                1795167368513866602,
                13217227979607887936,
                14422075227773791606,
                10999233947551169920
            ]
        );
    }

    #[test]
    fn the_digest_ignores_arrival_order() {
        let a = vec![reg("bob", None), reg("ann", Some("vip"))];
        let b = vec![reg("ann", Some("vip")), reg("bob", None)];
        assert_eq!(freeze(a).1, freeze(b).1);
        let text = "ann\tvip\nbob\t\n";
        assert_eq!(freeze(vec![reg("bob", None), reg("ann", Some("vip"))]).1, {
            let d: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            d
        });
    }

    #[test]
    fn a_draw_is_a_function_of_seed_and_list() {
        let people: Vec<Registrant> = (0..50).map(|i| reg(&format!("u{i}"), None)).collect();
        let weights = HashMap::new();
        let seed = [7u8; 32];
        let one = draw(&seed, people.clone(), &weights, 10);
        let mut shuffled = people.clone();
        shuffled.reverse();
        assert_eq!(one, draw(&seed, shuffled, &weights, 10));
        assert_eq!(one.winners.len(), 10);
        assert_eq!(one.waitlist.len(), 40);
        assert_ne!(one.winners, draw(&[8u8; 32], people, &weights, 10).winners);
        assert_eq!(unhex32(&hex(&seed)), Some(seed));
    }

    #[test]
    fn a_record_verifies_and_any_change_is_caught() {
        let seed = [3u8; 32];
        let people: Vec<Registrant> = (0..20)
            .map(|i| reg(&format!("u{i}"), (i % 2 == 0).then_some("vip")))
            .collect();
        let weights = HashMap::from([("vip".to_owned(), 2.0)]);
        let outcome = draw(&seed, people.clone(), &weights, 5);
        let record = AuditRecord {
            tournament: "t".into(),
            algorithm: ALGORITHM_V1.into(),
            commitment: hex(&commitment(&seed)),
            rules: None,
            seed: hex(&seed),
            digest: hex(&outcome.digest),
            capacity: Some(5),
            weights,
            registrants: freeze(people).0,
            winners: outcome.winners,
            waitlist: outcome.waitlist,
        };
        assert!(verify(&record).is_empty());
        let mut forged = record.clone();
        forged.winners.swap(0, 1);
        assert_eq!(verify(&forged).len(), 1);
        let mut other_seed = record.clone();
        other_seed.seed = hex(&[4u8; 32]);
        assert!(verify(&other_seed).iter().any(|p| p.contains("commitment")));
        let mut dropped = record;
        dropped.registrants.pop();
        assert!(verify(&dropped).iter().any(|p| p.contains("digest")));
    }

    #[test]
    fn a_v2_record_names_no_one_and_commits_to_its_rules() {
        let (seed, key) = ([5u8; 32], [9u8; 32]);
        let weights = HashMap::from([("vip".to_owned(), 2.5), ("a".to_owned(), 1.0)]);
        let rules = rules_text(Some(3), None, None, &weights);
        assert_eq!(
            rules,
            "algorithm\ttally-draw-v2\ncapacity\t3\nopens_at\t\ncloses_at\t\n\
             group\ta\t1.0\ngroup\tvip\t2.5\n"
        );
        assert_eq!(parse_rules(&rules).unwrap(), (Some(3), weights.clone()));
        let users: Vec<String> = (0..12).map(|i| format!("user{i}@example.org")).collect();
        let people: Vec<Registrant> = users
            .iter()
            .enumerate()
            .map(|(i, u)| reg(&pseudonym(&receipt(&key, u)), (i % 3 == 0).then_some("vip")))
            .collect();
        let outcome = draw(&seed, people.clone(), &weights, 3);
        let record = AuditRecord {
            tournament: "t".into(),
            algorithm: ALGORITHM.into(),
            commitment: hex(&commitment_v2(&seed, &rules)),
            rules: Some(rules.clone()),
            seed: hex(&seed),
            digest: hex(&outcome.digest),
            capacity: Some(3),
            weights: weights.clone(),
            registrants: freeze(people).0,
            winners: outcome.winners.clone(),
            waitlist: outcome.waitlist,
        };
        assert!(verify(&record).is_empty(), "{:?}", verify(&record));
        let public = serde_json::to_string(&record.registrants).unwrap();
        assert!(
            users.iter().all(|u| !public.contains(u.as_str())),
            "a user id is public"
        );
        // A user finds their own line from their receipt alone.
        let mine = pseudonym(&receipt(&key, &users[0]));
        assert_eq!(mine.len(), 32);
        assert!(record.registrants.iter().any(|r| r.user == mine));
        // Rules other than the committed ones do not verify.
        let mut more_seats = record.clone();
        more_seats.rules = Some(rules_text(Some(4), None, None, &weights));
        assert!(verify(&more_seats).iter().any(|p| p.contains("commitment")));
        let mut heavier = record;
        heavier.weights.insert("vip".into(), 10.0);
        assert!(
            verify(&heavier)
                .iter()
                .any(|p| p.contains("committed rules"))
        );
    }

    /// Expected winners per group under weighted sampling without replacement, by exact
    /// recursion over how many of each group are left (independent of the draw code): the
    /// next pick is from group A with probability a·wA / (a·wA + b·wB).
    fn expected_wins(a: usize, b: usize, wa: f64, wb: f64, slots: usize) -> (f64, f64) {
        // p[i][j] = probability that i of A and j of B are picked after i + j picks.
        let mut p = vec![vec![0.0; b + 1]; a + 1];
        p[0][0] = 1.0;
        let (mut ea, mut eb) = (0.0, 0.0);
        for picks in 0..slots {
            for i in 0..=picks.min(a) {
                let j = picks - i;
                if j > b || p[i][j] == 0.0 {
                    continue;
                }
                let (ra, rb) = ((a - i) as f64 * wa, (b - j) as f64 * wb);
                let pa = ra / (ra + rb);
                ea += p[i][j] * pa;
                eb += p[i][j] * (1.0 - pa);
                if i < a {
                    p[i + 1][j] += p[i][j] * pa;
                }
                if j < b {
                    p[i][j + 1] += p[i][j] * (1.0 - pa);
                }
                p[i][j] = 0.0;
            }
        }
        (ea, eb)
    }

    #[test]
    fn win_rates_match_the_weights_over_many_draws() {
        // 30 members (weight 3) and 70 others (weight 1) for 20 places, 4,000 draws with
        // seeds from a fixed sequence.
        let people: Vec<Registrant> = (0..100)
            .map(|i| reg(&format!("u{i:03}"), (i < 30).then_some("members")))
            .collect();
        let weights = HashMap::from([("members".to_owned(), 3.0)]);
        let draws = 4000;
        let mut member_wins = 0usize;
        for d in 0..draws {
            let seed: [u8; 32] = Sha256::digest(format!("seed {d}")).into();
            let outcome = draw(&seed, people.clone(), &weights, 20);
            member_wins += outcome
                .winners
                .iter()
                .filter(|u| u.as_str() < "u030")
                .count();
        }
        let (ea, eb) = expected_wins(30, 70, 3.0, 1.0, 20);
        assert!((ea + eb - 20.0).abs() < 1e-9);
        let observed = member_wins as f64 / draws as f64;
        // Members won per draw: its spread is below sqrt(20·0.25) ≈ 2.24 per draw (a
        // hypergeometric-like count), so the mean over 4,000 draws has a standard error
        // below 0.036; allow 4 of those.
        assert!(
            (observed - ea).abs() < 4.0 * 0.036,
            "members won {observed:.3} per draw, expected {ea:.3}"
        );
        // And the weight matters: far above the unweighted share (20 × 0.3 = 6).
        assert!(ea > 9.0, "{ea}");
    }
}
