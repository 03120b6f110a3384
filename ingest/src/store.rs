//! Ingest's one way to Postgres, every statement a file under `ingest/queries/`: resource
//! definitions, API keys, membership lists and lottery commitments, which ingest writes; and
//! what it serves from the workers' tables, only through the views schema defines for it
//! (`media_overview`, `public_draws`; apalis' own `jobs` table is read as apalis defines it).
//! Never on the event hot path (the catalog holds definitions in memory). While Redis cannot
//! answer, the reads it serves are computed here from the views schema defines for that.

use chrono::Utc;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_schema::api::{MediaVariantView, MediaView, PollResults};
use tally_schema::event::{RegistrationStatus, StatusChange};
use tally_schema::ids::GroupId;
use tally_schema::ids::UserId;
use tally_schema::ids::{MediaId, TournamentId};
use tally_schema::resources::{Resource, ResourceKind};
use tally_schema::resources::{ScoreEffect, SortOrder};
use tally_schema::status::WaitlistOutlook;
use tally_schema::status::{MediaStatus, RegistrationState};
use tally_schema::webhooks::{
    AttemptView, EndpointBody, EndpointState, EndpointView, EventType, ReplayView,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored {kind} '{id}' does not decode: {reason}")]
    Corrupt {
        kind: String,
        id: String,
        reason: String,
    },
}

/// A stored definition and its version (bumped by every change).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    pub version: i64,
    pub definition: Resource,
}

fn decode(kind: &str, id: &str, json: &str) -> Result<Resource, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        kind: kind.to_owned(),
        id: id.to_owned(),
        reason,
    };
    let kind = ResourceKind::parse(kind).ok_or_else(|| corrupt("unknown kind".into()))?;
    Resource::decode(kind, json.as_bytes()).map_err(|e| corrupt(e.to_string()))
}

pub async fn list_all(pool: &PgPool) -> Result<Vec<Resource>, StoreError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as(include_str!("../queries/resources_all.sql"))
            .fetch_all(pool)
            .await?;
    rows.iter().map(|(k, id, d)| decode(k, id, d)).collect()
}

pub async fn list(pool: &PgPool, kind: ResourceKind) -> Result<Vec<Stored>, StoreError> {
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as(include_str!("../queries/resources_of_kind.sql"))
            .bind(kind.as_str())
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|(id, version, d)| {
            Ok(Stored {
                version: *version,
                definition: decode(kind.as_str(), id, d)?,
            })
        })
        .collect()
}

pub async fn get(
    pool: &PgPool,
    kind: ResourceKind,
    id: &str,
) -> Result<Option<Stored>, StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as(include_str!("../queries/resource_get.sql"))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|(version, d)| {
        Ok(Stored {
            version,
            definition: decode(kind.as_str(), id, &d)?,
        })
    })
    .transpose()
}

/// Inserts a new definition; `None` when one with that id exists already.
pub async fn create(pool: &PgPool, resource: &Resource) -> Result<Option<Stored>, StoreError> {
    let json = serde_json::to_string(resource).expect("definitions serialize");
    let inserted = sqlx::query(include_str!("../queries/resource_insert.sql"))
        .bind(resource.kind().as_str())
        .bind(resource.id())
        .bind(json)
        .execute(pool)
        .await?
        .rows_affected();
    Ok((inserted == 1).then(|| Stored {
        version: 1,
        definition: resource.clone(),
    }))
}

