//! The admin API, called exactly as any other client would: polls, arenas and tournaments,
//! and a tournament's membership list. Turns its answers into tables for people.

use crate::output::{self, Block, Format, Reply};
use crate::table::{Table, cell, clean};
use crate::{ResourceAction, read};
use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tally_schema::resources::ResourceKind;

/// The admin API at `api`, with a key.
pub struct Admin<'a> {
    api: &'a str,
    key: String,
    pub(crate) format: Format,
    pub(crate) client: reqwest::Client,
}

impl<'a> Admin<'a> {
    pub fn new(api: &'a str, key: Option<String>, format: Format) -> anyhow::Result<Self> {
        let Some(key) = key else {
            bail!("set --key or TALLY_API_KEY (tally keys create makes one)");
        };
        Ok(Self {
            api,
            key,
            format,
            client: reqwest::Client::new(),
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/admin/v1/{path}", self.api.trim_end_matches('/'))
    }

    /// Sends `request` with the key; the answer's JSON, or the API's refusal as an error
    /// (with `--json`, the refusal's body is printed first, as it came).
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.api))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        if self.format == Format::Json {
            // The refusal is the verdict; a failed print of its body must not replace it.
            let _ = output::print(self.format, &Reply::new(body.clone(), []));
        }
        Err(anyhow!("the API answered {status}{}", refusal(&body)))
    }

    pub async fn resource(&self, kind: ResourceKind, action: ResourceAction) -> anyhow::Result<()> {
        let base = self.url(kind.plural());
        let c = &self.client;
        let listing = matches!(action, ResourceAction::List);
        let request = match action {
            ResourceAction::List => c.get(&base),
            ResourceAction::Get { id } => c.get(format!("{base}/{id}")),
            ResourceAction::Create { file } => c.post(&base).body(read(&file)?),
            ResourceAction::Update { id, file } => c.put(format!("{base}/{id}")).body(read(&file)?),
            ResourceAction::Open { id } => c.post(format!("{base}/{id}/open")),
            ResourceAction::Close { id } => c.post(format!("{base}/{id}/close")),
        };
        let body = self.send(request).await?;
        let reply = match listing {
            true => resource_table(kind, body),
            false => resource_fields(body),
        };
        output::print(self.format, &reply)
    }

    /// Sends the members of a `user,group` CSV, [`MAX_MEMBERS_PER_CALL`] at a time.
    ///
    /// [`MAX_MEMBERS_PER_CALL`]: tally_schema::api::MAX_MEMBERS_PER_CALL
    pub async fn import_members(&self, tournament: &str, file: &str) -> anyhow::Result<()> {
        let members = parse_members(&read(file)?)?;
        let url = self.url(&format!("tournaments/{tournament}/members"));
        let mut last = Value::Null;
        for chunk in members.chunks(tally_schema::api::MAX_MEMBERS_PER_CALL) {
            let request = self.client.post(&url).json(&json!({ "members": chunk }));
            last = self.send(request).await?;
        }
        let reply = imported(tournament, members.len(), &last["groups"]);
        output::print(self.format, &reply)
    }
}

/// `: message (code, field)` from the API's error body, or nothing if it sent none.
fn refusal(body: &Value) -> String {
    let error = &body["error"];
    let Some(message) = error["message"].as_str() else {
        return String::new();
    };
    let mut about: Vec<String> = Vec::new();
    if let Some(code) = error["code"].as_str() {
        about.push(code.to_owned());
    }
    if let Some(field) = error["field"].as_str().filter(|f| !f.is_empty()) {
        about.push(format!("field {field}"));
    }
    match about.is_empty() {
        true => format!(": {}", clean(message)),
        false => format!(": {} ({})", clean(message), clean(&about.join(", "))),
    }
}

/// The columns a listing of each kind shows; `get` shows every field.
fn columns(kind: ResourceKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ResourceKind::Poll => &[
            ("title", "title"),
            ("options", "options"),
            ("opens", "opens_at"),
            ("closes", "closes_at"),
        ],
        ResourceKind::Arena => &[
            ("title", "title"),
            ("items", "items"),
            ("opens", "opens_at"),
            ("closes", "closes_at"),
        ],
        ResourceKind::Tournament => &[
            ("title", "title"),
            ("mode", "mode"),
            ("capacity", "capacity"),
            ("opens", "registration_opens_at"),
            ("closes", "registration_closes_at"),
        ],
        ResourceKind::Channel => &[
            ("title", "title"),
            ("delivery", "delivery"),
            ("followers", "followers"),
            ("opens", "opens_at"),
            ("closes", "closes_at"),
        ],
    }
}

/// `{"items": [{kind, version, definition}]}` as one row per definition.
fn resource_table(kind: ResourceKind, body: Value) -> Reply {
    let columns = columns(kind);
    let headers = ["id", "version"]
        .into_iter()
        .chain(columns.iter().map(|(header, _)| *header));
    let mut table = Table::new(headers);
    for item in body["items"].as_array().into_iter().flatten() {
        let d = &item["definition"];
        let cells = [cell(&d["id"]), cell(&item["version"])]
            .into_iter()
            .chain(columns.iter().map(|(_, field)| cell(&d[*field])));
        table.row(cells);
    }
    Reply::new(body, [Block::Table(table)])
}

