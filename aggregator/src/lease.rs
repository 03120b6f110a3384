//! One active aggregator at a time, and a standby that takes over: instances share a lease in
//! NATS KV (bucket `<stream>_LEASES`, key `aggregator`). The holder renews it every third of
//! the TTL; the bucket forgets a value TTL after it was written, so a dead holder's lease
//! lapses and a standby's `create` then succeeds. A holder that could not renew for half the
//! TTL (cut off from NATS) stops its sinks before anyone else can hold the lease; one that
//! stops cleanly deletes it, so the standby takes over at once.

use async_nats::jetstream::{self, kv};
use std::future::Future;
use std::time::Duration;
use tally_schema::StreamSpec;
use tokio::time::Instant;

const KEY: &str = "aggregator";

#[derive(Clone)]
pub struct Lease {
    store: kv::Store,
    /// Who holds it: this instance's id, in the value.
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// The lease bucket of `spec`'s stream (created if missing, with `ttl` as its expiry).
    pub async fn open(
        js: &jetstream::Context,
        spec: &StreamSpec,
        ttl: Duration,
    ) -> Result<Self, async_nats::Error> {
        let config = kv::Config {
            bucket: spec.leases_bucket(),
            description: "Which aggregator is active (renewed by its holder)".into(),
            history: 1,
            max_age: ttl,
            num_replicas: spec.replicas,
            ..Default::default()
        };
        let bucket = config.bucket.clone();
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                tally_kit::nats::declared(&bucket, || js.create_key_value(config.clone())).await?
            }
        };
        // The bucket's expiry is the lease's real length: renew by it, whatever this instance
        // was configured with (one started with another TTL shares the first one's bucket).
        let mut stream = js.get_stream(format!("KV_{bucket}")).await?;
        let expiry = stream.info().await?.config.max_age;
        let ttl = if expiry.is_zero() { ttl } else { expiry };
        if ttl != config.max_age {
            tracing::warn!(configured = ?config.max_age, bucket = ?ttl, "The lease bucket has another TTL; using it.");
        }
        Ok(Self {
            store,
            holder: format!("{}-{}", hostname(), uuid::Uuid::now_v7()),
            ttl,
        })
    }

    /// Waits until this instance holds the lease; None if `stop` resolves first. Returns the
    /// revision, and when the winning request was sent: the lease runs from no earlier.
    pub async fn acquire(&self, stop: impl Future<Output = ()>) -> Option<(u64, Instant)> {
        tokio::pin!(stop);
        let mut waiting_logged = false;
        loop {
            let sent = Instant::now();
            match self.store.create(KEY, self.holder.clone().into()).await {
                Ok(revision) => {
                    tracing::info!(holder = %self.holder, "Holding the aggregator lease: active.");
                    metrics::gauge!("tally_aggregator_active_leases").set(1.0);
                    return Some((revision, sent));
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if !waiting_logged {
                        tracing::info!("Another aggregator holds the lease: standing by.");
                        waiting_logged = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Cannot reach the lease; retrying."),
            }
            tokio::select! {
                () = tokio::time::sleep(self.ttl / 4) => {}
                () = &mut stop => return None,
            }
        }
    }

    /// Renews the lease held at `revision` (won by a request sent at `since`) until it is
    /// lost. Returns once half the TTL has passed since the last successful renewal was sent,
    /// however long a renewal hangs, so this instance stops well before the lease can lapse
    /// and pass on; or as soon as another instance holds it.
    pub async fn hold(&self, mut revision: u64, since: Instant) {
        let mut deadline = since + self.ttl / 2;
        loop {
            tokio::time::sleep(self.ttl / 3).await;
            let sent = Instant::now();
            let renewal = self.store.update(KEY, self.holder.clone().into(), revision);
            match tokio::time::timeout_at(deadline, renewal).await {
                Ok(Ok(next)) => {
                    revision = next;
                    deadline = sent + self.ttl / 2;
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!("Another aggregator took the lease: stepping down.");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "Could not renew the lease."),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(ttl = ?self.ttl, "The lease was not renewed for half its TTL: stepping down.");
                break;
            }
        }
        metrics::gauge!("tally_aggregator_active_leases").set(0.0);
    }

    /// Gives the lease up if this instance still holds it, so a standby need not wait for it
    /// to lapse.
    pub async fn release(&self) {
        metrics::gauge!("tally_aggregator_active_leases").set(0.0);
        if let Ok(Some(entry)) = self.store.entry(KEY).await
            && entry.value == self.holder.as_bytes()
            && let Err(e) = self
                .store
                .delete_expect_revision(KEY, Some(entry.revision))
                .await
        {
            tracing::warn!(error = %e, "Could not release the lease; it lapses by itself.");
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "aggregator".into())
}
