//! Live-update notifications: after a batch is applied, each poll or tournament it touched is
//! marked; a ticker publishes one notification per marked scope at most every `interval` on
//! a core NATS subject. Ingest reads the view once per notification and fans it out to every
//! SSE client of that scope.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_schema::{LiveView, StoredEvent, StreamSpec};

/// Scopes changed since the last tick.
#[derive(Clone, Default)]
pub struct Changed(Arc<Mutex<HashSet<(LiveView, String)>>>);

impl Changed {
    pub fn mark(&self, events: &[StoredEvent]) {
        let mut changed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            if let Some((view, scope)) = LiveView::changed_by(&e.envelope.event) {
                changed.insert((view, scope.to_owned()));
            }
        }
    }

    fn take(&self) -> HashSet<(LiveView, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Publishes the marked scopes every `interval`, coalescing everything in between.
pub async fn notify(
    client: async_nats::Client,
    spec: StreamSpec,
    changed: Changed,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (view, scope) in changed.take() {
            // Best effort: a lost notification is repaired by the next change or a reconnect.
            let _ = client
                .publish(spec.live_subject(view, &scope), bytes::Bytes::new())
                .await;
        }
    }
}
