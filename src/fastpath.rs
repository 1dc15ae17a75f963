//! The query fast path: a memo of encoded answers, one per receive loop. The general path
//! (parse with hickory → zone → policy → health order → encode) runs once per distinct query;
//! its reply bytes are kept, keyed by the query's bytes after the message ID, and later queries
//! with the same bytes get a copy with their own ID written in.
//!
//! Why that is the same answer: a reply the general path builds for a name we own depends on
//! nothing but the query's bytes, the snapshot, the health table, the transport and whether we
//! forward for the client (the RA bit, REFUSED). The message ID is copied into the first two
//! bytes and appears nowhere else — unless a name in the query is a compression pointer into
//! the ID, so such queries are never memoised. So a memo is used only when its key bytes are equal, the
//! transport and forwarding permission are the same, and neither the snapshot nor the health
//! table has changed since it was made: both count their changes ([`SharedSnapshot::generation`],
//! [`HealthTable::generation`]), the counts are read *before* the general path runs, and a memo
//! carries the counts it was made under. Forwarded answers (their TTLs age), cached upstream
//! answers and unparsable packets are never memoised.
//!
//! The memo is a table of [`MEMO_SLOTS`] slots, two-way set associative: a query's hash picks a
//! pair of slots, and a new answer takes an empty one, else one made in an older state, else the
//! two in turn.
//! Bounded memory whatever arrives (about 4 MB of slots, and for each used one the query and
//! reply bytes, a few hundred bytes), no eviction bookkeeping, and a miss only
//! costs the general path. Names are compared byte for byte, case included, so a client that
//! randomises case (DNS 0x20) misses and gets the general path.
//!
//! [`SharedSnapshot::generation`]: crate::snapshot::SharedSnapshot::generation
//! [`HealthTable::generation`]: crate::health::HealthTable::generation

use std::hash::BuildHasher;

use hickory_proto::rr::RecordType;

use crate::answer::Transport;
use crate::metrics::QueryOutcome;

/// How many answers one memo holds at most (a power of two).
pub const MEMO_SLOTS: usize = 1 << 16;
/// Queries longer than this are not memoised (ordinary ones are well under 100 bytes).
const MAX_KEY_LEN: usize = 512;
/// The message ID: the only bytes of a query that its memo key leaves out.
const ID_LEN: usize = 2;

/// The state an answer was computed under. Equal states give equal answers for equal query bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerState {
    /// [`crate::snapshot::SharedSnapshot::generation`] before the answer was computed.
    pub snapshot_generation: u64,
    /// [`crate::health::HealthTable::generation`] before the answer was computed.
    pub health_generation: u64,
    /// UDP or TCP (the size limit).
    pub transport: Transport,
    /// Whether names outside the zones are forwarded for the client (RA, REFUSED).
    pub may_forward: bool,
}

/// What the metrics need to count a memoised answer as the general path would.
#[derive(Debug, Clone, Copy)]
pub struct MemoCounts {
    /// The question's type, when it had one.
    pub query_type: Option<RecordType>,
    /// How the query was answered.
    pub outcome: QueryOutcome,
}

/// One memoised answer. Kept inline in its slot, with the key and reply in one allocation, so
/// that a hit reads two places in memory: the slot and the bytes.
#[derive(Debug)]
struct Memo {
    state: AnswerState,
    counts: MemoCounts,
    /// The key's hash (compared before the key itself).
    hash: u64,
    /// How many of `bytes` are the key.
    key_len: usize,
    /// The query's bytes after the ID, then the reply the general path produced.
    bytes: Box<[u8]>,
}

impl Memo {
    fn key(&self) -> &[u8] {
        self.bytes.get(..self.key_len).unwrap_or_default()
    }

    fn reply(&self) -> &[u8] {
        self.bytes.get(self.key_len..).unwrap_or_default()
    }
}

