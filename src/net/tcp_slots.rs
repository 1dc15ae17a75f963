//! The connection slots of the TCP listeners: how many connections are served at once, and who
//! gives up a slot when they are all taken.
//!
//! A fixed number of slots that new connections wait for lets one local process keep every
//! other TCP client out: it opens as many idle connections as there are slots (and re-opens
//! those the idle timeout closes), and each new client, every truncated answer's TCP retry
//! among them, waits in the backlog behind them. So a connection that arrives when every slot
//! is taken evicts the open connection that has been idle the longest, one with no query in
//! flight (RFC 7766 §6.2.3 lets a server close idle connections under pressure; Knot does the
//! same). A new client is then served at once, and a holder only ever evicts itself once its
//! connections are the idlest. A new connection that has not sent a query yet is spared for a
//! short grace ([`GRACE`]), so one that opens connections as fast as it can cannot close a
//! client's before its query is read. Only when no open connection may be closed (each has a
//! query in flight, or is in its grace) does a new one wait, until a slot frees or one may.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

/// How often a connection waiting for a slot looks again when no connection may be closed for
/// it (a connection going idle, or out of its grace, does not wake it).
const BUSY_RECHECK: Duration = Duration::from_millis(20);

/// How long a new connection that has not sent a query yet keeps its slot. Without it, a
/// process that opens connections as fast as it can would close every other new connection
/// before its first query is read; with it, such a process gets at most one slot turned over
/// per grace period, and a client's query (sent with the handshake) is read well within it.
pub const GRACE: Duration = Duration::from_millis(250);

/// The slots of every TCP listener of one server.
#[derive(Debug)]
pub struct TcpSlots {
    max: usize,
    open: Mutex<OpenConnections>,
    /// Woken when a connection closes.
    freed: Notify,
    /// Orders activity exactly: every admission and every query takes the next number.
    clock: AtomicU64,
}

#[derive(Debug, Default)]
struct OpenConnections {
    next_id: u64,
    by_id: HashMap<u64, Arc<Activity>>,
}

/// What the slot table knows of one connection.
#[derive(Debug)]
pub struct Activity {
    /// Queries of the connection waiting for an upstream.
    in_flight: AtomicUsize,
    /// The table's clock when the connection was admitted, last received a query or finished
    /// one: the smallest is the connection idle the longest.
    last_active: AtomicU64,
    /// Whether it ever sent a query.
    sent: AtomicBool,
    /// When it was admitted.
    admitted: Instant,
    /// Told to close.
    evict: Notify,
}

impl Activity {
    /// Whether this connection may be closed for a new one at `now`: nothing in flight, and it
    /// has sent a query or is out of its [`GRACE`].
    fn evictable(&self, now: Instant) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && (self.sent.load(Ordering::Relaxed)
                || now.saturating_duration_since(self.admitted) >= GRACE)
    }
}

impl TcpSlots {
    /// Slots for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(TcpSlots {
            max: max.max(1),
            open: Mutex::new(OpenConnections::default()),
            freed: Notify::new(),
            clock: AtomicU64::new(0),
        })
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// A slot for a connection just accepted: a free one, else the slot of the open
    /// connection idle the longest among those that may be closed ([`Activity::evictable`]),
    /// which is told to close. Waits while none may.
    pub async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            tokio::select! {
                () = self.freed.notified() => {}
                () = tokio::time::sleep(BUSY_RECHECK) => {}
            }
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        // A panic elsewhere while the table was held leaves it consistent (each change is one
        // map operation), so a poisoned lock is used as it is.
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.by_id.len() >= self.max {
            let now = Instant::now();
            let idlest = open
                .by_id
                .iter()
                .filter(|(_, activity)| activity.evictable(now))
                .min_by_key(|(_, activity)| activity.last_active.load(Ordering::Relaxed))
                .map(|(&id, _)| id)?;
            if let Some(evicted) = open.by_id.remove(&idlest) {
                debug!("every TCP slot is taken: closing the connection idle the longest");
                evicted.evict.notify_one();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.tick()),
            sent: AtomicBool::new(false),
            admitted: Instant::now(),
            evict: Notify::new(),
        });
        open.by_id.insert(id, Arc::clone(&activity));
        Some(Slot {
            slots: Arc::clone(self),
            id,
            activity,
        })
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    pub fn open_connections(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_id
            .len()
    }
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<TcpSlots>,
    id: u64,
    activity: Arc<Activity>,
}