/// `{kind, version, definition}` as `key: value` lines: kind, id, version, title, then every
/// other field of the definition by name.
fn resource_fields(body: Value) -> Reply {
    let d = &body["definition"];
    let mut fields = vec![
        ("kind".to_owned(), cell(&body["kind"])),
        ("id".to_owned(), cell(&d["id"])),
        ("version".to_owned(), cell(&body["version"])),
    ];
    let mut rest: Vec<(&String, &Value)> = d.as_object().into_iter().flatten().collect();
    rest.sort_by_key(|(name, _)| (name.as_str() != "title", name.as_str()));
    for (name, value) in rest {
        if name != "id" {
            fields.push((name.clone(), cell(value)));
        }
    }
    Reply::new(body, [Block::Fields(fields)])
}

fn imported(tournament: &str, members: usize, groups: &Value) -> Reply {
    let mut table = Table::new(["group", "members"]);
    let mut counts: Vec<(&String, &Value)> = groups.as_object().into_iter().flatten().collect();
    counts.sort_by_key(|(group, _)| group.as_str());
    for (group, n) in counts {
        table.row([group.clone(), cell(n)]);
    }
    Reply::new(
        json!({"tournament": tournament, "imported": members, "groups": groups}),
        [
            Block::Line(format!("imported {members} members into {tournament}")),
            Block::Table(table),
        ],
    )
}

/// The members of a `user,group` CSV. Ids cannot hold commas or quotes, so a line is split at
/// its comma; a bad line is reported with its number before anything is sent.
fn parse_members(text: &str) -> anyhow::Result<Vec<tally_schema::api::GroupMember>> {
    let mut members = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("user,group")) {
            continue;
        }
        let Some((user, group)) = line.split_once(',') else {
            bail!("line {}: want user,group", i + 1);
        };
        let member = tally_schema::api::GroupMember {
            user: user
                .trim()
                .try_into()
                .with_context(|| format!("line {}: user", i + 1))?,
            group: group
                .trim()
                .try_into()
                .with_context(|| format!("line {}: group", i + 1))?,
        };
        members.push(member);
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_a_row_per_definition_and_json_is_the_answer_unchanged() {
        let body = json!({"items": [
            {"kind": "poll", "version": 3, "definition": {
                "id": "final", "title": "Who wins?", "options": ["red", "blue"],
                "closes_at": "2026-12-01T20:00:00Z"}},
            {"kind": "poll", "version": 1, "definition": {
                "id": "warmup", "title": "", "options": ["a", "b", "c"]}},
        ]});
        let reply = resource_table(ResourceKind::Poll, body.clone());
        assert_eq!(
            reply.human_text(),
            "ID      VERSION  TITLE      OPTIONS    OPENS  CLOSES\n\
             final   3        Who wins?  red, blue  -      2026-12-01T20:00:00Z\n\
             warmup  1                   a, b, c    -      -\n"
        );
        assert_eq!(reply.json, body);
    }

    #[test]
    fn an_empty_listing_is_its_header() {
        let reply = resource_table(ResourceKind::Tournament, json!({"items": []}));
        assert_eq!(
            reply.human_text(),
            "ID  VERSION  TITLE  MODE  CAPACITY  OPENS  CLOSES\n"
        );
    }

    #[test]
    fn one_definition_is_key_value_lines() {
        let body = json!({"kind": "tournament", "version": 2, "definition": {
            "id": "cup", "title": "The Cup", "capacity": 700,
            "groups": [{"id": "vip", "weight": 2.0}]}});
        assert_eq!(
            resource_fields(body).human_text(),
            "kind:     tournament\n\
             id:       cup\n\
             version:  2\n\
             title:    The Cup\n\
             capacity: 700\n\
             groups:   [{\"id\":\"vip\",\"weight\":2.0}]\n"
        );
    }

    #[test]
    fn a_refusal_names_its_code_and_field() {
        let body = json!({"error": {"code": "already_exists", "message": "poll 'x' exists", "field": "id"}});
        assert_eq!(
            refusal(&body),
            ": poll 'x' exists (already_exists, field id)"
        );
        assert_eq!(refusal(&Value::Null), "");
    }

    #[test]
    fn an_import_reports_the_groups() {
        let reply = imported("cup", 6001, &json!({"members": 6000, "vip": 1}));
        assert_eq!(
            reply.human_text(),
            "imported 6001 members into cup\nGROUP    MEMBERS\nmembers  6000\nvip      1\n"
        );
        assert_eq!(reply.json["imported"], 6001);
    }

    #[test]
    fn a_members_file_is_read_line_by_line() {
        let members = parse_members("user,group\nann,vip\n\n bob , members \n").unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].user.as_str(), "bob");
        let e = parse_members("ann,vip\nno-comma\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: want user,group");
    }
}