/// A bounded memo of answers, owned by one receive loop (no locks; not shared).
#[derive(Debug)]
pub struct AnswerMemo {
    slots: Vec<Option<Memo>>,
    hasher: foldhash::fast::RandomState,
    /// Queries answered from the memo.
    hits: u64,
    /// Which slot of a full pair the next eviction takes.
    turn: bool,
}

impl Default for AnswerMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerMemo {
    /// An empty memo of [`MEMO_SLOTS`] slots.
    pub fn new() -> Self {
        Self::with_slots(MEMO_SLOTS)
    }

    /// An empty memo of `slots` slots, rounded up to a power of two (at least two).
    pub fn with_slots(slots: usize) -> Self {
        let slots = slots.max(2).next_power_of_two();
        AnswerMemo {
            slots: std::iter::repeat_with(|| None).take(slots).collect(),
            hasher: foldhash::fast::RandomState::default(),
            hits: 0,
            turn: false,
        }
    }

    /// The memo key of `packet` (its bytes after the ID), when it can have one: not when a
    /// compression pointer may point at the ID (see [`may_point_at_the_id`]).
    fn key(packet: &[u8]) -> Option<&[u8]> {
        packet
            .get(ID_LEN..)
            .filter(|key| key.len() <= MAX_KEY_LEN && !may_point_at_the_id(key))
    }

    /// The two slots a key may live in (the memo is two-way set associative: two keys that
    /// hash alike can both stay).
    /// Returns the key's hash too: slots keep it, so a look-up reads a slot's bytes only when
    /// the hashes match.
    fn pair(&self, key: &[u8]) -> (u64, [usize; 2]) {
        // The mask keeps the index within `slots`, whose length is a power of two (≥ 2).
        let hash = self.hasher.hash_one(key);
        let first = (hash as usize) & (self.slots.len() - 1) & !1;
        (hash, [first, first | 1])
    }

    /// The memoised reply to `packet` under `state`, with `packet`'s ID, appended to `reply`;
    /// `None` (and `reply` untouched) when there is none.
    pub fn answer(
        &mut self,
        packet: &[u8],
        state: &AnswerState,
        reply: &mut Vec<u8>,
    ) -> Option<MemoCounts> {
        let key = Self::key(packet)?;
        let (hash, pair) = self.pair(key);
        let memo = pair.into_iter().find_map(|index| {
            self.slots
                .get(index)?
                .as_ref()
                .filter(|memo| memo.hash == hash && memo.key() == key)
        })?;
        if memo.state != *state {
            return None;
        }
        let (id, rest) = (packet.get(..ID_LEN)?, memo.reply().get(ID_LEN..)?);
        reply.extend_from_slice(id);
        reply.extend_from_slice(rest);
        let counts = memo.counts;
        self.hits += 1;
        Some(counts)
    }

    /// Keeps `reply`, the general path's answer to `packet` under `state`: in the slot of the
    /// pair that holds the same key, else an empty one, else one made under another state,
    /// else the two in turn.
    pub fn remember(
        &mut self,
        packet: &[u8],
        state: AnswerState,
        counts: MemoCounts,
        reply: &[u8],
    ) {
        let Some(key) = Self::key(packet) else {
            return;
        };
        if reply.len() < ID_LEN {
            return;
        }
        let (hash, pair) = self.pair(key);
        let rank = |slot: &Option<Memo>| match slot {
            Some(memo) if memo.hash == hash && memo.key() == key => 0,
            None => 1,
            Some(memo) if memo.state != state => 2,
            Some(_) => 3,
        };
        let ranks = pair.map(|index| self.slots.get(index).map_or(u8::MAX, rank));
        let index = if ranks[0] == ranks[1] {
            self.turn = !self.turn;
            pair[usize::from(self.turn)]
        } else if ranks[0] < ranks[1] {
            pair[0]
        } else {
            pair[1]
        };
        if let Some(slot) = self.slots.get_mut(index) {
            let mut bytes = Vec::with_capacity(key.len() + reply.len());
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(reply);
            *slot = Some(Memo {
                state,
                counts,
                hash,
                key_len: key.len(),
                bytes: bytes.into_boxed_slice(),
            });
        }
    }