/// Changes a definition under a row lock: `change` sees the current one and returns the new
/// one or refuses. `Ok(None)` when there is no such resource.
pub async fn update<E>(
    pool: &PgPool,
    kind: ResourceKind,
    id: &str,
    change: impl FnOnce(Resource) -> Result<Resource, E>,
) -> Result<Option<Result<Stored, E>>, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(i64, String)> = sqlx::query_as(include_str!("../queries/resource_lock.sql"))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((version, json)) = row else {
        return Ok(None);
    };
    let old = decode(kind.as_str(), id, &json)?;
    let next = match change(old.clone()) {
        Ok(next) => next,
        Err(e) => return Ok(Some(Err(e))),
    };
    let json = serde_json::to_string(&next).expect("definitions serialize");
    let now = Utc::now();
    sqlx::query(include_str!("../queries/resource_update.sql"))
        .bind(kind.as_str())
        .bind(id)
        .bind(json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    // The webhooks the change makes (a match set final) commit with it.
    let messages = tally_schema::webhooks::from_change(Some(&old), &next, now);
    tally_schema::webhooks::record(&messages, &mut tx).await?;
    tx.commit().await?;
    Ok(Some(Ok(Stored {
        version: version + 1,
        definition: next,
    })))
}

/// The role of every active key, with its hash, for a constant-time comparison.
pub async fn active_keys(pool: &PgPool) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    Ok(
        sqlx::query_as(include_str!("../queries/api_keys_active.sql"))
            .fetch_all(pool)
            .await?,
    )
}

/// Stores a new key's hash under a unique name.
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    role: &str,
    key_hash: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(tally_schema::roles::queries::CREATE_KEY)
        .bind(uuid::Uuid::now_v7())
        .bind(name)
        .bind(role)
        .bind(key_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// Revokes a key by name; false when no active key has that name.
pub async fn revoke_key(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let n = sqlx::query(tally_schema::roles::queries::REVOKE_KEY)
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The committed rules text of a lottery tournament's definition.
pub fn lottery_rules(t: &tally_schema::resources::Tournament) -> String {
    let weights = t
        .groups
        .iter()
        .map(|g| (g.id.to_string(), g.weight))
        .collect();
    tally_schema::lottery::rules_text(
        t.capacity,
        t.registration_opens_at,
        t.registration_closes_at,
        &weights,
    )
}

/// A lottery tournament's secret seed, secret pseudonym key and the commitment to the seed
/// and its rules, made when it is defined. Until registration opens a change of the rules
/// commits anew (same seed); after that the committed rules stand.
pub async fn ensure_lottery_commitment(
    pool: &PgPool,
    resource: &Resource,
) -> Result<(), StoreError> {
    use rand::RngCore;
    use tally_schema::lottery;
    use tally_schema::resources::RegistrationMode;
    let Resource::Tournament(t) = resource else {
        return Ok(());
    };
    if t.mode != RegistrationMode::Lottery {
        return Ok(());
    }
    let (mut seed, mut key) = ([0u8; 32], [0u8; 32]);
    rand::rng().fill_bytes(&mut seed);
    rand::rng().fill_bytes(&mut key);
    let rules = lottery_rules(t);
    sqlx::query(include_str!("../queries/lottery_commit.sql"))
        .bind(t.id.as_str())
        .bind(lottery::ALGORITHM)
        .bind(seed.as_slice())
        .bind(lottery::commitment_v2(&seed, &rules).as_slice())
        .bind(key.as_slice())
        .bind(&rules)
        .execute(pool)
        .await?;
    if t.registration_window()
        .opens_at
        .is_some_and(|o| o > Utc::now())
    {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as(include_str!("../queries/lottery_seed_to_recommit.sql"))
                .bind(t.id.as_str())
                .bind(lottery::ALGORITHM)
                .bind(&rules)
                .fetch_optional(pool)
                .await?;
        if let Some((seed,)) = row
            && let Ok(seed) = <[u8; 32]>::try_from(seed.as_slice())
        {
            sqlx::query(include_str!("../queries/lottery_recommit.sql"))
                .bind(t.id.as_str())
                .bind(&rules)
                .bind(lottery::commitment_v2(&seed, &rules).as_slice())
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Every lottery's pseudonym key, by tournament (v2 lotteries only): ingest answers each
/// registrant's receipt with it.
pub async fn pseudonym_keys(
    pool: &PgPool,
) -> Result<std::collections::HashMap<String, [u8; 32]>, StoreError> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as(include_str!("../queries/lottery_pseudonym_keys.sql"))
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, k)| Some((t, k.try_into().ok()?)))
        .collect())
}

/// Adds members to a tournament's priority-group list, or moves them to another group.
pub async fn upsert_members(
    pool: &PgPool,
    tournament: &str,
    members: &[tally_schema::api::GroupMember],
) -> Result<u64, StoreError> {
    let users: Vec<&str> = members.iter().map(|m| m.user.as_str()).collect();
    let groups: Vec<&str> = members.iter().map(|m| m.group.as_str()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("../queries/members_write_lock.sql"))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(include_str!("../queries/members_upsert.sql"))
        .bind(tournament)
        .bind(&users)
        .bind(&groups)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Takes a user off a tournament's list; false if they were not on it.
pub async fn delete_member(
    pool: &PgPool,
    tournament: &str,
    user: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("../queries/members_write_lock.sql"))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(include_str!("../queries/members_delete.sql"))
        .bind(tournament)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// How many members each group of a tournament's list has.
pub async fn member_counts(
    pool: &PgPool,
    tournament: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as(include_str!("../queries/members_count.sql"))
        .bind(tournament)
        .fetch_all(pool)
        .await?)
}

/// One change of a membership list: `group` None is a removal.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberChange {
    pub tournament: String,
    pub user: String,
    pub group: Option<GroupId>,
}

