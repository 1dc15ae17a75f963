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
//! table has changed since it was made: both count their changes ([`SharedSnapshot::changes`],
//! [`HealthTable::changes`]), the counts are read *before* the general path runs, and a memo
//! carries the counts it was made under. Answers from upstreams are memoised only when they
//! came from the forwarding cache: such a memo also keeps when the cache stored the answer, how
//! long the cache keeps it and where the reply's TTLs are, and on each hit lowers the TTLs by
//! the answer's age in whole seconds, as the cache does ([`crate::dns::forward::cache::AnswerCache::lookup`]),
//! and misses once the cache's entry has expired. The cache counts its changes too (answers
//! stored, which may evict others, expired ones dropped, clears), and a memoised cached answer
//! is valid only while that count is unchanged, so it is always the entry the cache holds;
//! answers from the zones ignore that count. Answers straight from an upstream and unparsable
//! packets are never memoised.
//!
//! The memo is a table of up to [`MEMO_SLOTS`] slots (it starts at 1,024 and doubles whenever the
//! keys it has stored number a quarter of its slots), four-way set associative: a query's hash
//! picks a set of four slots, and a new answer takes an empty one, else one made in an older
//! state, else the four in turn. A separate array of tags (the keys' hashes) lets a look-up
//! read one cache line of tags and then only the slot whose tag matches.
//! Bounded memory whatever arrives (at most about 4 MB of slots, and for each used one the query and
//! reply bytes, a few hundred bytes), no eviction bookkeeping, and a miss only
//! costs the general path. Names are compared byte for byte, case included, so a client that
//! randomises case (DNS 0x20) misses and gets the general path.
//!
//! [`SharedSnapshot::changes`]: crate::dns::snapshot::SharedSnapshot::changes
//! [`HealthTable::changes`]: crate::health::HealthTable::changes

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::dns::answer::Transport;
use crate::metrics::ResponseKind;

/// How many answers one memo holds at most (a power of two).
pub const MEMO_SLOTS: usize = 1 << 16;
/// Queries longer than this are not memoised (ordinary ones are well under 100 bytes).
const MAX_KEY_LEN: usize = 512;
/// The message ID: the only bytes of a query that its memo key leaves out.
const ID_LEN: usize = 2;

/// The state an answer was computed under. Equal states give equal answers for equal query bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerState {
    /// [`crate::dns::snapshot::SharedSnapshot::changes`] before the answer was computed.
    pub snapshot_changes: u64,
    /// [`crate::health::HealthTable::changes`] before the answer was computed.
    pub health_changes: u64,
    /// UDP or TCP (the size limit).
    pub transport: Transport,
    /// Whether names outside the zones are forwarded for the client (RA, REFUSED).
    pub may_forward: bool,
    /// [`crate::dns::forward::Forwarder::cache_changes`] before the answer was computed. Only
    /// answers from the cache depend on it: the others ignore it.
    pub cache_changes: u64,
}

/// When an answer came from the forwarding cache: the times the memo ages its copy by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheAging {
    /// When the cache stored the answer.
    pub stored: Instant,
    /// How long after `stored` the cache's entry expires.
    pub lifetime: Duration,
    /// Whole seconds the reply's TTLs were already lowered by.
    pub age: u32,
}

/// What the metrics need to count a memoised answer as the general path would.
#[derive(Debug, Clone, Copy)]
pub struct MemoCounts {
    /// The question's type, when it had one.
    pub query_type: Option<RecordType>,
    /// How the query was answered.
    pub outcome: ResponseKind,
    /// Set when the answer came from the forwarding cache.
    pub aging: Option<CacheAging>,
}

/// A memoised cached answer's clock: when it expires and which TTLs to lower.
#[derive(Debug)]
struct Aging {
    stored: Instant,
    lifetime: Duration,
    /// Each TTL field of the reply: its offset, and its value at age 0.
    ttls: Box<[(usize, u32)]>,
}

