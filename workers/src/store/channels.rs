//! Broadcast channels that name an upstream for the poller (definitions kept by ingest in
//! `resources`).

use super::{PgStore, StoreError};
use tally_schema::channels::Channel;
use tally_schema::resources::{Resource, ResourceKind};

impl PgStore {
    /// Every channel with an upstream URL.
    pub async fn channels_with_upstream(&self) -> Result<Vec<Channel>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as(include_str!("../../queries/channels_with_upstream.sql"))
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|(id, json)| {
                match Resource::decode(ResourceKind::Channel, json.as_bytes()) {
                    Ok(Resource::Channel(c)) => Ok(c),
                    Ok(_) => Err("not a channel".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
                .map_err(|reason| StoreError::Corrupt {
                    what: format!("channel {id}"),
                    reason,
                })
            })
            .collect()
    }
}
