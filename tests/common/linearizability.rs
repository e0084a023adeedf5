//! A linearizability checker for histories of single-register (per-key) operations.
//!
//! A fault test runs concurrent clients against the cluster and records, for every operation,
//! when it was called, when it returned and how it ended (an [`Event`]). [`check`] decides
//! whether some total order of the operations (a *linearization*) exists that
//!
//! 1. respects real time: if `a` returned before `b` was called, `a` comes before `b`; and
//! 2. is legal for a register whose initial value is `None` (missing): every read returns the
//!    value of the latest write before it, or `None` if there is none.
//!
//! Keys are independent registers and linearizability is compositional, so every key's
//! sub-history is checked on its own (in key order; the first failing key is reported).
//!
//! # Time
//!
//! Times are `u64` nanoseconds since an instant chosen by the test, e.g.
//! `start.elapsed().as_nanos() as u64`; only their order matters. Intervals are closed: an
//! operation that returns at the very nanosecond another one is called counts as concurrent
//! with it. A return time of [`NEVER`] means the operation never returned, which is treated
//! exactly like [`Outcome::Unknown`].
//!
//! # Unknown outcomes
//!
//! A write whose outcome is [`Outcome::Unknown`] (error, timeout, connection lost) may or may
//! not have taken effect, at any time after its call: its return time is ignored and taken as
//! +infinity. A read whose outcome is unknown observed nothing and is dropped.
//!
//! # Algorithm
//!
//! First, rejections that need no search and name the operations involved: a read of a value
//! that no write wrote, or that returned before any write of it was called; a read of nil
//! called after some other operation had returned; and two values whose operations must each
//! come before the other. The last rests on this: for a value written once, its write and its
//! reads occupy a contiguous stretch of any linearization, so if an operation on `u` returned
//! before an operation on `v` was called, everything on `u` precedes everything on `v`; any
//! cycle in that order contains such a pair. When every value that was read was written once
//! (tests write unique values), these checks alone are complete.
//!
//! Then Wing & Gong's search with Lowe's memoization, as in Porcupine, which decides any
//! history by itself: the calls and returns of a key's operations form a time-ordered doubly
//! linked list. The search repeatedly takes a pending call (one before the first remaining
//! return) that the register model accepts, lifts its call and return out of the list and
//! pushes it on an explicit stack; when it reaches a return whose operation is not linearized
//! it backtracks. A configuration (set of linearized operations as a bitset, register value)
//! is explored at most once. The history is linearizable once every return has been lifted.
//! Reductions that keep the search exact:
//!
//! - Values that no successful read observed all become one "unobserved" state, and Unknown
//!   writes of such values are dropped (leaving them out changes nothing).
//! - A read of the current value is linearized at once, without branching; so is a write of an
//!   unobserved value once every read of the current value is placed. Any linearization that
//!   places such an operation later can be changed into one that places it now.
//! - A value written once is not overwritten while some of its reads are unplaced, and its
//!   write waits for every unwritten value that must precede it (as above).
//!
//! Values written more than once are handled correctly, just without these shortcuts. The
//! search stops with `timed_out` when the budget runs out, or after a few million
//! configurations to bound memory.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// The return time of an operation that never returned (treated as [`Outcome::Unknown`]).
pub const NEVER: u64 = u64::MAX;

/// An operation on one register (key). Tests should write unique values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Set the register to this value.
    Write(u64),
    /// Read the register: `None` means the key was missing (nil).
    Read(Option<u64>),
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: a write returned OK; a read returned the value carried in [`Op::Read`].
    Ok,
    /// Failed or timed out, so the effect is unknown. A write may or may not have taken effect,
    /// at any time after its call (its return time is ignored). A read is dropped.
    Unknown,
}

/// One recorded operation. `call` and `ret` are nanoseconds since the test's start instant
/// (see the module docs); `ret` is ignored for an Unknown outcome and may be [`NEVER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which client issued the operation (for explanations only).
    pub client: usize,
    /// The register the operation applies to.
    pub key: String,
    pub op: Op,
    pub outcome: Outcome,
    /// When the client sent the request.
    pub call: u64,
    /// When the client got the reply (or gave up).
    pub ret: u64,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True if every key's sub-history is linearizable (never true when `timed_out`).
    pub linearizable: bool,
    /// The first key (in key order) that is not linearizable or could not be decided.
    pub key: Option<String>,
    /// A human-readable summary. For a failing key it names the operations that conflict, or
    /// shows the longest partial linearization found and the operation that could not be
    /// placed after it.
    pub explanation: String,
    /// How many operations were examined (Unknown reads excluded).
    pub ops_checked: usize,
    /// True if the budget ran out before a verdict; `linearizable` is then false.
    pub timed_out: bool,
}

/// Checks every key's sub-history against a register whose initial value is `None`, giving up
/// (with `timed_out: true`) once `budget` has elapsed.
pub fn check(history: &[Event], budget: Duration) -> Verdict {
    check_with(history, budget, true)
}

fn check_with(history: &[Event], budget: Duration, prechecks: bool) -> Verdict {
    let start = Instant::now();
    let deadline = start.checked_add(budget);
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in history {
        by_key.entry(event.key.as_str()).or_default().push(event);
    }
    let mut ops_checked = 0;
    for (key, events) in &by_key {
        let (checked, result) = check_key(events, deadline, prechecks);
        ops_checked += checked;
        let (why, timed_out) = match result {
            KeyResult::Linearizable => continue,
            KeyResult::NotLinearizable(why) => (format!("key {key:?} is not linearizable: {why}"), false),
            KeyResult::TimedOut(why) => (format!("key {key:?}: no verdict (budget {budget:?}): {why}"), true),
        };
        return Verdict {
            linearizable: false,
            key: Some(key.to_string()),
            explanation: why,
            ops_checked,
            timed_out,
        };
    }
    Verdict {
        linearizable: true,
        key: None,
        explanation: format!(
            "linearizable: {ops_checked} operations on {} keys checked in {:?}",
            by_key.len(),
            start.elapsed()
        ),
        ops_checked,
        timed_out: false,
    }
}

enum KeyResult {
    Linearizable,
    NotLinearizable(String),
    TimedOut(String),
}

/// Whether the event's effect is known: acknowledged, and it returned.
fn acknowledged(event: &Event) -> bool {
    event.outcome == Outcome::Ok && event.ret != NEVER
}

fn fmt_time(nanos: u64) -> String {
    if nanos == NEVER {
        "never".to_string()
    } else {
        format!("{}.{:09}s", nanos / 1_000_000_000, nanos % 1_000_000_000)
    }
}