/// One memoised answer. Kept inline in its slot, with the key and reply in one allocation, so
/// that a hit reads two places in memory: the slot and the bytes.
#[derive(Debug)]
struct Memo {
    state: AnswerState,
    counts: MemoCounts,
    /// How many of `bytes` are the key.
    key_len: usize,
    /// The query's bytes after the ID, then the reply the general path produced.
    bytes: Box<[u8]>,
    /// Set for an answer from the forwarding cache.
    aging: Option<Box<Aging>>,
}

impl Memo {
    fn key(&self) -> &[u8] {
        self.bytes.get(..self.key_len).unwrap_or_default()
    }

    fn reply(&self) -> &[u8] {
        self.bytes.get(self.key_len..).unwrap_or_default()
    }

    /// Whether this answer is the one the general path would give in `state`: made in the same
    /// state, the cache's count of changes compared only for an answer from the cache.
    fn valid_in(&self, state: &AnswerState) -> bool {
        let mut made_in = self.state;
        if self.aging.is_none() {
            made_in.cache_changes = state.cache_changes;
        }
        made_in == *state
    }
}

/// A bounded memo of answers, owned by one receive loop (no locks; not shared).
#[derive(Debug)]
pub struct AnswerMemo {
    /// Per slot, the hash of its key with the low bit set, or 0 when the slot is empty: a set's
    /// four tags share a cache line, so a look-up reads one slot only when a tag matches.
    tags: Vec<u64>,
    slots: Vec<Option<Memo>>,
    /// The most slots the table may grow to.
    max_slots: usize,
    /// Answers stored for new keys (not replacing the same key), ever.
    new_keys: usize,
    hasher: foldhash::fast::RandomState,
    /// Queries answered from the memo.
    hits: u64,
    /// Which slot of a full set the next eviction takes.
    turn: usize,
}

impl Default for AnswerMemo {
    fn default() -> Self {
        Self::new()
    }
}

/// Slots a memo starts with; it doubles (up to its maximum) whenever it has stored, in all, new
/// keys for a quarter of its slots (few sets are then full, so few answers are lost to
/// collisions), and a socket that sees few distinct queries keeps a small table.
const INITIAL_SLOTS: usize = 1 << 10;
/// Slots per set: a key may live in any of the four slots of the set its hash picks.
const WAYS: usize = 4;

/// A key's tag: its hash, never 0 (0 marks an empty slot).
fn tag_of(hash: u64) -> u64 {
    hash | 1
}

impl AnswerMemo {
    /// An empty memo of up to [`MEMO_SLOTS`] slots.
    pub fn new() -> Self {
        Self::with_slots(MEMO_SLOTS)
    }

    /// An empty memo of up to `slots` slots, rounded up to a power of two (at least one set).
    pub fn with_slots(slots: usize) -> Self {
        let max_slots = slots.max(WAYS).next_power_of_two();
        let size = max_slots.min(INITIAL_SLOTS);
        AnswerMemo {
            tags: vec![0; size],
            slots: empty_slots(size),
            max_slots,
            new_keys: 0,
            hasher: foldhash::fast::RandomState::default(),
            hits: 0,
            turn: 0,
        }
    }

