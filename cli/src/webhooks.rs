//! `tally webhooks`: webhook endpoints through the admin API (`/admin/v1/webhooks`).

use crate::WebhookAction;
use crate::admin::Admin;
use crate::output::{self, Block, Reply};
use crate::table::{Table, cell};
use serde_json::{Value, json};

pub async fn run(admin: &Admin<'_>, action: WebhookAction) -> anyhow::Result<()> {
    let base = admin.url("webhooks");
    let c = &admin.client;
    let one = |id: &str| format!("{base}/{id}");
    let reply = match action {
        WebhookAction::List => endpoints(admin.send(c.get(&base)).await?),
        WebhookAction::Get { endpoint } => fields(admin.send(c.get(one(&endpoint))).await?),
        WebhookAction::Create {
            url,
            event_types,
            description,
        } => {
            let body = json!({"url": url, "event_types": event_types, "description": description});
            secret(admin.send(c.post(&base).json(&body)).await?)
        }
        WebhookAction::Delete { endpoint } => {
            admin.send(c.delete(one(&endpoint))).await?;
            let line = format!("deleted {endpoint}");
            Reply::new(json!({"deleted": endpoint}), [Block::Line(line)])
        }
        WebhookAction::Rotate {
            endpoint,
            overlap_secs,
        } => {
            let body = json!({ "overlap_secs": overlap_secs });
            let url = format!("{}/rotate", one(&endpoint));
            secret(admin.send(c.post(url).json(&body)).await?)
        }
        WebhookAction::Enable { endpoint } => fields(
            admin
                .send(c.post(format!("{}/enable", one(&endpoint))))
                .await?,
        ),
        WebhookAction::Disable { endpoint } => fields(
            admin
                .send(c.post(format!("{}/disable", one(&endpoint))))
                .await?,
        ),
        WebhookAction::Attempts { endpoint, limit } => {
            let url = format!("{}/attempts?limit={limit}", one(&endpoint));
            attempts(admin.send(c.get(url)).await?)
        }
        WebhookAction::Replay {
            endpoint,
            message,
            since,
            include_delivered,
        } => {
            let body = match message {
                Some(message) => json!({ "message": message }),
                None => json!({"since": since, "include_delivered": include_delivered}),
            };
            let url = format!("{}/replay", one(&endpoint));
            let answer = admin.send(c.post(url).json(&body)).await?;
            let mut line = format!("replayed {}", cell(&answer["replayed"]));
            if let Some(next) = answer["continue_from"].as_str() {
                line.push_str(&format!("; more remain: replay again --since {next}"));
            }
            Reply::new(answer, [Block::Line(line)])
        }
    };
    output::print(admin.format, &reply)
}

fn endpoints(body: Value) -> Reply {
    let mut table = Table::new(["id", "state", "url", "event types", "pending", "failed"]);
    for e in body.as_array().into_iter().flatten() {
        table.row(["id", "state", "url", "event_types", "pending", "failed"].map(|f| cell(&e[f])));
    }
    Reply::new(body, [Block::Table(table)])
}

fn fields(body: Value) -> Reply {
    let lines = body
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), cell(v)))
        .collect();
    Reply::new(body, [Block::Fields(lines)])
}

/// A new secret: the endpoint, then the secret alone on its last line.
fn secret(body: Value) -> Reply {
    let mut reply = fields(body["endpoint"].clone());
    reply.json = body.clone();
    reply
        .human
        .push(Block::Line(format!("secret: {}", cell(&body["secret"]))));
    reply
}

fn attempts(body: Value) -> Reply {
    let mut table = Table::new(["attempted", "message", "type", "status", "ms", "error"]);
    for a in body.as_array().into_iter().flatten() {
        table.row(
            [
                "attempted_at",
                "message",
                "event_type",
                "status_code",
                "latency_ms",
                "error",
            ]
            .map(|f| cell(&a[f])),
        );
    }
    Reply::new(body, [Block::Table(table)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_ends_the_answer_on_its_own_line() {
        let body = json!({"endpoint": {"id": "ep_1", "url": "http://x"}, "secret": "whsec_abc"});
        let reply = secret(body.clone());
        assert_eq!(reply.json, body);
        assert_eq!(
            reply.human.last(),
            Some(&Block::Line("secret: whsec_abc".into()))
        );
    }
}
