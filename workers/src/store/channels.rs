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
        super::definitions(ResourceKind::Channel, rows, |r| match r {
            Resource::Channel(c) => Some(c),
            _ => None,
        })
    }
}