fn fmt_value(value: Option<u64>) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "nil".to_string(),
    }
}

/// E.g. `client 3: read 7 [0.000001000s, 0.000002000s]` or
/// `client 1: write 9 [0.000001000s, unknown outcome]`.
fn describe(event: &Event) -> String {
    let op = match event.op {
        Op::Write(v) => format!("write {v}"),
        Op::Read(v) => format!("read {}", fmt_value(v)),
    };
    let ret = if acknowledged(event) { fmt_time(event.ret) } else { "unknown outcome".to_string() };
    format!("client {}: {op} [{}, {ret}]", event.client, fmt_time(event.call))
}

/// Returns how many operations were examined and the verdict for one key's events.
/// `prechecks: false` leaves every decision to the search (the tests use it to show that the
/// search alone agrees).
fn check_key(events: &[&Event], deadline: Option<Instant>, prechecks: bool) -> (usize, KeyResult) {
    // Unknown reads constrain nothing.
    let mut ops: Vec<&Event> =
        events.iter().copied().filter(|e| matches!(e.op, Op::Write(_)) || acknowledged(e)).collect();
    let checked = ops.len();
    if let Some(bad) = ops.iter().find(|e| acknowledged(e) && e.ret < e.call) {
        let why = format!("malformed event, it returned before it was called: {}", describe(bad));
        return (checked, KeyResult::NotLinearizable(why));
    }
    let observed: HashSet<u64> = ops
        .iter()
        .filter_map(|e| match e.op {
            Op::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    // An Unknown write that nobody observed can always be left out.
    ops.retain(|e| match e.op {
        Op::Write(v) => acknowledged(e) || observed.contains(&v),
        Op::Read(_) => true,
    });
    if prechecks {
        if let Some(why) = precheck(&ops, &observed) {
            return (checked, KeyResult::NotLinearizable(why));
        }
    }
    ops.sort_by_key(|e| (e.call, e.ret));
    (checked, Search::new(&ops, &observed).run(deadline))
}

/// A value's write and reads (or a lone write of a value nobody read). With values written
/// once, a cluster occupies a contiguous stretch of any linearization: after the write, only
/// reads of it can follow until the next write, and the value never comes back.
struct Cluster<'e> {
    label: String,
    /// The acknowledged operation that returned first.
    first_ret: Option<&'e Event>,
    /// The operation that was called last.
    last_call: &'e Event,
}

impl<'e> Cluster<'e> {
    fn new(label: String, e: &'e Event) -> Self {
        Cluster { label, first_ret: acknowledged(e).then_some(e), last_call: e }
    }

    fn add(&mut self, e: &'e Event) {
        if acknowledged(e) && self.first_ret.is_none_or(|f| e.ret < f.ret) {
            self.first_ret = Some(e);
        }
        if e.call > self.last_call.call {
            self.last_call = e;
        }
    }

    fn first_ret_time(&self) -> u64 {
        self.first_ret.map_or(NEVER, |e| e.ret)
    }
}

/// Rejections that need no search, each with a precise explanation (see the module docs).
/// When every value that was read was written once, they are also complete: a history that
/// passes them is linearizable, and the search only has to confirm it.
fn precheck(ops: &[&Event], observed: &HashSet<u64>) -> Option<String> {
    let mut writes: HashMap<u64, Vec<&Event>> = HashMap::new();
    for e in ops {
        if let Op::Write(v) = e.op {
            writes.entry(v).or_default().push(e);
        }
    }
    // A read needs a write of its value called before it returned.
    for e in ops {
        if let Op::Read(Some(v)) = e.op {
            let first = writes.get(&v).and_then(|ws| ws.iter().min_by_key(|w| w.call));
            match first {
                None => return Some(format!("{} observed a value that no write wrote", describe(e))),
                Some(w) if w.call > e.ret => {
                    return Some(format!(
                        "{} returned before any write of {v} was called (the first is {})",
                        describe(e),
                        describe(w)
                    ))
                }
                Some(_) => {}
            }
        }
    }
    // Nothing can be linearized before a read of nil: not a write, and not a read of a value
    // (its write would precede it).
    let last_nil_read = ops.iter().filter(|e| e.op == Op::Read(None)).max_by_key(|e| e.call);
    let first_return = ops.iter().filter(|e| e.op != Op::Read(None) && acknowledged(e)).min_by_key(|e| e.ret);
    if let (Some(r), Some(x)) = (last_nil_read, first_return) {
        if x.ret < r.call {
            return Some(format!(
                "{} saw nil, but {} had returned before it was called",
                describe(r),
                describe(x)
            ));
        }
    }
    // Clusters, for values written once and for writes nobody read.
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut cluster_of: HashMap<u64, usize> = HashMap::new();
    for e in ops {
        match e.op {
            Op::Write(v) if !observed.contains(&v) => {
                clusters.push(Cluster::new(format!("write {v} (never read)"), e));
            }
            Op::Write(v) | Op::Read(Some(v)) if writes[&v].len() == 1 => match cluster_of.get(&v) {
                Some(&c) => clusters[c].add(e),
                None => {
                    cluster_of.insert(v, clusters.len());
                    clusters.push(Cluster::new(format!("value {v}"), e));
                }
            },
            _ => {}
        }
    }
    // If an operation of cluster `u` returned before one of `v` was called, all of `u` comes
    // before all of `v`. That order has a cycle iff two clusters must each precede the other
    // (in a cycle, the member whose first return is earliest and its predecessor form one), so
    // look for `u != v` with u.first_ret < v.last_call and v.first_ret < u.last_call.
    let mut by_first_ret: Vec<usize> = (0..clusters.len()).collect();
    by_first_ret.sort_by_key(|&c| clusters[c].first_ret_time());
    // For each prefix of `by_first_ret`: the two clusters with the latest last call.
    let mut latest: Vec<[Option<usize>; 2]> = Vec::with_capacity(clusters.len() + 1);
    let mut top: [Option<usize>; 2] = [None, None];
    latest.push(top);
    let call_of = |c: Option<usize>| c.map(|c| clusters[c].last_call.call);
    for &c in &by_first_ret {
        let call = clusters[c].last_call.call;
        if call_of(top[0]).is_none_or(|t| call > t) {
            top = [Some(c), top[0]];
        } else if call_of(top[1]).is_none_or(|t| call > t) {
            top[1] = Some(c);
        }
        latest.push(top);
    }
    for (v, cluster) in clusters.iter().enumerate() {
        let before = by_first_ret.partition_point(|&u| clusters[u].first_ret_time() < cluster.last_call.call);
        let [a, b] = latest[before];
        let u = if a == Some(v) { b } else { a };
        let Some(u) = u else { continue };
        let other = &clusters[u];
        if other.last_call.call > cluster.first_ret_time() {
            let (Some(u_ret), Some(v_ret)) = (other.first_ret, cluster.first_ret) else {
                continue;
            };
            return Some(format!(
                "the operations on {} and on {} would each have to come before the other \
                 (a value's write and its reads are contiguous in any linearization): {} \
                 returned before {} was called, and {} returned before {} was called",
                other.label,
                cluster.label,
                describe(u_ret),
                describe(cluster.last_call),
                describe(v_ret),
                describe(other.last_call)
            ));
        }
    }
    None
}

/// Register states: the initial `None`, any value no read observed, or an observed value.
const STATE_NONE: u32 = 0;
const STATE_UNOBSERVED: u32 = 1;

/// An operation as the search sees it, with values mapped to states.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Write(u32),
    Read(u32),
}