/// The membership changes made after mark `since`, in order, and the mark they reach: every
/// change up to it is committed, so the next call starts there and misses nothing. A mark
/// below `since` (a restored database) comes with every change from the start: the caller
/// starts its lists over.
pub async fn member_changes(
    pool: &PgPool,
    since: i64,
) -> Result<(i64, Vec<MemberChange>), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("../queries/members_read_lock.sql"))
        .execute(&mut *tx)
        .await?;
    let (mark,): (i64,) = sqlx::query_as(include_str!("../queries/members_changes_mark.sql"))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    if mark == since {
        return Ok((since, Vec::new()));
    }
    // Below the last mark: the numbering went back (a database restored from a backup), so
    // what came after the old mark is no guide; read every change from the start.
    let since = if mark < since { 0 } else { since };
    let rows: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as(include_str!("../queries/members_changed.sql"))
            .bind(since)
            .bind(mark)
            .fetch_all(pool)
            .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for (_, tournament, user, group) in rows {
        // Stored through the admin API, so valid; a bad group is skipped, not fatal.
        let group = match group.map(GroupId::try_from).transpose() {
            Ok(group) => group,
            Err(_) => continue,
        };
        changes.push(MemberChange {
            tournament,
            user,
            group,
        });
    }
    Ok((mark, changes))
}

/// The audit record of a tournament's draw: the commitment before it, everything after.
pub async fn draw_record(
    pool: &PgPool,
    tournament: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    type Row = (
        String,
        Option<Vec<u8>>,
        Vec<u8>,
        chrono::DateTime<Utc>,
        Option<chrono::DateTime<Utc>>,
        Option<Vec<u8>>,
        Option<i32>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(include_str!("../queries/draw_record.sql"))
        .bind(tournament)
        .fetch_optional(pool)
        .await?;
    let Some((algorithm, seed, commitment, committed_at, drawn_at, digest, capacity, rest)) = row
    else {
        return Ok(None);
    };
    use tally_schema::lottery::hex;
    let rest: serde_json::Value =
        serde_json::from_str(rest.as_deref().unwrap_or("{}")).unwrap_or_default();
    let mut record = serde_json::json!({
        "tournament": tournament,
        "algorithm": algorithm,
        "commitment": hex(&commitment),
        "committed_at": committed_at,
        "status": if drawn_at.is_some() { "drawn" } else { "committed" },
    });
    // The rules are public from the commitment on: everyone sees what the draw will use.
    if !rest["rules"].is_null() {
        record["rules"] = rest["rules"].clone();
    }
    if let (Some(drawn_at), Some(digest), Some(seed)) = (drawn_at, digest, seed) {
        record["drawn_at"] = serde_json::json!(drawn_at);
        record["seed"] = hex(&seed).into();
        record["digest"] = hex(&digest).into();
        record["capacity"] = capacity.into();
        for field in ["weights", "registrants", "winners", "waitlist"] {
            record[field] = rest[field].clone();
        }
    }
    Ok(Some(record))
}

/// The apalis job view: counts per type and state, and the newest jobs (payload left out).
/// Empty until the workers have created apalis' tables.
pub async fn jobs(
    pool: &PgPool,
    status: Option<&str>,
    limit: i64,
) -> Result<serde_json::Value, StoreError> {
    let (exists,): (bool,) = sqlx::query_as(include_str!("../queries/jobs_exist.sql"))
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(serde_json::json!({"counts": [], "jobs": []}));
    }
    let (counts,): (String,) = sqlx::query_as(include_str!("../queries/jobs_counts.sql"))
        .fetch_one(pool)
        .await?;
    let (jobs,): (String,) = sqlx::query_as(include_str!("../queries/jobs_newest.sql"))
        .bind(status)
        .bind(limit)
        .fetch_one(pool)
        .await?;
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap_or_default();
    Ok(serde_json::json!({"counts": parse(&counts), "jobs": parse(&jobs)}))
}

