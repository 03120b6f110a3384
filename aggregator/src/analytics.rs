//! The ClickHouse sink: every event as one row of `events`, in batches of tens of thousands,
//! exactly once. Before each batch it reads back the highest stream sequence stored; a batch
//! is one INSERT, which MergeTree commits as one part or not at all, so a crash mid-batch
//! leaves nothing half-written and a redelivery is filtered out by the read-back.

use crate::ordered_sink::{Applied, OrderedSink};
use tally_schema::StoredEvent;
use tally_schema::analytics::EventRow;

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("ClickHouse: {0}")]
    Client(#[from] clickhouse::error::Error),
}

#[derive(Clone)]
pub struct ClickHouseSink {
    client: clickhouse::Client,
}

impl ClickHouseSink {
    /// A client for `database` at `url`; nothing is checked until [`Self::prepare`].
    pub fn new(url: &str, database: &str) -> Self {
        // 18.16 answers neither the typed-read header nor the insert schema check.
        let client = clickhouse::Client::default()
            .with_url(url)
            .with_database(database)
            .with_validation(false);
        Self { client }
    }

    /// Creates the database, tables and views if missing.
    pub async fn prepare(&self, database: &str) -> Result<(), ClickHouseError> {
        self.create_database(database).await?;
        self.create_tables().await
    }

    /// Drops every table and view of the DDL and creates them again, empty: the start of a
    /// rebuild from Postgres. The ClickHouse sink must be stopped meanwhile.
    pub async fn clear(&self, database: &str) -> Result<(), ClickHouseError> {
        self.create_database(database).await?;
        for object in tally_schema::clickhouse_objects().iter().rev() {
            self.client
                .query(&format!("DROP TABLE IF EXISTS {object}"))
                .execute()
                .await?;
        }
        self.create_tables().await
    }

    async fn create_tables(&self) -> Result<(), ClickHouseError> {
        for statement in tally_schema::clickhouse_ddl() {
            self.client.query(&statement).execute().await?;
        }
        Ok(())
    }

    async fn create_database(&self, database: &str) -> Result<(), ClickHouseError> {
        self.client
            .clone()
            .with_database("default")
            .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
            .execute()
            .await?;
        Ok(())
    }

    /// The highest stream sequence stored (0 when empty).
    pub async fn high_water(&self) -> Result<u64, ClickHouseError> {
        Ok(self
            .client
            .query("SELECT max(seq) FROM events")
            .fetch_one::<u64>()
            .await?)
    }

    /// Inserts the events above the high-water mark in one INSERT.
    #[tracing::instrument(name = "clickhouse_insert", skip_all, fields(events = events.len()))]
    pub async fn insert(&self, events: &[StoredEvent]) -> Result<Applied, ClickHouseError> {
        let high = self.high_water().await?;
        let fresh: Vec<&StoredEvent> = events.iter().filter(|e| e.stream_seq > high).collect();
        if !fresh.is_empty() {
            let mut insert = self.client.insert::<EventRow>("events").await?;
            for e in &fresh {
                insert.write(&EventRow::from_event(e)).await?;
            }
            insert.end().await?;
        }
        Ok(Applied {
            applied: fresh.len() as u64,
            skipped: (events.len() - fresh.len()) as u64,
            high: fresh
                .iter()
                .map(|e| e.stream_seq)
                .max()
                .unwrap_or(high)
                .max(high),
        })
    }

    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }
}

impl OrderedSink for ClickHouseSink {
    const NAME: &'static str = "clickhouse";
    type Error = ClickHouseError;

    fn apply(
        &self,
        events: &[StoredEvent],
    ) -> impl std::future::Future<Output = Result<Applied, ClickHouseError>> + Send {
        self.insert(events)
    }
}