    /// How many queries the memo has answered.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// How many answers are memoised (for tests and statistics).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_some()).count()
    }

    /// Whether nothing is memoised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `key` (a message after its ID) holds the two bytes of a compression pointer to
/// offset 0 or 1. A name there would be read from the ID, so the same key could be a different
/// query under another ID (the fuzzer found `C0 00` as a question name). Other pointers read
/// only bytes of the key. A false alarm (the bytes inside a label or record data) only means
/// the query goes the general path.
fn may_point_at_the_id(key: &[u8]) -> bool {
    key.windows(2)
        .any(|pair| matches!(pair, [0xC0, 0x00] | [0xC0, 0x01]))
}

#[cfg(test)]
mod equivalence;

#[cfg(test)]
mod tests {
    use super::*;

    fn state(health_generation: u64) -> AnswerState {
        AnswerState {
            snapshot_generation: 0,
            health_generation,
            transport: Transport::Udp,
            may_forward: false,
        }
    }

    const COUNTS: MemoCounts = MemoCounts {
        query_type: Some(RecordType::A),
        outcome: QueryOutcome::Answer,
    };

    #[test]
    fn a_memo_answers_with_the_new_id_and_only_in_the_same_state() {
        let mut memo = AnswerMemo::with_slots(8);
        let query = [0x12, 0x34, 1, 2, 3];
        memo.remember(&query, state(7), COUNTS, &[0x12, 0x34, 9, 9]);
        let mut reply = Vec::new();
        let other_id = [0xab, 0xcd, 1, 2, 3];
        assert!(memo.answer(&other_id, &state(7), &mut reply).is_some());
        assert_eq!(reply, [0xab, 0xcd, 9, 9]);

        let mut untouched = Vec::new();
        assert!(memo.answer(&other_id, &state(8), &mut untouched).is_none());
        let other_bytes = [0xab, 0xcd, 1, 2, 4];
        assert!(
            memo.answer(&other_bytes, &state(7), &mut untouched)
                .is_none()
        );
        let mut tcp = state(7);
        tcp.transport = Transport::Tcp;
        assert!(memo.answer(&other_id, &tcp, &mut untouched).is_none());
        assert!(untouched.is_empty());
    }

    #[test]
    fn a_query_whose_names_may_read_the_id_is_never_memoised() {
        // The fuzzer's find: a question name that is a pointer to offset 0 (the ID).
        let query = [
            8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0, 0, 2, 4, 4, 4, 4,
        ];
        let mut memo = AnswerMemo::with_slots(8);
        memo.remember(&query, state(0), COUNTS, &[8, 0, 9]);
        assert!(memo.is_empty());
        let mut pointer_to_one = query;
        pointer_to_one[13] = 1;
        memo.remember(&pointer_to_one, state(0), COUNTS, &[8, 0, 9]);
        assert!(memo.is_empty());
        // A pointer past the ID (to the question at 12) is fine.
        let mut pointer_to_twelve = query;
        pointer_to_twelve[13] = 12;
        memo.remember(&pointer_to_twelve, state(0), COUNTS, &[8, 0, 9]);
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memo_is_bounded_and_short_or_long_packets_are_not_kept() {
        let mut memo = AnswerMemo::with_slots(4);
        for n in 0..100u8 {
            memo.remember(&[0, 0, n], state(0), COUNTS, &[0, 0, n]);
        }
        assert!(memo.len() <= 4);
        let mut empty = AnswerMemo::with_slots(4);
        empty.remember(&[1], state(0), COUNTS, &[1, 2]);
        empty.remember(&[0u8; MAX_KEY_LEN + ID_LEN + 1], state(0), COUNTS, &[1, 2]);
        assert!(empty.is_empty());
    }
}