/// An upload as Postgres holds it (written by the workers from the media-uploaded event).
/// One row of `media_overview`, as the media read and the gallery decode it.
#[derive(sqlx::FromRow)]
struct MediaRow {
    media_id: String,
    tournament: String,
    content_type: String,
    bytes: i64,
    received_at: chrono::DateTime<Utc>,
    user_id: Option<String>,
    status: String,
    reason: Option<String>,
    variants: Option<String>,
}

impl MediaRow {
    /// stored → queued (thumbnail job) → done (with variants) | failed (with the reason)
    fn view(self) -> Result<MediaView, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            kind: "media".into(),
            id: self.media_id.clone(),
            reason,
        };
        let status = MediaStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status '{}'", self.status)))?;
        #[derive(serde::Deserialize)]
        struct Stored {
            width: u32,
            height: u32,
            content_type: String,
            bytes: u64,
        }
        let stored: BTreeMap<String, Stored> = match &self.variants {
            Some(text) => serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?,
            None => BTreeMap::new(),
        };
        let media = MediaId::try_from(self.media_id.clone()).map_err(|e| corrupt(e.to_string()))?;
        let url = |variant: &str| format!("/v1/media/{media}/{variant}");
        Ok(MediaView {
            original_url: url("original"),
            variants: stored
                .into_iter()
                .map(|(name, v)| {
                    let view = MediaVariantView {
                        url: url(&name),
                        width: v.width,
                        height: v.height,
                        content_type: v.content_type,
                        bytes: v.bytes,
                    };
                    (name, view)
                })
                .collect(),
            tournament: TournamentId::try_from(self.tournament)
                .map_err(|e| corrupt(e.to_string()))?,
            user: self
                .user_id
                .map(UserId::try_from)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            media,
            status,
            reason: self.reason,
            content_type: self.content_type,
            bytes: self.bytes.max(0) as u64,
            received_at: self.received_at,
        })
    }
}

pub async fn media_upload(pool: &PgPool, media: &str) -> Result<Option<MediaView>, StoreError> {
    let row: Option<MediaRow> = sqlx::query_as(include_str!("../queries/media_upload.sql"))
        .bind(media)
        .fetch_optional(pool)
        .await?;
    row.map(MediaRow::view).transpose()
}