impl Slot {
    /// The connection received a query or finished one: it is not idle.
    pub fn touch(&self) {
        self.activity.sent.store(true, Ordering::Relaxed);
        self.activity
            .last_active
            .store(self.slots.tick(), Ordering::Relaxed);
    }

    /// A query of the connection starts waiting for an upstream; until the returned guard is
    /// dropped the connection is not evicted.
    pub fn query_in_flight(&self) -> InFlight {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            slots: Arc::clone(&self.slots),
            activity: Arc::clone(&self.activity),
        }
    }

    /// Completes when another connection took this one's slot.
    pub async fn evicted(&self) {
        self.activity.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_id
            .remove(&self.id);
        self.slots.freed.notify_one();
    }
}

/// A query waiting for an upstream (see [`Slot::query_in_flight`]).
#[derive(Debug)]
pub struct InFlight {
    slots: Arc<TcpSlots>,
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .last_active
            .store(self.slots.tick(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_takes_the_slot_idle_the_longest() {
        let slots = TcpSlots::new(3);
        let first = slots.admit().await;
        let second = slots.admit().await;
        let third = slots.admit().await;
        for slot in [&first, &second, &third] {
            slot.touch();
        }
        // The first is the oldest, but it just received another query: the second is idlest.
        first.touch();
        let fourth = slots.admit().await;
        assert_eq!(slots.open_connections(), 3);
        assert_evicted(&second).await;
        assert_not_evicted(&first).await;
        assert_not_evicted(&third).await;
        drop(fourth);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_keeps_its_slot_for_the_grace_period() {
        let slots = TcpSlots::new(2);
        let silent = slots.admit().await;
        let served = slots.admit().await;
        served.touch();
        // The silent one is older, but within its grace: the served one goes.
        let _third = slots.admit().await;
        assert_evicted(&served).await;
        assert_not_evicted(&silent).await;
        // Every slot now silent and young: the next connection waits out the grace.
        let admitting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.admit().await }
        });
        tokio::time::advance(GRACE / 2).await;
        assert!(!admitting.is_finished(), "no slot within the grace");
        tokio::time::advance(GRACE).await;
        let _admitted = admitting.await.expect("admitted after the grace");
        assert_evicted(&silent).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_a_query_in_flight_is_never_evicted() {
        let slots = TcpSlots::new(2);
        let busy = slots.admit().await;
        busy.touch();
        let waiting = busy.query_in_flight();
        let idle = slots.admit().await;
        idle.touch();
        let newer = slots.admit().await;
        newer.touch();
        assert_evicted(&idle).await;
        assert_not_evicted(&busy).await;
        // Every slot busy: the next connection waits until one goes idle.
        let _newer_waiting = newer.query_in_flight();
        let admitting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.admit().await }
        });
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(
            !admitting.is_finished(),
            "no slot while every connection is busy"
        );
        drop(waiting);
        let _admitted = admitting
            .await
            .expect("admitted once a connection went idle");
        assert_evicted(&busy).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_frees_its_slot_for_a_waiting_one() {
        let slots = TcpSlots::new(1);
        let only = slots.admit().await;
        let waiting = only.query_in_flight();
        let admitting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.admit().await }
        });
        tokio::task::yield_now().await;
        assert!(!admitting.is_finished());
        drop(waiting);
        drop(only);
        let _admitted = admitting.await.expect("admitted");
        assert_eq!(slots.open_connections(), 1);
    }

    async fn assert_evicted(slot: &Slot) {
        tokio::time::timeout(Duration::from_millis(1), slot.evicted())
            .await
            .expect("told to close");
    }

    async fn assert_not_evicted(slot: &Slot) {
        assert!(
            tokio::time::timeout(Duration::from_millis(1), slot.evicted())
                .await
                .is_err(),
            "not told to close"
        );
    }
}
