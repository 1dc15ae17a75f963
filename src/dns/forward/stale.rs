//! Serve-stale (RFC 8767): a query whose cached answer expired waits a moment for a refresh
//! of it (one per question, shared by every query that asks meanwhile, run in the background)
//! and gets the expired answer, every TTL 30, when no upstream answers in time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hickory_proto::op::Message;
use tokio::sync::watch;
use tracing::debug;

use crate::dns::answer::Transport;
use crate::dns::forward::cache::{self, CacheKey};
use crate::dns::forward::{ForwardResult, Forwarder, IsOwned};

/// Where a background refresh of a stale answer is.
#[derive(Debug, Clone)]
pub(super) enum RefreshState {
    Running,
    Answered(Arc<Message>),
    Failed,
}

impl Forwarder {
    /// Answers a query whose cached answer expired: the refresh of it (started now, or already
    /// running for another query) if it comes within the stale answer delay, else the stale
    /// answer (at once when every upstream is held down).
    pub(super) async fn resolve_stale(
        &self,
        key: CacheKey,
        stale: Message,
        request: &Message,
        packet: &[u8],
        transport: Transport,
        is_owned: IsOwned,
    ) -> ForwardResult {
        let mut refresh = self.refresh(key, request, packet, transport, is_owned);
        if !self.every_upstream_held_down() {
            let delay = self.inner.settings.stale_answer_delay;
            let _ = tokio::time::timeout(
                delay,
                refresh.wait_for(|state| !matches!(state, RefreshState::Running)),
            )
            .await;
        }
        let state = refresh.borrow().clone();
        if let RefreshState::Answered(fresh) = state {
            let fresh = cache::readdress((*fresh).clone(), request, |ttl| ttl);
            return ForwardResult::Refreshed(fresh);
        }
        self.inner.stale_answers.fetch_add(1, Ordering::Relaxed);
        debug!(
            name = %request.queries.first().map(|q| q.name().to_string()).unwrap_or_default(),
            "no upstream answered in time; serving the stale answer"
        );
        ForwardResult::Stale(stale)
    }

    /// The refresh of `key` in flight, or a new one started in the background.
    fn refresh(
        &self,
        key: CacheKey,
        request: &Message,
        packet: &[u8],
        transport: Transport,
        is_owned: IsOwned,
    ) -> watch::Receiver<RefreshState> {
        let Ok(mut refreshing) = self.inner.refreshing.lock() else {
            return watch::channel(RefreshState::Failed).1;
        };
        if let Some(running) = refreshing.get(&key) {
            return running.clone();
        }
        let (sender, receiver) = watch::channel(RefreshState::Running);
        refreshing.insert(key.clone(), receiver.clone());
        drop(refreshing);
        let forwarder = self.clone();
        let request = Arc::new(request.clone());
        let packet: Arc<[u8]> = Arc::from(packet);
        tokio::spawn(async move {
            let outcome = forwarder
                .race(Arc::clone(&request), packet, transport, &is_owned)
                .await;
            let state = match outcome {
                Ok(forwarded) => RefreshState::Answered(Arc::new(forwarded.message)),
                Err(_) => {
                    debug!(
                        name = %request.queries.first().map(|q| q.name().to_string()).unwrap_or_default(),
                        "refreshing a stale answer failed: every upstream failed"
                    );
                    RefreshState::Failed
                }
            };
            // Forget the refresh before telling its waiters, so the next query starts another.
            if let Ok(mut refreshing) = forwarder.inner.refreshing.lock() {
                refreshing.remove(&key);
            }
            sender.send_replace(state);
        });
        receiver
    }
}