/// Up to `limit` of a tournament's uploads, newest first, older than `after` (the last of the
/// previous page) when given.
pub async fn media_gallery(
    pool: &PgPool,
    tournament: &str,
    after: Option<(chrono::DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<MediaView>, StoreError> {
    let (at, media) = after.unzip();
    let rows: Vec<MediaRow> = sqlx::query_as(include_str!("../queries/media_gallery.sql"))
        .bind(tournament)
        .bind(at)
        .bind(media)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(MediaRow::view).collect()
}

// Fallback reads (crate::fallback): the live views computed from schema's views while Redis
// cannot answer, in the shapes crate::views returns.

/// A poll's current votes per option, most first (ties by option, as the Redis read sorts).
pub async fn poll_votes(pool: &PgPool, poll: &str) -> Result<PollResults, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as(include_str!("../queries/fallback_poll_votes.sql"))
            .bind(poll)
            .fetch_all(pool)
            .await?;
    Ok(PollResults::new(poll, rows))
}

pub async fn has_voted(pool: &PgPool, poll: &str, voter: &str) -> Result<bool, StoreError> {
    let (voted,): (bool,) = sqlx::query_as(include_str!("../queries/fallback_has_voted.sql"))
        .bind(poll)
        .bind(voter)
        .fetch_one(pool)
        .await?;
    Ok(voted)
}

/// Every team's standing, ranked in `order` as the sorted set ranks them: from a row per
/// team and effect, or, for a tournament whose teams were scored under two effects, from every
/// score in stream order.
pub async fn standings(
    pool: &PgPool,
    tournament: &str,
    order: SortOrder,
) -> Result<Vec<(String, f64)>, StoreError> {
    type Totals = (String, String, i64, i64, i64, i64);
    let totals: Vec<Totals> = sqlx::query_as(include_str!("../queries/fallback_score_totals.sql"))
        .bind(tournament)
        .fetch_all(pool)
        .await?;
    let teams: std::collections::HashSet<&str> = totals.iter().map(|t| t.0.as_str()).collect();
    if teams.len() == totals.len() {
        let mut scores = Vec::with_capacity(totals.len());
        for (team, effect, sum, max, min, last) in totals {
            let effect = score_effect(&team, &effect)?;
            let value = match effect {
                ScoreEffect::Add => sum,
                ScoreEffect::Replace => last,
                ScoreEffect::Max => max,
                ScoreEffect::Min => min,
            };
            scores.push((team, effect, value));
        }
        return Ok(tally_schema::replay::standings(scores, order));
    }
    let rows = sqlx::query_as(include_str!("../queries/fallback_scores.sql"))
        .bind(tournament)
        .fetch_all(pool)
        .await?;
    fold_scores(rows, order)
}

/// One match's ranking: its teams' scores in it, combined and ranked as the standings are.
pub async fn match_standings(
    pool: &PgPool,
    tournament: &str,
    match_id: &str,
    order: SortOrder,
) -> Result<Vec<(String, f64)>, StoreError> {
    let rows = sqlx::query_as(include_str!("../queries/fallback_match_scores.sql"))
        .bind(tournament)
        .bind(match_id)
        .fetch_all(pool)
        .await?;
    fold_scores(rows, order)
}

/// `(team, effect, points)` rows in stream order, folded into a ranking.
fn fold_scores(
    rows: Vec<(String, String, i64)>,
    order: SortOrder,
) -> Result<Vec<(String, f64)>, StoreError> {
    let mut scores = Vec::with_capacity(rows.len());
    for (team, effect, points) in rows {
        let effect = score_effect(&team, &effect)?;
        scores.push((team, effect, points));
    }
    Ok(tally_schema::replay::standings(scores, order))
}

fn score_effect(team: &str, effect: &str) -> Result<ScoreEffect, StoreError> {
    ScoreEffect::parse(effect).ok_or_else(|| StoreError::Corrupt {
        kind: "score".into(),
        id: team.to_owned(),
        reason: format!("unknown effect '{effect}'"),
    })
}

/// Registrants in total and per group, as the Redis counts hash holds them.
pub async fn registration_counts(
    pool: &PgPool,
    tournament: &str,
) -> Result<(i64, Vec<(String, i64)>), StoreError> {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as(include_str!("../queries/fallback_registration_counts.sql"))
            .bind(tournament)
            .fetch_all(pool)
            .await?;
    let total = rows.iter().map(|(_, n)| n).sum();
    let mut groups: Vec<(String, i64)> = rows
        .into_iter()
        .filter_map(|(g, n)| Some((g?, n)))
        .collect();
    groups.sort();
    Ok((total, groups))
}

/// A registrant's position in stream order (1: the first), if registered.
pub async fn registrant_position(
    pool: &PgPool,
    tournament: &str,
    user: &str,
) -> Result<Option<u64>, StoreError> {
    let (position,): (i64,) =
        sqlx::query_as(include_str!("../queries/fallback_registrant_position.sql"))
            .bind(tournament)
            .bind(user)
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(position).ok().filter(|p| *p > 0))
}