/// "No node" in the entry list.
const NIL: usize = usize::MAX;
/// The list's sentinel head node.
const HEAD: usize = 0;

struct Frame {
    /// The call node that was lifted.
    node: usize,
    op: usize,
    /// The register state before the operation.
    prev_state: u32,
    /// Taken without branching: backtracking past it retries nothing.
    forced: bool,
}

/// What the search loop does next.
enum Next {
    /// A new configuration was reached: check for success, then take forced operations.
    Configuration,
    /// Try writes from this node on.
    Scan(usize),
    /// Undo the latest branching choice.
    Backtrack,
}

/// A `Hasher` for keys that are already well-mixed `u64`s.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The configurations visited so far, in an arena (no allocation per configuration). A
/// configuration is a register state plus the linearized set, stored as the bitset words from
/// the first word that is not all ones up to the last non-zero word (operations are numbered
/// in call order, so that window is usually a word or two).
#[derive(Default)]
struct Visited {
    /// Hash of a configuration -> its newest entry.
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    entries: Vec<VisitedEntry>,
    words: Vec<u64>,
}

struct VisitedEntry {
    state: u32,
    first_word: u32,
    /// `words[start..start + len]`.
    start: usize,
    len: u32,
    /// The previous entry with the same hash, or `u32::MAX`.
    next: u32,
}

