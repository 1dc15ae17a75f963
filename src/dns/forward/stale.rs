//! Serve-stale (RFC 8767) bookkeeping: the background refresh of each expired answer, at most
//! one per question, shared by every query that asks meanwhile; and the wait, bounded by the
//! stale answer delay, after which a query gets the expired answer instead. What a refresh asks
//! the upstreams is the forwarder's business (`Forwarder::resolve`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::sync::watch;

use crate::dns::forward::cache::CacheKey;

/// Where a background refresh of a stale answer is.
#[derive(Debug, Clone)]
enum RefreshState {
    Running,
    Answered(Arc<Message>),
    Failed,
}

/// The refreshes running now, by question.
#[derive(Debug, Default)]
pub(super) struct Refreshes {
    running: Mutex<HashMap<CacheKey, watch::Receiver<RefreshState>>>,
}

/// A refresh the caller of [`Refreshes::join`] must run and end with [`Refreshes::finish`].
pub(super) struct Started {
    key: CacheKey,
    sender: watch::Sender<RefreshState>,
}

/// A refresh to wait for.
pub(super) struct Refresh(watch::Receiver<RefreshState>);

impl Refreshes {
    /// The refresh of `key` in flight, and, when none was, the one the caller must start.
    pub(super) fn join(&self, key: CacheKey) -> (Refresh, Option<Started>) {
        let Ok(mut running) = self.running.lock() else {
            return (Refresh(watch::channel(RefreshState::Failed).1), None);
        };
        if let Some(refresh) = running.get(&key) {
            return (Refresh(refresh.clone()), None);
        }
        let (sender, receiver) = watch::channel(RefreshState::Running);
        running.insert(key.clone(), receiver.clone());
        (Refresh(receiver), Some(Started { key, sender }))
    }

    /// Ends `started` with the fresh answer, or `None` when every upstream failed. The refresh
    /// is forgotten before its waiters are told, so the next query starts another.
    pub(super) fn finish(&self, started: Started, fresh: Option<Message>) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&started.key);
        }
        let state = match fresh {
            Some(message) => RefreshState::Answered(Arc::new(message)),
            None => RefreshState::Failed,
        };
        started.sender.send_replace(state);
    }

    /// How many refreshes run now.
    pub(super) fn len(&self) -> usize {
        self.running.lock().map_or(0, |running| running.len())
    }
}

impl Refresh {
    /// The fresh answer, when the refresh brings one within `delay` (`None`: not waited for).
    pub(super) async fn fresh_within(mut self, delay: Option<Duration>) -> Option<Arc<Message>> {
        if let Some(delay) = delay {
            let finished = self
                .0
                .wait_for(|state| !matches!(state, RefreshState::Running));
            let _ = tokio::time::timeout(delay, finished).await;
        }
        match &*self.0.borrow() {
            RefreshState::Answered(fresh) => Some(Arc::clone(fresh)),
            RefreshState::Running | RefreshState::Failed => None,
        }
    }
}