/// A registrant's state after the draw, if the draw has given them one.
pub async fn draw_result(
    pool: &PgPool,
    tournament: &str,
    user: &str,
) -> Result<Option<RegistrationState>, StoreError> {
    let rows = sqlx::query_as(include_str!("../queries/fallback_status_changes.sql"))
        .bind(tournament)
        .bind(user)
        .fetch_all(pool)
        .await?;
    Ok(tally_schema::replay::registration_states(status_changes(tournament, rows)?).remove(user))
}

/// A lottery's waitlisted registrant's outlook, from every status change of the tournament
/// (one query, shared and cached like every fallback read).
pub async fn waitlist_outlook(
    pool: &PgPool,
    tournament: &str,
    user: &str,
) -> Result<WaitlistOutlook, StoreError> {
    let rows = sqlx::query_as(include_str!(
        "../queries/fallback_tournament_status_changes.sql"
    ))
    .bind(tournament)
    .fetch_all(pool)
    .await?;
    let folded = tally_schema::replay::registrations(status_changes(tournament, rows)?);
    Ok(folded.waitlist_outlook(user))
}

/// `(user, status, position, deadline, promoted)` rows of status changes.
type StatusRow = (
    String,
    String,
    Option<i64>,
    Option<chrono::DateTime<Utc>>,
    Option<String>,
);

fn status_changes(
    tournament: &str,
    rows: Vec<StatusRow>,
) -> Result<Vec<RegistrationStatus>, StoreError> {
    let corrupt = |id: &str, reason: String| StoreError::Corrupt {
        kind: "registration status".into(),
        id: id.to_owned(),
        reason,
    };
    let mut changes = Vec::with_capacity(rows.len());
    for (user_id, status, position, deadline, promoted) in rows {
        let change = RegistrationStatus {
            tournament: tournament
                .try_into()
                .map_err(|e| corrupt(&user_id, format!("{e}")))?,
            user: user_id
                .as_str()
                .try_into()
                .map_err(|e| corrupt(&user_id, format!("{e}")))?,
            status: StatusChange::parse(&status)
                .ok_or_else(|| corrupt(&user_id, format!("unknown status '{status}'")))?,
            position: position.and_then(|p| u32::try_from(p).ok()),
            deadline,
            promoted: promoted
                .map(|p| UserId::try_from(p.as_str()))
                .transpose()
                .map_err(|e| corrupt(&user_id, format!("{e}")))?,
        };
        changes.push(change);
    }
    Ok(changes)
}

// Webhook endpoints (migration 0019): what the admin API manages. Deliveries are the workers'.

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
    disabled_at: Option<chrono::DateTime<Utc>>,
    disabled_reason: Option<String>,
    consecutive_failures: i32,
    failing_since: Option<chrono::DateTime<Utc>>,
    retry_at: Option<chrono::DateTime<Utc>>,
    previous_secret_until: Option<chrono::DateTime<Utc>>,
    created_at: chrono::DateTime<Utc>,
    pending: i64,
    failed: i64,
}

impl EndpointRow {
    fn view(self) -> EndpointView {
        let state = match (self.disabled_at, self.consecutive_failures) {
            (Some(_), _) => EndpointState::Disabled,
            (None, 0) => EndpointState::Enabled,
            (None, _) => EndpointState::Failing,
        };
        EndpointView {
            event_types: self
                .event_types
                .iter()
                .filter_map(|t| EventType::parse(t))
                .collect(),
            id: self.id,
            url: self.url,
            description: self.description,
            state,
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason,
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since,
            retry_at: self.retry_at,
            previous_secret_until: self.previous_secret_until,
            created_at: self.created_at,
            pending: self.pending,
            failed: self.failed,
        }
    }
}