impl Visited {
    /// Records the configuration unless it was already recorded; returns whether it was new.
    fn insert(&mut self, hash: u64, state: u32, bits: &[u64]) -> bool {
        let first = bits.iter().position(|&w| w != u64::MAX).unwrap_or(bits.len());
        let end = bits.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1).max(first);
        let window = &bits[first..end];
        let head = self.heads.get(&hash).copied().unwrap_or(u32::MAX);
        let mut i = head;
        while i != u32::MAX {
            let e = &self.entries[i as usize];
            if e.state == state
                && e.first_word as usize == first
                && self.words[e.start..e.start + e.len as usize] == *window
            {
                return false;
            }
            i = e.next;
        }
        self.heads.insert(hash, self.entries.len() as u32);
        self.entries.push(VisitedEntry {
            state,
            first_word: first as u32,
            start: self.words.len(),
            len: window.len() as u32,
            next: head,
        });
        self.words.extend_from_slice(window);
        true
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The search gives up (as if out of time) after this many configurations, which bounds its
/// memory to a few hundred megabytes whatever the budget.
const MAX_CONFIGURATIONS: usize = 8_000_000;

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn state_mix(state: u32) -> u64 {
    let mut x = u64::from(state) ^ 0x5851_F42D_4C95_7F2D;
    splitmix64(&mut x)
}

/// The Wing & Gong / Lowe search over one key's operations.
struct Search<'a> {
    ops: &'a [&'a Event],
    steps: Vec<Step>,
    // Per state: whether its reads all sit between one write and the next (the initial value,
    // the unobserved state, and every value written exactly once), and how many of its reads
    // are not linearized yet.
    tracked: Vec<bool>,
    reads_left: Vec<usize>,
    // Per state: the first return and the last call among its write and reads (tracked
    // observed values only), and those states sorted by first return.
    first_ret: Vec<u64>,
    last_call: Vec<u64>,
    by_first_ret: Vec<u32>,
    /// Per tracked state: whether its write is linearized.
    written: Vec<bool>,
    // The entry list: node 0 is the head, then one call node per operation and one return node
    // per operation that must be linearized, ordered by time (calls first on ties).
    next: Vec<usize>,
    prev: Vec<usize>,
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    /// Per operation: its return node, or NIL if it need not be linearized (Unknown write).
    ret_node: Vec<usize>,
    returns_left: usize,
    // The current configuration.
    linearized: Vec<u64>,
    hash: u64,
    state: u32,
    stack: Vec<Frame>,
    zobrist: Vec<u64>,
    visited: Visited,
    // The longest partial linearization seen (operation indices, in order). Its first
    // `best_valid` entries are known to equal the bottom of the stack.
    best: Vec<usize>,
    best_valid: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [&'a Event], observed: &HashSet<u64>) -> Self {
        let mut state_of: HashMap<u64, u32> = HashMap::new();
        let mut state = |value: Option<u64>| match value {
            None => STATE_NONE,
            Some(v) if !observed.contains(&v) => STATE_UNOBSERVED,
            Some(v) => {
                let len = state_of.len() as u32;
                *state_of.entry(v).or_insert(len + 2)
            }
        };
        let steps: Vec<Step> = ops
            .iter()
            .map(|e| match e.op {
                Op::Write(v) => Step::Write(state(Some(v))),
                Op::Read(v) => Step::Read(state(v)),
            })
            .collect();
        let states = state_of.len() + 2;
        let mut writes = vec![0usize; states];
        let mut reads_left = vec![0usize; states];
        let mut first_ret = vec![NEVER; states];
        let mut last_call = vec![0u64; states];
        for (e, step) in ops.iter().zip(&steps) {
            let s = match *step {
                Step::Write(s) => {
                    writes[s as usize] += 1;
                    s as usize
                }
                Step::Read(s) => {
                    reads_left[s as usize] += 1;
                    s as usize
                }
            };
            if acknowledged(e) {
                first_ret[s] = first_ret[s].min(e.ret);
            }
            last_call[s] = last_call[s].max(e.call);
        }
        let tracked: Vec<bool> = (0..states).map(|s| s < 2 || writes[s] == 1).collect();
        let mut by_first_ret: Vec<u32> = (2..states as u32).filter(|&s| tracked[s as usize]).collect();
        by_first_ret.sort_by_key(|&s| first_ret[s as usize]);

        // (time, is_return, op)
        let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, e) in ops.iter().enumerate() {
            entries.push((e.call, false, i));
            if acknowledged(e) {
                entries.push((e.ret, true, i));
            }
        }
        entries.sort_unstable();
        let nodes = entries.len() + 1;
        let mut node_op = vec![NIL; nodes];
        let mut node_is_call = vec![false; nodes];
        let mut ret_node = vec![NIL; ops.len()];
        let mut returns_left = 0;
        for (i, &(_, is_return, op)) in entries.iter().enumerate() {
            let node = i + 1;
            node_op[node] = op;
            node_is_call[node] = !is_return;
            if is_return {
                ret_node[op] = node;
                returns_left += 1;
            }
        }
        let next = (0..nodes).map(|n| if n + 1 < nodes { n + 1 } else { NIL }).collect();
        let prev = (0..nodes).map(|n| if n == 0 { NIL } else { n - 1 }).collect();
        let mut seed = 0x0123_4567_89AB_CDEF;
        let zobrist = (0..ops.len()).map(|_| splitmix64(&mut seed)).collect();
        Search {
            ops,
            steps,
            tracked,
            reads_left,
            first_ret,
            last_call,
            by_first_ret,
            written: vec![false; states],
            next,
            prev,
            node_op,
            node_is_call,
            ret_node,
            returns_left,
            linearized: vec![0; ops.len().div_ceil(64)],
            hash: 0,
            state: STATE_NONE,
            stack: Vec::new(),
            zobrist,
            visited: Visited::default(),
            best: Vec::new(),
            best_valid: 0,
        }
    }

    fn run(mut self, deadline: Option<Instant>) -> KeyResult {
        let mut next = Next::Configuration;
        let mut iterations: u64 = 0;
        loop {
            if iterations.is_multiple_of(1024) {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return KeyResult::TimedOut(format!("out of time; {}", self.explain()));
                }
                if self.visited.len() >= MAX_CONFIGURATIONS {
                    let why = format!("gave up at the limit of {MAX_CONFIGURATIONS} configurations");
                    return KeyResult::TimedOut(format!("{why}; {}", self.explain()));
                }
            }
            iterations += 1;
            next = match next {
                Next::Configuration => {
                    if self.returns_left == 0 {
                        return KeyResult::Linearizable;
                    }
                    self.take_forced()
                }
                Next::Scan(node) => self.scan(node),
                Next::Backtrack => match self.backtrack() {
                    Some(node) => Next::Scan(node),
                    None => return KeyResult::NotLinearizable(self.explain()),
                },
            };
        }
    }

    /// Whether every read of the current value has been linearized, so that the next
    /// operation of any linearization from here is a write (or there is none). Only then may
    /// the value be overwritten: values written once never come back.
    fn value_done(&self) -> bool {
        self.tracked[self.state as usize] && self.reads_left[self.state as usize] == 0
    }

    /// Linearizes, without branching, the pending operations that can never hurt to take now:
    /// reads of the current value, then (once the current value has no reads left) writes of
    /// unobserved values. Any linearization that places such an operation later can be changed
    /// into one that places it now.
    fn take_forced(&mut self) -> Next {
        for reads in [true, false] {
            let mut node = self.next[HEAD];
            while node != NIL && self.node_is_call[node] {
                let op = self.node_op[node];
                let forced = match self.steps[op] {
                    Step::Read(s) => reads && s == self.state,
                    Step::Write(s) => !reads && s == STATE_UNOBSERVED && self.value_done(),
                };
                if !forced {
                    node = self.next[node];
                    continue;
                }
                // The node after this call once it and its return are lifted.
                let mut after = self.next[node];
                if after == self.ret_node[op] {
                    after = self.next[after];
                }
                let new_state = if reads { self.state } else { STATE_UNOBSERVED };
                if !self.visit(op, new_state) {
                    // Taking it leads to an explored, failed configuration; not taking it
                    // cannot do better.
                    return Next::Backtrack;
                }
                self.push(node, op, true);
                self.state = new_state;
                self.lift(node);
                if self.returns_left == 0 {
                    return Next::Configuration;
                }
                node = after;
            }
        }
        Next::Scan(self.next[HEAD])
    }

    /// Tries the pending writes from `node` on; backtracks at the first return.
    fn scan(&mut self, mut node: usize) -> Next {
        let state = self.state as usize;
        if self.tracked[state] && self.reads_left[state] > 0 {
            // Reads of the current value are still to come, and could not be taken now.
            return Next::Backtrack;
        }
        // A value's write and reads are contiguous in any linearization, so if some operation
        // on value `u` returned before one on value `v` was called, all of `u` comes before
        // all of `v`. Find the two not-yet-written values whose operations return first.
        let mut first = [(NEVER, u32::MAX); 2];
        let mut found = 0;
        for &s in &self.by_first_ret {
            if found == 2 || self.first_ret[s as usize] == NEVER {
                break;
            }
            if !self.is_written(s) {
                first[found] = (self.first_ret[s as usize], s);
                found += 1;
            }
        }
        while node != NIL && self.node_is_call[node] {
            let op = self.node_op[node];
            if let Step::Write(s) = self.steps[op] {
                let must_wait = self.tracked[s as usize] && s >= 2 && {
                    let (ret, _) = if first[0].1 == s { first[1] } else { first[0] };
                    ret < self.last_call[s as usize]
                };
                if !must_wait && self.visit(op, s) {
                    self.push(node, op, false);
                    self.state = s;
                    self.lift(node);
                    return Next::Configuration;
                }
            }
            node = self.next[node];
        }
        Next::Backtrack
    }

    /// Whether the (single) write of tracked observed state `s` is linearized.
    fn is_written(&self, s: u32) -> bool {
        self.written[s as usize]
    }

    /// Records `op` as linearized in the per-state bookkeeping (`done`) or undoes that.
    fn account(&mut self, op: usize, done: bool) {
        match self.steps[op] {
            Step::Read(s) if done => self.reads_left[s as usize] -= 1,
            Step::Read(s) => self.reads_left[s as usize] += 1,
            Step::Write(s) => self.written[s as usize] = done,
        }
    }

    /// Undoes forced operations and the latest branching one; returns where to continue.
    fn backtrack(&mut self) -> Option<usize> {
        while let Some(frame) = self.stack.pop() {
            self.best_valid = self.best_valid.min(self.stack.len());
            self.unlift(frame.node);
            self.account(frame.op, false);
            self.linearized[frame.op / 64] &= !(1 << (frame.op % 64));
            self.hash ^= self.zobrist[frame.op];
            self.state = frame.prev_state;
            if !frame.forced {
                return Some(self.next[frame.node]);
            }
        }
        None
    }

    /// Adds `op` to the linearized set if (set + op, `state`) is a new configuration; otherwise
    /// leaves everything unchanged and returns false.
    fn visit(&mut self, op: usize, state: u32) -> bool {
        self.linearized[op / 64] |= 1 << (op % 64);
        let hash = self.hash ^ self.zobrist[op];
        if !self.visited.insert(hash ^ state_mix(state), state, &self.linearized) {
            self.linearized[op / 64] &= !(1 << (op % 64));
            return false;
        }
        self.hash = hash;
        true
    }

    fn push(&mut self, node: usize, op: usize, forced: bool) {
        self.account(op, true);
        self.stack.push(Frame { node, op, prev_state: self.state, forced });
        if self.stack.len() > self.best.len() {
            self.best.truncate(self.best_valid);
            let valid = self.best.len();
            self.best.extend(self.stack[valid..].iter().map(|frame| frame.op));
            self.best_valid = self.stack.len();
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Re-inserts a node removed by `unlink` (which kept its own links).
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a call node and its return node (if any) from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.ret_node[self.node_op[call]];
        if ret != NIL {
            self.unlink(ret);
            self.returns_left -= 1;
        }
    }

    /// Undoes `lift` (lifts must be undone in reverse order).
    fn unlift(&mut self, call: usize) {
        let ret = self.ret_node[self.node_op[call]];
        if ret != NIL {
            self.relink(ret);
            self.returns_left += 1;
        }
        self.relink(call);
    }

    /// Describes the longest partial linearization found and what could not follow it.
    fn explain(&self) -> String {
        let ops = self.ops;
        let must = self.ret_node.iter().filter(|&&r| r != NIL).count();
        let mut placed = vec![false; ops.len()];
        for &op in &self.best {
            placed[op] = true;
        }
        let mut out = format!(
            "{} configurations explored; the longest partial linearization places {} of {} \
             operations ({} acknowledged ones must be placed)",
            self.visited.len(),
            self.best.len(),
            ops.len(),
            must
        );
        const SHOWN: usize = 10;
        if self.best.is_empty() {
            out.push_str("; no operation could be placed first");
        } else {
            let skipped = self.best.len().saturating_sub(SHOWN);
            let _ = write!(out, "; it ends with (position: operation):");
            for (i, &op) in self.best.iter().enumerate().skip(skipped) {
                let _ = write!(out, "\n  {}: {}", i + 1, describe(ops[op]));
            }
        }
        let last_write = self.best.iter().rev().find_map(|&op| match ops[op].op {
            Op::Write(v) => Some((v, op)),
            Op::Read(_) => None,
        });
        match last_write {
            Some((v, op)) => {
                let _ = write!(out, "\nafter it the register holds {v} (from {})", describe(ops[op]));
            }
            None => out.push_str("\nafter it the register holds nil (nothing written yet)"),
        }
        let blocked = (0..ops.len())
            .filter(|&op| !placed[op] && self.ret_node[op] != NIL)
            .min_by_key(|&op| (ops[op].ret, op));
        if let Some(blocked) = blocked {
            let _ = write!(
                out,
                "\nthe operation that could not be placed next (it must take effect before it \
                 returns): {}",
                describe(ops[blocked])
            );
            if let Op::Write(_) = ops[blocked].op {
                self.explain_blocked_write(&mut out, &placed, last_write, blocked);
            }
            let deadline = ops[blocked].ret;
            let candidates: Vec<usize> = (0..ops.len())
                .filter(|&op| {
                    !placed[op]
                        && op != blocked
                        && ops[op].call <= deadline
                        && matches!(ops[op].op, Op::Write(_))
                })
                .collect();
            if candidates.is_empty() {
                out.push_str("\nno other write could be placed before it");
            } else {
                let _ = write!(out, "\nunplaced writes called before it returned ({}):", candidates.len());
                for &op in candidates.iter().take(SHOWN) {
                    let _ = write!(out, "\n  {}", describe(ops[op]));
                }
                if candidates.len() > SHOWN {
                    out.push_str("\n  ...");
                }
            }
        }
        out
    }

    /// Explains why a write could not follow the partial linearization `placed`, whose last
    /// write (value and operation) is `last_write`.
    fn explain_blocked_write(
        &self,
        out: &mut String,
        placed: &[bool],
        last_write: Option<(u64, usize)>,
        blocked: usize,
    ) {
        const SHOWN: usize = 3;
        let ops = self.ops;
        let state_of = |op: usize| match self.steps[op] {
            Step::Write(s) | Step::Read(s) => s as usize,
        };
        // Is the current value still being read?
        let (holds, tracked) = match last_write {
            None => (None, true),
            Some((v, op)) => (Some(v), self.tracked[state_of(op)]),
        };
        let pending: Vec<usize> =
            (0..ops.len()).filter(|&op| !placed[op] && ops[op].op == Op::Read(holds)).collect();
        if tracked && !pending.is_empty() {
            let _ = write!(
                out,
                "\nno write may come yet: the register's value {} still has {} unplaced \
                 read(s), which must all precede the next write:",
                fmt_value(holds),
                pending.len()
            );
            for &op in pending.iter().take(SHOWN) {
                let _ = write!(out, "\n  {}", describe(ops[op]));
            }
            return;
        }
        // Must a value written once wait for another value that is not written yet?
        let s = state_of(blocked);
        if s < 2 || !self.tracked[s] {
            return;
        }
        let Some(last_call) = (0..ops.len()).filter(|&op| state_of(op) == s).max_by_key(|&op| ops[op].call)
        else {
            return;
        };
        let mut unwritten = vec![false; self.tracked.len()];
        for w in 0..ops.len() {
            if !placed[w] && matches!(self.steps[w], Step::Write(_)) {
                unwritten[state_of(w)] = true;
            }
        }
        let earlier = (0..ops.len()).find(|&op| {
            let u = state_of(op);
            u >= 2
                && u != s
                && self.tracked[u]
                && unwritten[u]
                && acknowledged(ops[op])
                && ops[op].ret < ops[last_call].call
        });
        if let Some(op) = earlier {
            let value = match ops[op].op {
                Op::Write(v) | Op::Read(Some(v)) => v,
                Op::Read(None) => return,
            };
            let _ = write!(
                out,
                "\nit must wait for all operations on value {value} (a value's write and reads \
                 are contiguous in any linearization, and {} returned before {} was called)",
                describe(ops[op]),
                describe(ops[last_call])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(10);

    fn event(client: usize, key: &str, op: Op, outcome: Outcome, call: u64, ret: u64) -> Event {
        Event { client, key: key.to_string(), op, outcome, call, ret }
    }

    fn write(client: usize, value: u64, call: u64, ret: u64) -> Event {
        event(client, "k", Op::Write(value), Outcome::Ok, call, ret)
    }

    fn read(client: usize, value: Option<u64>, call: u64, ret: u64) -> Event {
        event(client, "k", Op::Read(value), Outcome::Ok, call, ret)
    }

    fn failed_write(client: usize, value: u64, call: u64) -> Event {
        event(client, "k", Op::Write(value), Outcome::Unknown, call, NEVER)
    }

    /// Checks with and without the prechecks: the search alone must agree.
    fn both(history: &[Event]) -> [Verdict; 2] {
        both_within(history, BUDGET)
    }

    fn assert_linearizable(history: &[Event]) -> Verdict {
        let [verdict, searched] = both(history);
        for v in [&verdict, &searched] {
            assert!(v.linearizable && !v.timed_out && v.key.is_none(), "expected linearizable, got {v:#?}");
        }
        verdict
    }

    /// Returns the verdicts with and without prechecks.
    fn assert_rejected(history: &[Event]) -> [Verdict; 2] {
        let verdicts = both(history);
        for v in &verdicts {
            assert!(!v.linearizable && !v.timed_out && v.key.is_some(), "expected a rejection, got {v:#?}");
        }
        verdicts
    }

    #[test]
    fn empty_history_is_linearizable() {
        let verdict = assert_linearizable(&[]);
        assert_eq!(verdict.ops_checked, 0);
    }

    #[test]
    fn sequential_history_is_accepted() {
        let verdict = assert_linearizable(&[
            read(0, None, 0, 10),
            write(0, 1, 20, 30),
            read(1, Some(1), 40, 50),
            write(1, 2, 60, 70),
            read(0, Some(2), 80, 90),
            read(1, Some(2), 100, 110),
        ]);
        assert_eq!(verdict.ops_checked, 6);
    }

    #[test]
    fn read_concurrent_with_write_may_see_old_or_new_value() {
        for seen in [None, Some(1)] {
            assert_linearizable(&[write(0, 1, 10, 50), read(1, seen, 20, 40)]);
            // The read starting first or ending last does not matter either.
            assert_linearizable(&[write(0, 1, 10, 50), read(1, seen, 0, 60)]);
        }
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_either_order() {
        for (first, second) in [(1, 2), (2, 1)] {
            assert_linearizable(&[
                write(0, 1, 0, 100),
                write(1, 2, 0, 100),
                read(2, Some(first), 10, 20),
                read(2, Some(second), 30, 40),
                read(3, Some(second), 200, 210),
            ]);
        }
    }

    #[test]
    fn operations_touching_at_one_instant_count_as_concurrent() {
        assert_linearizable(&[write(0, 1, 0, 10), read(1, None, 10, 20)]);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_rejected() {
        let [verdict, searched] =
            assert_rejected(&[write(0, 1, 0, 10), write(0, 2, 20, 30), read(1, Some(1), 40, 50)]);
        assert_eq!(verdict.key.as_deref(), Some("k"));
        for text in [&verdict.explanation, &searched.explanation] {
            assert!(text.contains("client 1: read 1"), "{text}");
        }
    }

    #[test]
    fn read_of_nil_after_completed_write_is_rejected() {
        assert_rejected(&[write(0, 1, 0, 10), read(1, None, 20, 30)]);
    }

    #[test]
    fn read_of_value_never_written_is_rejected() {
        let [verdict, _] = assert_rejected(&[write(0, 1, 0, 10), read(1, Some(9), 20, 30)]);
        assert!(verdict.explanation.contains("no write wrote"), "{}", verdict.explanation);
    }

    #[test]
    fn read_returning_before_its_write_was_called_is_rejected() {
        assert_rejected(&[read(1, Some(1), 0, 10), write(0, 1, 20, 30)]);
    }

    #[test]
    fn value_flip_flop_is_rejected() {
        assert_rejected(&[
            write(0, 1, 0, 10),
            write(0, 2, 20, 30),
            read(1, Some(2), 40, 50),
            read(1, Some(1), 60, 70),
        ]);
    }

    #[test]
    fn readers_disagreeing_on_the_order_of_concurrent_writes_is_rejected() {
        assert_rejected(&[
            write(0, 1, 0, 100),
            write(1, 2, 0, 100),
            read(2, Some(1), 10, 20),
            read(2, Some(2), 30, 40),
            read(3, Some(2), 10, 20),
            read(3, Some(1), 30, 40),
        ]);
    }

    #[test]
    fn failed_write_that_is_later_read_is_accepted() {
        assert_linearizable(&[
            failed_write(0, 1, 0),
            read(1, None, 100, 110),
            read(1, Some(1), 1_000, 1_010),
            read(2, Some(1), 2_000, 2_010),
        ]);
    }

    #[test]
    fn failed_write_that_is_never_observed_is_accepted() {
        let verdict = assert_linearizable(&[
            write(0, 1, 0, 10),
            failed_write(0, 2, 20),
            read(1, Some(1), 30, 40),
            write(1, 3, 50, 60),
            read(1, Some(3), 70, 80),
        ]);
        assert_eq!(verdict.ops_checked, 5);
    }

    #[test]
    fn failed_write_cannot_take_effect_before_it_was_called() {
        assert_rejected(&[read(1, Some(1), 0, 10), failed_write(0, 1, 20)]);
    }

    #[test]
    fn failed_write_takes_effect_at_most_once() {
        // Observed, then overwritten: it cannot reappear.
        assert_rejected(&[
            failed_write(0, 1, 0),
            read(1, Some(1), 10, 20),
            write(1, 2, 30, 40),
            read(1, Some(1), 50, 60),
        ]);
    }

    #[test]
    fn read_with_unknown_outcome_is_ignored() {
        let verdict = assert_linearizable(&[
            write(0, 1, 0, 10),
            event(1, "k", Op::Read(Some(42)), Outcome::Unknown, 20, 30),
            event(1, "k", Op::Read(None), Outcome::Ok, 40, NEVER),
        ]);
        assert_eq!(verdict.ops_checked, 1);
    }

    #[test]
    fn keys_are_checked_independently() {
        // Stale as one register, fine as two.
        let mut history = vec![
            event(0, "a", Op::Write(1), Outcome::Ok, 0, 10),
            event(0, "b", Op::Write(2), Outcome::Ok, 20, 30),
            event(1, "a", Op::Read(Some(1)), Outcome::Ok, 40, 50),
            event(1, "b", Op::Read(Some(2)), Outcome::Ok, 40, 50),
        ];
        assert_linearizable(&history);
        // A violation on one key names that key.
        history.push(event(2, "b", Op::Read(None), Outcome::Ok, 60, 70));
        let [verdict, _] = assert_rejected(&history);
        assert_eq!(verdict.key.as_deref(), Some("b"));
        assert_eq!(verdict.ops_checked, 5);
    }

    #[test]
    fn event_returning_before_its_call_is_rejected_as_malformed() {
        let [verdict, _] = assert_rejected(&[write(0, 1, 10, 5)]);
        assert!(verdict.explanation.contains("malformed"), "{}", verdict.explanation);
    }

    /// w1, r1, w2, r2 and w3 in sequence, then a stale read of 2.
    fn stale_read_after_three_writes() -> Vec<Event> {
        vec![
            write(0, 1, 0, 10),
            read(1, Some(1), 20, 30),
            write(0, 2, 40, 50),
            read(1, Some(2), 60, 70),
            write(0, 3, 80, 90),
            read(2, Some(2), 100, 110),
        ]
    }

    #[test]
    fn explanation_names_the_two_operations_that_conflict() {
        let [verdict, _] = assert_rejected(&stale_read_after_three_writes());
        let text = &verdict.explanation;
        assert!(text.starts_with("key \"k\" is not linearizable: "), "{text}");
        assert!(
            text.contains("client 0: write 3 [0.000000080s, 0.000000090s] returned before client 2: read 2 [0.000000100s, 0.000000110s] was called"),
            "{text}"
        );
    }

    #[test]
    fn search_explanation_shows_the_longest_prefix_and_the_blocked_operation() {
        let verdict = check_with(&stale_read_after_three_writes(), BUDGET, false);
        assert!(!verdict.linearizable && !verdict.timed_out, "{verdict:#?}");
        let text = &verdict.explanation;
        assert!(text.contains("places 4 of 6 operations"), "{text}");
        assert!(text.contains("4: client 1: read 2"), "{text}");
        assert!(text.contains("register holds 2"), "{text}");
        assert!(
            text.contains(
                "could not be placed next (it must take effect before it returns): client 0: write 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "still has 1 unplaced read(s), which must all precede the next write:\n  client 2: read 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn search_explanation_names_the_value_a_write_must_wait_for() {
        // Value 1 is read after write 2 returned, and value 2 after write 1 returned.
        let history =
            [write(0, 1, 0, 10), write(1, 2, 20, 30), read(2, Some(2), 40, 45), read(2, Some(1), 50, 60)];
        assert_rejected(&history);
        let verdict = check_with(&history, BUDGET, false);
        let text = &verdict.explanation;
        assert!(text.contains("places 0 of 4"), "{text}");
        assert!(
            text.contains(
                "could not be placed next (it must take effect before it returns): client 0: write 1"
            ),
            "{text}"
        );
        assert!(text.contains("it must wait for all operations on value 2"), "{text}");
    }

    #[test]
    fn exhausted_budget_reports_a_timeout_not_a_verdict() {
        let history = [write(0, 1, 0, 10), read(1, Some(1), 20, 30)];
        let verdict = check(&history, Duration::ZERO);
        assert!(verdict.timed_out && !verdict.linearizable, "{verdict:#?}");
        assert_eq!(verdict.key.as_deref(), Some("k"));
    }

    /// The seeded generator (fastrand's) of the randomized tests, with the draws they use.
    struct Rng(fastrand::Rng);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(fastrand::Rng::with_seed(seed))
        }
        /// Uniform in `0..n` (n > 0).
        fn below(&mut self, n: u64) -> u64 {
            self.0.u64(..n)
        }
        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    struct Shape {
        clients: usize,
        ops_per_client: usize,
        /// Maximum pause between one operation's return and the client's next call.
        max_think: u64,
        /// Maximum time from call to linearization point, and from there to return.
        max_latency: u64,
        write_percent: u64,
        unknown_percent: u64,
    }

    /// A linearizable history of one key: every operation takes effect at a random point inside
    /// its interval (an Unknown write at a random point after its call, or never), and reads
    /// return what the register held at their point.
    fn linearizable_history(rng: &mut Rng, key: &str, shape: &Shape, first_value: u64) -> Vec<Event> {
        struct Planned {
            event: Event,
            point: Option<u64>,
        }
        let mut planned = Vec::new();
        let mut value = first_value;
        for client in 0..shape.clients {
            let mut now = rng.below(shape.max_think + 1);
            for _ in 0..shape.ops_per_client {
                let call = now + rng.below(shape.max_think + 1);
                let point = call + rng.below(shape.max_latency + 1);
                let ret = point + rng.below(shape.max_latency + 1);
                now = ret;
                let unknown = rng.percent(shape.unknown_percent);
                let (op, outcome, point) = if rng.percent(shape.write_percent) {
                    value += 1;
                    if unknown {
                        // Applied late, or never.
                        let late = call + rng.below(4 * shape.max_latency + 1);
                        (Op::Write(value), Outcome::Unknown, rng.percent(50).then_some(late))
                    } else {
                        (Op::Write(value), Outcome::Ok, Some(point))
                    }
                } else if unknown {
                    (Op::Read(Some(u64::MAX)), Outcome::Unknown, None)
                } else {
                    (Op::Read(None), Outcome::Ok, Some(point))
                };
                let ret = if outcome == Outcome::Unknown && rng.percent(50) { NEVER } else { ret };
                planned.push(Planned { event: event(client, key, op, outcome, call, ret), point });
            }
        }
        let mut order: Vec<usize> = (0..planned.len()).filter(|&i| planned[i].point.is_some()).collect();
        order.sort_by_key(|&i| (planned[i].point, i));
        let mut register = None;
        for i in order {
            match &mut planned[i].event.op {
                Op::Write(v) => register = Some(*v),
                Op::Read(seen) => *seen = register,
            }
        }
        planned.into_iter().map(|p| p.event).collect()
    }

    /// Values that the acknowledged read `r` cannot possibly return: nil or a value certainly
    /// overwritten before it was called, or a value first written after it returned.
    fn impossible_values(history: &[Event], r: &Event) -> Vec<Option<u64>> {
        let writes: Vec<&Event> =
            history.iter().filter(|e| e.key == r.key && matches!(e.op, Op::Write(_))).collect();
        let ok_writes: Vec<&Event> = writes.iter().copied().filter(|w| acknowledged(w)).collect();
        let mut values = Vec::new();
        if ok_writes.iter().any(|w| w.ret < r.call) {
            values.push(None);
        }
        for w in &writes {
            let Op::Write(v) = w.op else { unreachable!() };
            let overwritten =
                acknowledged(w) && ok_writes.iter().any(|w2| w.ret < w2.call && w2.ret < r.call);
            if overwritten || w.call > r.ret {
                values.push(Some(v));
            }
        }
        values
    }

    /// Changes one acknowledged read to an impossible value; returns its index, or None if no
    /// read can be made impossible.
    fn mutate_one_read(rng: &mut Rng, history: &mut [Event]) -> Option<usize> {
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].op, Op::Read(_)) && acknowledged(&history[i]))
            .collect();
        let start = rng.below(reads.len().max(1) as u64) as usize;
        for k in 0..reads.len() {
            let i = reads[(start + k) % reads.len()];
            let values = impossible_values(history, &history[i]);
            if !values.is_empty() {
                let pick = values[rng.below(values.len() as u64) as usize];
                history[i].op = Op::Read(pick);
                return Some(i);
            }
        }
        None
    }

    #[test]
    fn random_linearizable_histories_are_accepted_and_impossible_reads_rejected() {
        let mut mutated = 0;
        for seed in 0..300 {
            let mut rng = Rng::new(seed);
            let shape = Shape {
                clients: 1 + rng.below(8) as usize,
                ops_per_client: 1 + rng.below(40) as usize,
                max_think: rng.below(50),
                max_latency: 1 + rng.below(100),
                write_percent: 20 + rng.below(60),
                unknown_percent: rng.below(15),
            };
            let keys = 1 + rng.below(3);
            let mut history = Vec::new();
            for k in 0..keys {
                let key = format!("key{k}");
                history.extend(linearizable_history(&mut rng, &key, &shape, k * 1_000_000));
            }
            for verdict in both(&history) {
                assert!(
                    verdict.linearizable,
                    "seed {seed}: generated history rejected: {verdict:#?}\n{history:#?}"
                );
            }

            if let Some(i) = mutate_one_read(&mut rng, &mut history) {
                mutated += 1;
                for verdict in both(&history) {
                    assert!(
                        !verdict.linearizable && !verdict.timed_out,
                        "seed {seed}: impossible read {:?} accepted: {verdict:#?}\n{history:#?}",
                        history[i]
                    );
                    assert_eq!(verdict.key.as_deref(), Some(history[i].key.as_str()));
                }
            }
        }
        assert!(mutated > 200, "only {mutated} histories could be mutated");
    }

    /// Reference answer by exhaustive search: place, one at a time, any operation that no
    /// unplaced acknowledged operation must precede, stopping once every acknowledged
    /// operation is placed (Unknown writes may be left out; Unknown reads are ignored).
    fn brute_force_linearizable(history: &[Event]) -> bool {
        fn place(ops: &[&Event], placed: &mut Vec<bool>, register: Option<u64>) -> bool {
            if (0..ops.len()).all(|i| placed[i] || !acknowledged(ops[i])) {
                return true;
            }
            for y in 0..ops.len() {
                let blocked = (0..ops.len())
                    .any(|x| !placed[x] && x != y && acknowledged(ops[x]) && ops[x].ret < ops[y].call);
                if placed[y] || blocked {
                    continue;
                }
                let next = match ops[y].op {
                    Op::Write(v) => Some(v),
                    Op::Read(seen) if seen == register => register,
                    Op::Read(_) => continue,
                };
                placed[y] = true;
                let found = place(ops, placed, next);
                placed[y] = false;
                if found {
                    return true;
                }
            }
            false
        }
        let mut keys: Vec<&str> = history.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.iter().all(|key| {
            let ops: Vec<&Event> = history
                .iter()
                .filter(|e| e.key == *key && (matches!(e.op, Op::Write(_)) || acknowledged(e)))
                .collect();
            place(&ops, &mut vec![false; ops.len()], None)
        })
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut verdicts = [0usize; 2];
        for seed in 0..20_000 {
            let mut rng = Rng::new(seed);
            let n = 1 + rng.below(8) as usize;
            let unique = rng.percent(50);
            let mut next_value = 0;
            let history: Vec<Event> = (0..n)
                .map(|i| {
                    let call = rng.below(30);
                    let ret = call + rng.below(15);
                    let outcome = if rng.percent(20) { Outcome::Unknown } else { Outcome::Ok };
                    let op = if rng.percent(50) {
                        next_value += 1;
                        Op::Write(if unique { next_value } else { 1 + rng.below(3) })
                    } else {
                        let v = rng.below(4);
                        Op::Read((v > 0).then_some(v))
                    };
                    let ret = if outcome == Outcome::Unknown && rng.percent(50) { NEVER } else { ret };
                    let key = if rng.percent(10) { "other" } else { "k" };
                    event(i, key, op, outcome, call, ret)
                })
                .collect();
            let expected = brute_force_linearizable(&history);
            verdicts[expected as usize] += 1;
            for (prechecks, verdict) in [true, false].into_iter().zip(both(&history)) {
                assert!(!verdict.timed_out, "seed {seed}: {verdict:#?}");
                assert_eq!(
                    verdict.linearizable, expected,
                    "seed {seed} (prechecks: {prechecks}): {verdict:#?}\n{history:#?}"
                );
            }
        }
        // Both answers must be well represented for the comparison to mean something.
        assert!(verdicts.iter().all(|&c| c > 4_000), "{verdicts:?}");
    }

    #[test]
    fn two_thousand_operations_from_fifty_clients_check_quickly() {
        // Release builds must finish well within a second (they take a few milliseconds); debug
        // builds get more slack. Running out of budget fails the test.
        let budget = if cfg!(debug_assertions) { Duration::from_secs(20) } else { Duration::from_secs(1) };
        // Operations take up to 4ms with up to 0.2ms between them: about 50 in flight.
        let shape = Shape {
            clients: 50,
            ops_per_client: 40,
            max_think: 200_000,
            max_latency: 2_000_000,
            write_percent: 50,
            unknown_percent: 3,
        };
        for seed in 0..3 {
            let mut rng = Rng::new(1_000 + seed);
            let mut history = linearizable_history(&mut rng, "k", &shape, 0);
            assert_eq!(history.len(), 2_000);
            // The search alone must be quick on a linearizable history too.
            for (prechecks, verdict) in [true, false].into_iter().zip(both_within(&history, budget)) {
                assert!(
                    verdict.linearizable && !verdict.timed_out,
                    "seed {seed} (prechecks: {prechecks}): {verdict:#?}"
                );
            }
            mutate_one_read(&mut rng, &mut history).expect("a read to mutate");
            let verdict = check(&history, budget);
            assert!(!verdict.linearizable && !verdict.timed_out, "seed {seed}: {verdict:#?}");
        }
    }

    fn both_within(history: &[Event], budget: Duration) -> [Verdict; 2] {
        [check(history, budget), check_with(history, budget, false)]
    }
}
