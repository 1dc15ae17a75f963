//! The connection slots of the TCP listeners: how many connections are served at once, who
//! gives up a slot when they are all taken, and where connections wait that have not said
//! anything yet.
//!
//! A connection gets no slot until its first bytes arrive. Until then it waits in the
//! [`WaitingRoom`], which holds several times as many connections as there are slots and, when
//! full, closes the one that has waited the longest. So a local process that opens idle
//! connections and re-opens every one the server closes (a loop of `connect`) never holds a
//! slot, and never sits in the kernel's accept queue ahead of a client: the accept loop takes
//! every connection at once, and a client that sends its query right after connecting (as
//! every resolver does) is read within the time the holder needs to open a room's worth of
//! connections after it; a holder with fewer connections than the room holds closes nothing.
//!
//! A connection whose bytes arrived takes a free slot or, when every slot is taken, evicts the
//! open connection that has been idle the longest, one with no query in flight (RFC 7766
//! §6.2.3 lets a server close idle connections under pressure; Knot does the same). A
//! connection that has not sent a whole query yet is spared for a short grace ([`GRACE`]), so
//! one that trickles bytes cannot close a client's before its query is read. Only when no open
//! connection may be closed (each has a query in flight, or is in its grace) does a talking
//! connection wait, until a slot frees or one may.

use std::collections::{HashMap, VecDeque};
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

/// How many connections that have not sent anything yet the [`WaitingRoom`] holds per slot:
/// enough that a holder must open several times the slot count before it closes a client's
/// connection, few enough that they stay inside the usual descriptor limits.
pub const WAITING_PER_SLOT: usize = 4;

/// The connections accepted that have not sent anything yet (they hold no slot): bounded, and
/// when full the one that has waited the longest is told to close for a new one.
#[derive(Debug)]
pub struct WaitingRoom {
    max: usize,
    /// The waiting connections, the one waiting the longest first.
    queue: Mutex<VecDeque<(u64, Arc<SeatState>)>>,
    next_id: AtomicU64,
}

impl WaitingRoom {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(WaitingRoom {
            max: max.max(1),
            queue: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a connection just accepted; when the room is full, the connection that has
    /// been silent the longest is told to close (one that already sent its first bytes and
    /// waits for a slot only when every other has spoken too). Never waits.
    pub fn enter(self: &Arc<Self>) -> Seat {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SeatState::default());
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while queue.len() >= self.max {
            let silent = queue
                .iter()
                .position(|(_, seat)| !seat.spoken.load(Ordering::Relaxed));
            let Some((_, oldest)) = queue.remove(silent.unwrap_or(0)) else {
                break;
            };
            debug!("the TCP waiting room is full: closing the connection silent the longest");
            // A permit is kept if its connection is not waiting for it yet.
            oldest.evict.notify_one();
        }
        queue.push_back((id, Arc::clone(&state)));
        Seat {
            room: Arc::clone(self),
            id,
            state,
        }
    }

    /// Connections waiting now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// What a seat's connection has done, as the room sees it.
#[derive(Debug, Default)]
struct SeatState {
    /// Told to close when a newer connection needs the place.
    evict: Notify,
    /// The connection sent its first bytes: it is a client, not a silent holder.
    spoken: AtomicBool,
}

/// One connection's place in the [`WaitingRoom`]; dropping it leaves the room.
#[derive(Debug)]
pub struct Seat {
    room: Arc<WaitingRoom>,
    id: u64,
    state: Arc<SeatState>,
}

impl Seat {
    /// Completes when a newer connection took this one's place.
    pub async fn evicted(&self) {
        self.state.evict.notified().await;
    }

    /// Marks the connection as one that sent its first bytes: a full room closes every silent
    /// one before it.
    pub fn spoke(&self) {
        self.state.spoken.store(true, Ordering::Relaxed);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut queue = self
            .room
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Usually the front or near it: connections leave roughly in the order they came.
        if let Some(index) = queue.iter().position(|(id, _)| *id == self.id) {
            queue.remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_waiting_room_closes_the_connection_waiting_the_longest() {
        let room = WaitingRoom::new(2);
        let first = room.enter();
        let second = room.enter();
        assert_eq!(room.waiting(), 2);
        let third = room.enter();
        assert_eq!(room.waiting(), 2);
        assert_told_to_close(first.evicted()).await;
        assert_not_told(second.evicted()).await;
        // One that leaves (it spoke, or closed) frees its place: the next closes nobody.
        drop(second);
        let fourth = room.enter();
        assert_not_told(third.evicted()).await;
        assert_not_told(fourth.evicted()).await;
        // A connection that spoke and waits for a slot goes after every silent one.
        third.spoke();
        let fifth = room.enter();
        assert_not_told(third.evicted()).await;
        assert_told_to_close(fourth.evicted()).await;
        let sixth = room.enter();
        assert_told_to_close(fifth.evicted()).await;
        assert_not_told(third.evicted()).await;
        sixth.spoke();
        let _seventh = room.enter();
        assert_told_to_close(third.evicted()).await;
        assert_not_told(sixth.evicted()).await;
        drop(first);
        assert_eq!(room.waiting(), 2);
    }

    async fn assert_told_to_close(evicted: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_millis(50), evicted)
            .await
            .expect("told to close");
    }

    async fn assert_not_told(evicted: impl Future<Output = ()>) {
        assert!(
            tokio::time::timeout(Duration::from_millis(5), evicted)
                .await
                .is_err(),
            "not told to close"
        );
    }

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