    /// How many slots the table has now.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Doubles the table (when under its maximum) and puts every answer back in its set of the
    /// larger table; an answer whose new set is already full is dropped.
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        if size > self.max_slots {
            return;
        }
        let old_tags = std::mem::replace(&mut self.tags, vec![0; size]);
        let old_slots = std::mem::replace(&mut self.slots, empty_slots(size));
        for (tag, memo) in old_tags.into_iter().zip(old_slots) {
            let Some(memo) = memo else { continue };
            let Some(free) = set_of(tag, size).find(|&index| self.tags.get(index) == Some(&0))
            else {
                continue;
            };
            if let (Some(slot_tag), Some(slot)) =
                (self.tags.get_mut(free), self.slots.get_mut(free))
            {
                *slot_tag = tag;
                *slot = Some(memo);
            }
        }
    }

    /// The memo key of `packet` (its bytes after the ID), when it can have one: not when a
    /// compression pointer may point at the ID (see [`may_point_at_the_id`]).
    fn key(packet: &[u8]) -> Option<&[u8]> {
        packet
            .get(ID_LEN..)
            .filter(|key| key.len() <= MAX_KEY_LEN && !may_point_at_the_id(key))
    }

    /// The slot holding `key` (whose tag is `tag`), if any.
    fn find(&self, key: &[u8], tag: u64) -> Option<usize> {
        set_of(tag, self.slots.len()).find(|&index| {
            self.tags.get(index) == Some(&tag)
                && self
                    .slots
                    .get(index)
                    .and_then(Option::as_ref)
                    .is_some_and(|memo| memo.key() == key)
        })
    }

    /// The memoised reply to `packet` under `state`, with `packet`'s ID, appended to `reply`;
    /// `None` (and `reply` untouched) when there is none.
    ///
    /// `now` matters only for answers from the forwarding cache: their TTLs are lowered by
    /// their age at `now`, and past the cache entry's lifetime there is no answer.
    pub fn answer(
        &mut self,
        packet: &[u8],
        state: &AnswerState,
        now: Instant,
        reply: &mut Vec<u8>,
    ) -> Option<MemoCounts> {
        let key = Self::key(packet)?;
        let tag = tag_of(self.hasher.hash_one(key));
        let memo = self.slots.get(self.find(key, tag)?)?.as_ref()?;
        if !memo.valid_in(state) {
            return None;
        }
        let age = match &memo.aging {
            None => None,
            Some(aging) => {
                let elapsed = now.saturating_duration_since(aging.stored);
                if elapsed >= aging.lifetime {
                    return None;
                }
                Some(u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX))
            }
        };
        let (id, rest) = (packet.get(..ID_LEN)?, memo.reply().get(ID_LEN..)?);
        let start = reply.len();
        reply.extend_from_slice(id);
        reply.extend_from_slice(rest);
        if let (Some(aging), Some(age)) = (&memo.aging, age) {
            for &(offset, original) in aging.ttls.iter() {
                if let Some(field) = reply.get_mut(start + offset..start + offset + 4) {
                    field.copy_from_slice(&original.saturating_sub(age).to_be_bytes());
                }
            }
        }
        let counts = memo.counts;
        self.hits += 1;
        Some(counts)
    }

    /// Keeps `reply`, the general path's answer to `packet` under `state`: in the slot of the
    /// set that holds the same key, else an empty one, else one made under another state, else
    /// the set's slots in turn.
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
        let aging = match counts.aging {
            None => None,
            Some(cached) => match cache_aging(reply, cached) {
                Some(aging) => Some(Box::new(aging)),
                None => return,
            },
        };
        if self.new_keys * 4 >= self.slots.len() {
            self.grow();
        }
        let tag = tag_of(self.hasher.hash_one(key));
        let index = match self.find(key, tag) {
            Some(same_key) => same_key,
            None => {
                self.new_keys += 1;
                let mut set = set_of(tag, self.slots.len());
                let empty = set.clone().find(|&i| self.tags.get(i) == Some(&0));
                let stale = set.clone().find(|&i| {
                    self.slots
                        .get(i)
                        .and_then(Option::as_ref)
                        .is_some_and(|memo| !memo.valid_in(&state))
                });
                self.turn = (self.turn + 1) % WAYS;
                match empty.or(stale).or_else(|| set.nth(self.turn)) {
                    Some(index) => index,
                    None => return,
                }
            }
        };
        let mut bytes = Vec::with_capacity(key.len() + reply.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(reply);
        if let (Some(slot_tag), Some(slot)) = (self.tags.get_mut(index), self.slots.get_mut(index))
        {
            *slot_tag = tag;
            *slot = Some(Memo {
                state,
                counts,
                key_len: key.len(),
                bytes: bytes.into_boxed_slice(),
                aging,
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

/// The clock of a reply from the forwarding cache, encoded with its TTLs lowered by
/// `cached.age`: every record's TTL field with its value at age 0. `None` when the reply does
/// not walk as a DNS message, or a TTL is already 0 (its value at age 0 is then unknown).
fn cache_aging(reply: &[u8], cached: CacheAging) -> Option<Aging> {
    let ttls = record_ttl_offsets(reply)?
        .into_iter()
        .map(|offset| {
            let field: [u8; 4] = reply.get(offset..offset + 4)?.try_into().ok()?;
            let ttl = u32::from_be_bytes(field);
            let original = ttl.checked_add(cached.age)?;
            (ttl > 0).then_some((offset, original))
        })
        .collect::<Option<Box<[_]>>>()?;
    Some(Aging {
        stored: cached.stored,
        lifetime: cached.lifetime,
        ttls,
    })
}

/// The record type of the EDNS OPT pseudo-record, whose TTL field holds flags.
const OPT: u16 = 41;

/// The offsets of the TTL fields of the records in `message` (a whole DNS message), leaving out
/// the OPT record of the additional section. `None` when it does not walk to its end exactly,
/// or has more than one OPT there.
///
/// A walk over bytes rather than hickory's `BinDecoder`: it runs once when a cached answer is
/// memoised (never per hit), it needs only to skip names, never to read them, and its result is
/// byte offsets, which hickory's record decoding does not report; the decoder would parse every
/// name and record only to throw them away. The message was just encoded by hickory, and a
/// message that does not walk exactly is simply not memoised (the general path answers).
fn record_ttl_offsets(message: &[u8]) -> Option<Vec<usize>> {
    let count = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *message.get(at)?,
            *message.get(at + 1)?,
        ])))
    };
    let questions = count(4)?;
    let (answers, authorities, additionals) = (count(6)?, count(8)?, count(10)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut offsets = Vec::with_capacity(answers + authorities + additionals);
    let mut opts = 0;
    for index in 0..answers + authorities + additionals {
        at = skip_name(message, at)?;
        let record_type = count(at)?;
        let length = count(at + 8)?;
        if record_type == usize::from(OPT) && index >= answers + authorities {
            opts += 1;
        } else {
            offsets.push(at + 4);
        }
        at += 10 + length;
    }
    (at == message.len() && opts <= 1).then_some(offsets)
}