/// Every endpoint (`None`) or one.
pub async fn webhook_endpoints(
    pool: &PgPool,
    id: Option<&str>,
) -> Result<Vec<EndpointView>, StoreError> {
    let rows: Vec<EndpointRow> = sqlx::query_as(include_str!("../queries/webhook_endpoints.sql"))
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(EndpointRow::view).collect())
}

pub async fn create_webhook_endpoint(
    pool: &PgPool,
    id: &str,
    body: &EndpointBody,
    secret: &str,
) -> Result<(), StoreError> {
    let types: Vec<&str> = body.event_types.iter().map(|t| t.as_str()).collect();
    sqlx::query(include_str!("../queries/webhook_endpoint_create.sql"))
        .bind(id)
        .bind(&body.url)
        .bind(types)
        .bind(&body.description)
        .bind(secret)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether the endpoint existed.
pub async fn delete_webhook_endpoint(pool: &PgPool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(include_str!("../queries/webhook_endpoint_delete.sql"))
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the endpoint exists.
pub async fn rotate_webhook_secret(
    pool: &PgPool,
    id: &str,
    secret: &str,
    overlap_secs: u64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(include_str!("../queries/webhook_endpoint_rotate.sql"))
        .bind(id)
        .bind(secret)
        .bind(overlap_secs as f64)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the endpoint exists.
pub async fn enable_webhook_endpoint(
    pool: &PgPool,
    id: &str,
    enabled: bool,
) -> Result<bool, StoreError> {
    let done = sqlx::query(include_str!("../queries/webhook_endpoint_enable.sql"))
        .bind(id)
        .bind(enabled)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn webhook_attempts(
    pool: &PgPool,
    endpoint: &str,
    limit: i64,
) -> Result<Vec<AttemptView>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        message_id: String,
        event_type: Option<String>,
        attempted_at: chrono::DateTime<Utc>,
        status_code: Option<i32>,
        latency_ms: i32,
        error: Option<String>,
        excerpt: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(include_str!("../queries/webhook_attempts.sql"))
        .bind(endpoint)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| AttemptView {
            message: r.message_id,
            event_type: r.event_type.as_deref().and_then(EventType::parse),
            attempted_at: r.attempted_at,
            status_code: r.status_code,
            latency_ms: r.latency_ms,
            error: r.error,
            excerpt: r.excerpt,
        })
        .collect())
}

/// Queues one message to the endpoint again; `false` when the message or endpoint does not
/// exist (or a job holds the delivery right now).
pub async fn replay_webhook_message(
    pool: &PgPool,
    endpoint: &str,
    message: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(include_str!("../queries/webhook_replay_message.sql"))
        .bind(endpoint)
        .bind(message)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Queues again what the endpoint missed since `since`, at most `max` messages looked at.
pub async fn replay_webhooks_since(
    pool: &PgPool,
    endpoint: &str,
    since: chrono::DateTime<Utc>,
    include_delivered: bool,
    max: i64,
) -> Result<ReplayView, StoreError> {
    let (replayed, looked_at, last): (i64, i64, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as(include_str!("../queries/webhook_replay_since.sql"))
            .bind(endpoint)
            .bind(since)
            .bind(include_delivered)
            .bind(max)
            .fetch_one(pool)
            .await?;
    Ok(ReplayView {
        replayed: replayed.max(0) as u64,
        continue_from: last.filter(|_| looked_at >= max),
    })
}

/// Keeps a registrant's address (a tournament that emails its winners): personal data, kept
/// here and nowhere else.
pub async fn save_contact(
    pool: &PgPool,
    tournament: &str,
    user: &str,
    contact: &tally_schema::email::Contact,
) -> Result<(), StoreError> {
    sqlx::query(include_str!("../queries/contact_save.sql"))
        .bind(tournament)
        .bind(user)
        .bind(&contact.email)
        .bind(&contact.time_zone)
        .execute(pool)
        .await?;
    Ok(())
}