/// Where the name that starts at `at` ends (labels up to the root or a compression pointer).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        match length & 0xC0 {
            0xC0 => {
                message.get(at + 1)?;
                return Some(at + 2);
            }
            0 if length == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(length),
            _ => return None,
        }
    }
}

/// `size` empty slots.
fn empty_slots(size: usize) -> Vec<Option<Memo>> {
    std::iter::repeat_with(|| None).take(size).collect()
}

/// The slots of the set for `tag` in a table of `size` slots (a power of two, at least
/// [`WAYS`]).
fn set_of(tag: u64, size: usize) -> std::ops::Range<usize> {
    // The mask keeps the index within the table; truncating the hash on 32-bit targets only
    // drops bits the mask would drop.
    let first = (tag as usize) & (size - 1) & !(WAYS - 1);
    first..first + WAYS
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
mod tests {
    use super::*;

    fn state(health_changes: u64) -> AnswerState {
        AnswerState {
            snapshot_changes: 0,
            health_changes,
            transport: Transport::Udp,
            may_forward: false,
            cache_changes: 0,
        }
    }

    const COUNTS: MemoCounts = MemoCounts {
        query_type: Some(RecordType::A),
        outcome: ResponseKind::Answer,
        aging: None,
    };

    #[test]
    fn a_memo_answers_with_the_new_id_and_only_in_the_same_state() {
        let mut memo = AnswerMemo::with_slots(8);
        let query = [0x12, 0x34, 1, 2, 3];
        memo.remember(&query, state(7), COUNTS, &[0x12, 0x34, 9, 9]);
        let mut reply = Vec::new();
        let other_id = [0xab, 0xcd, 1, 2, 3];
        assert!(
            memo.answer(&other_id, &state(7), Instant::now(), &mut reply)
                .is_some()
        );
        assert_eq!(reply, [0xab, 0xcd, 9, 9]);

        let mut untouched = Vec::new();
        assert!(
            memo.answer(&other_id, &state(8), Instant::now(), &mut untouched)
                .is_none()
        );
        let other_bytes = [0xab, 0xcd, 1, 2, 4];
        assert!(
            memo.answer(&other_bytes, &state(7), Instant::now(), &mut untouched)
                .is_none()
        );
        let mut tcp = state(7);
        tcp.transport = Transport::Tcp;
        assert!(
            memo.answer(&other_id, &tcp, Instant::now(), &mut untouched)
                .is_none()
        );
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
    fn the_table_grows_with_use_up_to_its_bound_and_keeps_its_answers() {
        let query = |n: u16| {
            let [high, low] = n.to_be_bytes();
            [0, 0, high, low, 7]
        };
        let mut memo = AnswerMemo::with_slots(1 << 13);
        assert_eq!(memo.capacity(), INITIAL_SLOTS);
        for n in 0..2_000 {
            memo.remember(&query(n), state(0), COUNTS, &[0, 0, 1]);
        }
        // 256, 512 and 1,024 keys stored: a quarter of 1,024, 2,048 and 4,096 slots.
        assert_eq!(memo.capacity(), 8 * INITIAL_SLOTS, "grown for 2,000 keys");
        let mut reply = Vec::new();
        let kept = (0..2_000)
            .filter(|&n| {
                memo.answer(&query(n), &state(0), Instant::now(), &mut reply)
                    .is_some()
            })
            .count();
        // Full sets lose a few answers to collisions; most are kept across the doublings.
        assert!(kept > 1_950, "{kept} of 2000 kept");
        assert_eq!(memo.len(), kept);
        for n in 0..30_000 {
            memo.remember(&query(n), state(0), COUNTS, &[0, 0, 1]);
        }
        assert_eq!(memo.capacity(), 1 << 13, "grown to the bound, not past it");
    }

    #[test]
    fn the_ttl_walk_finds_every_record_but_the_opt_and_refuses_what_does_not_walk() {
        use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{Name, RData, Record};
        let name = Name::from_ascii("www.example.").expect("literal");
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message
            .queries
            .push(Query::query(name.clone(), RecordType::A));
        for (ttl, last) in [(300, 1), (299, 2)] {
            let data = RData::A(A::new(192, 0, 2, last));
            message
                .answers
                .push(Record::from_rdata(name.clone(), ttl, data));
        }
        let glue = Name::from_ascii("ns.example.").expect("literal");
        let data = RData::A(A::new(192, 0, 2, 53));
        message.additionals.push(Record::from_rdata(glue, 7, data));
        message.edns = Some(Edns::new());
        let bytes = message.to_vec().expect("encodes");
        let offsets = record_ttl_offsets(&bytes).expect("walks");
        let ttls: Vec<u32> = offsets
            .iter()
            .map(|&at| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")))
            .collect();
        assert_eq!(ttls, [300, 299, 7], "the OPT's flags are not a TTL");
        assert_eq!(
            record_ttl_offsets(&bytes[..bytes.len() - 1]),
            None,
            "cut short"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            record_ttl_offsets(&longer),
            None,
            "bytes after the last record"
        );
    }

    #[test]
    fn a_cached_answer_is_patched_where_it_lands_in_the_reply_buffer() {
        let stored = Instant::now();
        let counts = MemoCounts {
            aging: Some(CacheAging {
                stored,
                lifetime: Duration::from_secs(60),
                age: 0,
            }),
            ..COUNTS
        };
        // A reply with one record, TTL 30: header, root question, root A record.
        let reply = [
            0, 9, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 30, 0,
            4, 192, 0, 2, 1,
        ];
        let query = [0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        let mut memo = AnswerMemo::with_slots(8);
        memo.remember(&query, state(0), counts, &reply);
        let mut buffer = vec![0xEE; 3];
        let later = stored + Duration::from_secs(10);
        assert!(memo.answer(&query, &state(0), later, &mut buffer).is_some());
        assert_eq!(
            buffer.get(..3),
            Some(&[0xEE; 3][..]),
            "what was there stays"
        );
        assert_eq!(
            buffer.get(3 + 22..3 + 26),
            Some(&[0, 0, 0, 20][..]),
            "30 - 10 s"
        );
        let expired = stored + Duration::from_secs(60);
        assert!(
            memo.answer(&query, &state(0), expired, &mut buffer)
                .is_none()
        );
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
