//! Large sorted sets, stored as a tree of their members in order and buckets of their scores.
//!
//! A sorted set of up to [`super::buckets::WHOLE_FIELDS`] members is one record of the
//! keyspace ([`super::zsets`]). A larger one's record holds a [`Tree`] directory, and its
//! members live in two kinds of parts ([`super::parts`]):
//! - the nodes of a counted B+ tree, which keeps the members in Redis's order (by score, then
//!   member): a leaf holds up to [`NODE_ENTRIES`] members with their scores, an inner node up to
//!   as many children, each with the first member of its subtree and how many members the
//!   subtree holds. So a rank, a score range or a member range is found by reading one node per
//!   level, and a range of ranks by reading the leaves that hold it;
//! - buckets of members and scores, found by hashing the member as a large hash's fields are
//!   ([`super::buckets`]), so that ZSCORE, and ZADD or ZREM of a member, find its score, and so
//!   its place in the tree, without a search.
//!
//! A node that outgrows [`NODE_ENTRIES`] splits in two (a root that does gets a new root above
//! it); a node left at most half full merges with a neighbour when both fit in one; a root left
//! with one child gives way to it. Node numbers are never used twice; a sorted set's parts are
//! found by reading its inner nodes ([`Tree::numbers`]). A write changes the tree through a
//! [`TreeEdit`], which reads each node once and writes nothing until
//! [`ApplyBatch::save_tree`]; a tree that shrinks to [`super::buckets::WHOLE_AGAIN`] members is
//! stored whole again.
//!
//! The tree's separators satisfy one rule, which every change keeps: a child's `first` is at
//! most every member of its subtree and above every member before that subtree. Deleting a
//! subtree's first member leaves its `first` as it was; it still separates.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, BufMut, Bytes};

use super::buckets::{Buckets, Editing, Items, Layout, FIELDS_LEN};
use super::parts::{damaged, directory_fields, directory_header, part_key};
use super::zsets::{self, order, Entries};
use super::{
    decode_elements, encode_elements, encoded_elements_len, ApplyBatch, KeyRead, MAX_STRING_LEN,
    TOO_BIG_COLLECTION,
};
use crate::error::{Error, Result};
use crate::resp::Frame;

/// The most members a leaf holds, and the most children an inner node has.
pub(super) const NODE_ENTRIES: usize = 128;

/// A node's part number is its number from here on; the buckets' numbers are below.
const FIRST_NODE: u64 = 1 << 63;

/// The parts' id, the buckets' fields, then the root, the height and the next node number.
const DIRECTORY_LEN: usize = 16 + FIELDS_LEN + 17;

/// A large sorted set's record: its buckets of scores (which count its members) and its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tree {
    pub scores: Buckets,
    /// The root node's number.
    root: u64,
    /// How many levels of nodes: 1 when the root is a leaf.
    height: u8,
    /// The number the next new node gets.
    next: u64,
}

impl Tree {
    /// The directory a sorted set record's payload holds; none if it is a whole sorted set.
    pub(super) fn decode(data: &[u8]) -> Result<Option<Tree>> {
        let Some((id, mut r)) = directory_fields(data, DIRECTORY_LEN, "sorted set")? else {
            return Ok(None);
        };
        let scores = Buckets::decode_fields(id, &mut r).ok_or_else(|| damaged("sorted set", data))?;
        let tree = Tree { scores, root: r.get_u64(), height: r.get_u8(), next: r.get_u64() };
        if tree.height == 0 || tree.height > 64 || tree.root >= tree.next || tree.next >= FIRST_NODE {
            return Err(damaged("sorted set", data));
        }
        Ok(Some(tree))
    }

    pub(super) fn encode(&self) -> Bytes {
        let mut out = directory_header(self.scores.id, DIRECTORY_LEN);
        self.scores.encode_fields(&mut out);
        out.put_u64(self.root);
        out.put_u8(self.height);
        out.put_u64(self.next);
        out.freeze()
    }

    /// How many members it holds.
    pub(super) fn len(&self) -> u64 {
        self.scores.len
    }

    fn node_key(&self, number: u64) -> Vec<u8> {
        part_key(self.scores.id, FIRST_NODE + number)
    }

    /// The part numbers it may have: its buckets', and its nodes', found by reading every inner
    /// node from `ks`.
    pub(super) fn numbers(&self, ks: &dyn KeyRead) -> Result<Vec<u64>> {
        let mut numbers: Vec<u64> = self.scores.numbers().collect();
        let mut level = vec![self.root];
        for depth in (0..self.height as usize).rev() {
            numbers.extend(level.iter().map(|number| FIRST_NODE + number));
            if depth == 0 {
                break;
            }
            let mut below = Vec::new();
            for number in level {
                below.extend(read_node(ks, self, number, depth)?.children().iter().map(|c| c.number));
            }
            level = below;
        }
        Ok(numbers)
    }
}

/// An inner node's child: the subtree's number, its first member (a separator: see the module's
/// documentation) and how many members it holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Child {
    first: (f64, Bytes),
    number: u64,
    count: u64,
}

/// A node of the tree: a leaf's members in order, or an inner node's children in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Leaf(Entries),
    Inner(Vec<Child>),
}

impl Node {
    /// A leaf is stored as a whole sorted set is; an inner node as elements, four per child:
    /// its first member, that member's score, its number and its count.
    fn decode(data: &Bytes, leaf: bool) -> Result<Node> {
        if leaf {
            return Ok(Node::Leaf(zsets::decode(data)?));
        }
        let corrupt = || Error::Corrupt(format!("sorted set node of {} bytes", data.len()));
        let elements = decode_elements(data)?;
        if elements.is_empty() || !elements.len().is_multiple_of(4) {
            return Err(corrupt());
        }
        let number = |b: &Bytes| -> Result<[u8; 8]> { b[..].try_into().map_err(|_| corrupt()) };
        let mut children = Vec::with_capacity(elements.len() / 4);
        for four in elements.chunks(4) {
            let score = f64::from_be_bytes(number(&four[1])?);
            if score.is_nan() {
                return Err(corrupt());
            }
            children.push(Child {
                first: (score, four[0].clone()),
                number: u64::from_be_bytes(number(&four[2])?),
                count: u64::from_be_bytes(number(&four[3])?),
            });
        }
        Ok(Node::Inner(children))
    }

    fn encode(&self) -> Bytes {
        match self {
            Node::Leaf(entries) => zsets::encode(entries),
            Node::Inner(children) => {
                let elements: Vec<Bytes> = children
                    .iter()
                    .flat_map(|c| {
                        [
                            c.first.1.clone(),
                            Bytes::copy_from_slice(&c.first.0.to_be_bytes()),
                            Bytes::copy_from_slice(&c.number.to_be_bytes()),
                            Bytes::copy_from_slice(&c.count.to_be_bytes()),
                        ]
                    })
                    .collect();
                encode_elements(elements.len(), elements.iter())
            }
        }
    }

    /// How many members (a leaf) or children (an inner node) it holds.
    fn len(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Inner(children) => children.len(),
        }
    }

    /// How many members its subtree holds.
    fn count(&self) -> u64 {
        match self {
            Node::Leaf(entries) => entries.len() as u64,
            Node::Inner(children) => children.iter().map(|c| c.count).sum(),
        }
    }

    /// Its first member, or its first child's separator.
    fn first(&self) -> (f64, Bytes) {
        match self {
            Node::Leaf(entries) => entries[0].clone(),
            Node::Inner(children) => children[0].first.clone(),
        }
    }

    fn children(&self) -> &[Child] {
        match self {
            Node::Leaf(_) => &[],
            Node::Inner(children) => children,
        }
    }

    /// Splits off what it holds from `at` on.
    fn split_off(&mut self, at: usize) -> Node {
        match self {
            Node::Leaf(entries) => Node::Leaf(entries.split_off(at)),
            Node::Inner(children) => Node::Inner(children.split_off(at)),
        }
    }

    /// Takes in what the next node holds.
    fn append(&mut self, next: Node) {
        match (self, next) {
            (Node::Leaf(entries), Node::Leaf(more)) => entries.extend(more),
            (Node::Inner(children), Node::Inner(more)) => children.extend(more),
            _ => unreachable!("neighbours are on one level"),
        }
    }
}

/// The node `number` of `tree`, `depth` levels above the leaves.
fn read_node(ks: &dyn KeyRead, tree: &Tree, number: u64, depth: usize) -> Result<Node> {
    match ks.part(&tree.node_key(number))? {
        Some(data) => Node::decode(&data, depth == 0),
        None => Err(Error::Corrupt(format!("sorted set node {number} is missing"))),
    }
}

/// The child of an inner node under which `entry` belongs: the last whose separator is not
/// above it (the first if none is).
fn child_for(children: &[Child], entry: &(f64, Bytes)) -> usize {
    children.partition_point(|c| order(&c.first, entry) != Ordering::Greater).saturating_sub(1)
}

/// A bucket of a large sorted set's members with their scores, in no order; stored as a whole
/// sorted set is ([`zsets::encode`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Scores(pub(super) Entries);

impl Scores {
    pub(super) fn get(&self, member: &[u8]) -> Option<f64> {
        self.0.iter().find(|(_, m)| m == member).map(|(score, _)| *score)
    }

    fn set(&mut self, member: Bytes, score: f64) {
        match self.0.iter_mut().find(|(_, m)| *m == member) {
            Some((old, _)) => *old = score,
            None => self.0.push((score, member)),
        }
    }

    fn remove(&mut self, member: &[u8]) {
        self.0.retain(|(_, m)| m != member);
    }
}

impl Items for Scores {
    fn decode(data: &Bytes) -> Result<Self> {
        Ok(Scores(zsets::decode_pairs(data)?))
    }

    fn encode(&self) -> Bytes {
        zsets::encode(&self.0)
    }

    fn encoded_len(&self) -> u64 {
        encoded_elements_len(self.0.iter().map(|(_, m)| m)) + 12 * self.0.len() as u64
    }

    fn count(&self) -> usize {
        self.0.len()
    }

    fn spread(self, bucket_of: impl Fn(&[u8]) -> u64) -> BTreeMap<u64, Self> {
        let mut spread: BTreeMap<u64, Scores> = BTreeMap::new();
        for (score, member) in self.0 {
            spread.entry(bucket_of(&member)).or_default().0.push((score, member));
        }
        spread
    }

    fn absorb(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    fn retain_keys(&mut self, keep: impl Fn(&[u8]) -> bool) {
        self.0.retain(|(_, member)| keep(member));
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.0[i].1
    }

    fn item(&self, i: usize) -> Self {
        Scores(vec![self.0[i].clone()])
    }
}

/// A large sorted set as a write (or a read) goes through it: the nodes read so far, which of
/// them changed, which were freed, and its buckets of scores. Nothing is written until
/// [`ApplyBatch::save_tree`].
pub(super) struct TreeEdit {
    tree: Tree,
    scores: Editing<Scores>,
    nodes: HashMap<u64, Node>,
    changed: BTreeSet<u64>,
    freed: BTreeSet<u64>,
    /// The most members of a leaf and children of an inner node.
    node_entries: usize,
}

impl TreeEdit {
    pub(super) fn new(tree: Tree, node_entries: usize) -> TreeEdit {
        TreeEdit {
            tree,
            scores: Editing::new(Layout::Bucketed(tree.scores)),
            nodes: HashMap::new(),
            changed: BTreeSet::new(),
            freed: BTreeSet::new(),
            node_entries,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.scores.len()
    }

    /// One call of a scan from `cursor`, through the buckets of scores ([`Layout::scan`]):
    /// members with their scores, and the cursor to go on from.
    pub(super) fn scan(&self, ks: &dyn KeyRead, cursor: u64, count: usize) -> Result<(u64, Entries)> {
        let (next, scores) = Layout::<Scores>::Bucketed(self.tree.scores).scan(ks, cursor, count)?;
        Ok((next, scores.0))
    }

    pub(super) fn score(&mut self, ks: &dyn KeyRead, member: &[u8]) -> Result<Option<f64>> {
        self.scores.look(ks, member, |scores| scores.get(member))
    }

    /// Adds `member` (not yet there) with `score`.
    pub(super) fn insert(&mut self, ks: &dyn KeyRead, entry: (f64, Bytes)) -> Result<()> {
        let member = entry.1.clone();
        self.scores.change(ks, &member, |scores| (scores.set(member.clone(), entry.0), true))?;
        let (root, depth) = (self.tree.root, self.tree.height as usize - 1);
        self.insert_below(ks, root, depth, entry)?;
        if let Some(right) = self.split_if_full(root, depth) {
            let node = &self.nodes[&root];
            let left = Child { first: node.first(), number: root, count: node.count() };
            self.tree.root = self.add(Node::Inner(vec![left, right]));
            self.tree.height += 1;
        }
        Ok(())
    }

    /// Removes `member`, which is there with `score`.
    pub(super) fn remove(&mut self, ks: &dyn KeyRead, entry: &(f64, Bytes)) -> Result<()> {
        self.scores.change(ks, &entry.1, |scores| (scores.remove(&entry.1), true))?;
        let (root, depth) = (self.tree.root, self.tree.height as usize - 1);
        if !self.remove_below(ks, root, depth, entry)? {
            return Err(Error::Corrupt("a sorted set's tree lacks a member its buckets hold".into()));
        }
        while self.tree.height > 1 {
            let root = self.tree.root;
            let only = match self.node(ks, root, self.tree.height as usize - 1)?.children() {
                [only] => only.number,
                _ => break,
            };
            self.free(root);
            self.tree.root = only;
            self.tree.height -= 1;
        }
        Ok(())
    }

    /// How many members `below` holds for: it must hold for a first part of the order and no
    /// further (a member less than a score, say).
    pub(super) fn count_below(
        &mut self,
        ks: &dyn KeyRead,
        below: &dyn Fn(&(f64, Bytes)) -> bool,
    ) -> Result<u64> {
        let (mut number, mut depth, mut total) = (self.tree.root, self.tree.height as usize - 1, 0);
        loop {
            match self.node(ks, number, depth)? {
                Node::Leaf(entries) => return Ok(total + entries.partition_point(below) as u64),
                Node::Inner(children) if children.is_empty() => return Ok(total),
                Node::Inner(children) => {
                    // Every member of a child before the last whose separator is below is below.
                    let k = children.partition_point(|c| below(&c.first)).saturating_sub(1);
                    total += children[..k].iter().map(|c| c.count).sum::<u64>();
                    number = children[k].number;
                }
            }
            depth -= 1;
        }
    }

    /// The members ranked `from..to` (from the lowest, 0), in order.
    pub(super) fn ranks(&mut self, ks: &dyn KeyRead, from: u64, to: u64) -> Result<Entries> {
        let mut out = Vec::with_capacity(to.saturating_sub(from).min(1 << 16) as usize);
        if from < to {
            let (root, depth) = (self.tree.root, self.tree.height as usize - 1);
            self.collect(ks, root, depth, from, to, &mut out)?;
        }
        Ok(out)
    }

    /// Adds the members ranked `from..to` within the subtree at `number` to `out`.
    fn collect(
        &mut self,
        ks: &dyn KeyRead,
        number: u64,
        depth: usize,
        from: u64,
        to: u64,
        out: &mut Entries,
    ) -> Result<()> {
        let children: Vec<(u64, u64)> = match self.node(ks, number, depth)? {
            Node::Leaf(entries) => {
                let end = (to as usize).min(entries.len());
                out.extend_from_slice(&entries[(from as usize).min(end)..end]);
                return Ok(());
            }
            Node::Inner(children) => children.iter().map(|c| (c.number, c.count)).collect(),
        };
        let mut start = 0;
        for (child, count) in children {
            let end = start + count;
            if end > from && start < to {
                self.collect(ks, child, depth - 1, from.saturating_sub(start), (to - start).min(count), out)?;
            }
            if end >= to {
                break;
            }
            start = end;
        }
        Ok(())
    }

    /// The node `number`, `depth` levels above the leaves, read once.
    fn node(&mut self, ks: &dyn KeyRead, number: u64, depth: usize) -> Result<&Node> {
        if !self.nodes.contains_key(&number) {
            let node = read_node(ks, &self.tree, number, depth)?;
            self.nodes.insert(number, node);
        }
        Ok(&self.nodes[&number])
    }

    /// Takes the node out to change it; [`Self::keep`] puts it back.
    fn take(&mut self, ks: &dyn KeyRead, number: u64, depth: usize) -> Result<Node> {
        self.node(ks, number, depth)?;
        Ok(self.nodes.remove(&number).expect("just read"))
    }

    fn keep(&mut self, number: u64, node: Node, changed: bool) {
        self.nodes.insert(number, node);
        if changed {
            self.changed.insert(number);
        }
    }

    /// A new node; its number.
    fn add(&mut self, node: Node) -> u64 {
        let number = self.tree.next;
        self.tree.next += 1;
        self.keep(number, node, true);
        number
    }

    fn free(&mut self, number: u64) {
        self.nodes.remove(&number);
        self.changed.remove(&number);
        self.freed.insert(number);
    }

    fn capacity(&self, depth: usize) -> usize {
        match depth {
            0 => self.node_entries.max(1),
            _ => self.node_entries.max(3),
        }
    }

    fn insert_below(
        &mut self,
        ks: &dyn KeyRead,
        number: u64,
        depth: usize,
        entry: (f64, Bytes),
    ) -> Result<()> {
        let mut node = self.take(ks, number, depth)?;
        match &mut node {
            Node::Leaf(entries) => {
                let at = entries.partition_point(|e| order(e, &entry) == Ordering::Less);
                entries.insert(at, entry);
            }
            Node::Inner(children) => {
                let k = child_for(children, &entry);
                let child = &mut children[k];
                child.count += 1;
                if order(&entry, &child.first) == Ordering::Less {
                    child.first = entry.clone(); // the first child's: below every separator
                }
                let below = child.number;
                self.insert_below(ks, below, depth - 1, entry)?;
                if let Some(right) = self.split_if_full(below, depth - 1) {
                    children[k].count -= right.count;
                    children.insert(k + 1, right);
                }
            }
        }
        self.keep(number, node, true);
        Ok(())
    }

    /// Splits the node `number` (just changed) in two if it holds too much; the new right half.
    fn split_if_full(&mut self, number: u64, depth: usize) -> Option<Child> {
        let capacity = self.capacity(depth);
        let node = self.nodes.get_mut(&number).expect("just changed");
        if node.len() <= capacity {
            return None;
        }
        let right = node.split_off(node.len() / 2);
        let (first, count) = (right.first(), right.count());
        Some(Child { first, count, number: self.add(right) })
    }

    /// Removes `entry` from the subtree at `number`; whether it was there.
    fn remove_below(
        &mut self,
        ks: &dyn KeyRead,
        number: u64,
        depth: usize,
        entry: &(f64, Bytes),
    ) -> Result<bool> {
        let mut node = self.take(ks, number, depth)?;
        let found = match &mut node {
            Node::Leaf(entries) => match entries.binary_search_by(|e| order(e, entry)) {
                Ok(at) => {
                    entries.remove(at);
                    true
                }
                Err(_) => false,
            },
            Node::Inner(children) => {
                let k = child_for(children, entry);
                let found = self.remove_below(ks, children[k].number, depth - 1, entry)?;
                if found {
                    children[k].count -= 1;
                    self.rebalance(ks, children, k, depth - 1)?;
                }
                found
            }
        };
        self.keep(number, node, found);
        Ok(found)
    }

    /// After child `k` (`depth` levels above the leaves) lost a member: drops it if empty, and
    /// merges it with a neighbour if it is at most half full and both fit in one node.
    fn rebalance(
        &mut self,
        ks: &dyn KeyRead,
        children: &mut Vec<Child>,
        k: usize,
        depth: usize,
    ) -> Result<()> {
        if children[k].count == 0 {
            self.free(children[k].number);
            children.remove(k);
            return Ok(());
        }
        let capacity = self.capacity(depth);
        if self.node(ks, children[k].number, depth)?.len() * 2 > capacity {
            return Ok(());
        }
        let (left, right) = match k {
            0 if children.len() == 1 => return Ok(()),
            0 => (0, 1),
            k => (k - 1, k),
        };
        let left_len = self.node(ks, children[left].number, depth)?.len();
        if left_len + self.node(ks, children[right].number, depth)?.len() > capacity {
            return Ok(());
        }
        let merged = self.take(ks, children[right].number, depth)?;
        self.free(children[right].number);
        self.nodes.get_mut(&children[left].number).expect("read above").append(merged);
        self.changed.insert(children[left].number);
        children[left].count += children[right].count;
        children.remove(right);
        Ok(())
    }
}

impl ApplyBatch<'_> {
    /// Stores `entries` (in order, more than fit whole) as a new tree; its directory, or the
    /// reply to a node or bucket too large (then nothing is written).
    pub(super) fn build_tree(&mut self, entries: Entries) -> Result<std::result::Result<Tree, Frame>> {
        let id = self.new_parts_id();
        let node_entries = self.limits.tree_node;
        // Nodes three quarters full, so that the next writes seldom split them.
        let (leaf_fill, inner_fill) = ((node_entries * 3 / 4).max(1), (node_entries.max(3) * 3 / 4).max(2));
        let mut nodes = Vec::new();
        let mut level: Vec<Child> = entries
            .chunks(leaf_fill)
            .map(|chunk| {
                nodes.push(Node::Leaf(chunk.to_vec()));
                Child { first: chunk[0].clone(), number: nodes.len() as u64 - 1, count: chunk.len() as u64 }
            })
            .collect();
        let mut height = 1;
        while level.len() > 1 {
            level = level
                .chunks(inner_fill)
                .map(|group| {
                    nodes.push(Node::Inner(group.to_vec()));
                    let count = group.iter().map(|c| c.count).sum();
                    Child { first: group[0].first.clone(), number: nodes.len() as u64 - 1, count }
                })
                .collect();
            height += 1;
        }
        let encoded: Vec<Bytes> = nodes.iter().map(Node::encode).collect();
        if encoded.iter().any(|data| data.len() as u64 > MAX_STRING_LEN) {
            return Ok(Err(Frame::error(TOO_BIG_COLLECTION)));
        }
        let scores = Scores(entries);
        let scores = match self.spread_into_buckets(id, scores)? {
            Ok(buckets) => buckets,
            Err(too_big) => return Ok(Err(too_big)),
        };
        let tree = Tree { scores, root: level[0].number, height, next: nodes.len() as u64 };
        for (number, data) in encoded.into_iter().enumerate() {
            self.parts.insert(tree.node_key(number as u64), Some(data));
        }
        Ok(Ok(tree))
    }

    /// Writes what a write changed of a tree; the sorted set's record payload (a whole one if
    /// it shrank to [`super::buckets::WHOLE_AGAIN`] members; none if it is empty), or the reply
    /// to a node or bucket too large (then nothing is written).
    pub(super) fn save_tree(
        &mut self,
        mut edit: TreeEdit,
    ) -> Result<std::result::Result<Option<Bytes>, Frame>> {
        let len = edit.len();
        if len <= self.limits.whole_again {
            let entries = edit.ranks(self, 0, len)?;
            let data = zsets::record(&entries);
            if data.as_ref().is_none_or(|data| data.len() as u64 <= MAX_STRING_LEN) {
                return Ok(Ok(data)); // storing it drops the tree's parts
            }
        }
        let mut writes = Vec::with_capacity(edit.changed.len());
        for number in &edit.changed {
            let data = edit.nodes[number].encode();
            if data.len() as u64 > MAX_STRING_LEN {
                return Ok(Err(Frame::error(TOO_BIG_COLLECTION)));
            }
            writes.push((edit.tree.node_key(*number), data));
        }
        let Editing::Bucketed { buckets, read } = edit.scores else {
            unreachable!("a tree's scores are in buckets")
        };
        let scores = match self.save_buckets(buckets, read)? {
            Ok(buckets) => buckets,
            Err(too_big) => return Ok(Err(too_big)),
        };
        for (key, data) in writes {
            self.parts.insert(key, Some(data));
        }
        for number in edit.freed {
            self.parts.insert(edit.tree.node_key(number), None);
        }
        Ok(Ok(Some(Tree { scores, ..edit.tree }.encode())))
    }
}

/// Checks a stored tree in full: every node is there and holds what its parent says, the
/// separators separate, the members are in order, and the buckets hold exactly the tree's
/// members with their scores. Panics otherwise.
#[cfg(test)]
pub(super) fn check_tree(ks: &dyn KeyRead, tree: &Tree) {
    fn walk(ks: &dyn KeyRead, tree: &Tree, number: u64, depth: usize, out: &mut Entries) -> u64 {
        assert!(number < tree.next, "node {number} is not below the next number");
        match read_node(ks, tree, number, depth).unwrap() {
            Node::Leaf(entries) => {
                assert!(!entries.is_empty() || number == tree.root, "an empty leaf");
                out.extend(entries.iter().cloned());
                entries.len() as u64
            }
            Node::Inner(children) => {
                let mut total = 0;
                for (i, child) in children.iter().enumerate() {
                    let before = out.len();
                    let count = walk(ks, tree, child.number, depth - 1, out);
                    assert_eq!(count, child.count, "a child's count");
                    assert!(count > 0, "an empty child");
                    assert!(
                        order(&child.first, &out[before]) != Ordering::Greater,
                        "a separator above its subtree"
                    );
                    if i > 0 {
                        assert!(
                            order(&out[before - 1], &child.first) == Ordering::Less,
                            "a separator not above"
                        );
                    }
                    total += count;
                }
                total
            }
        }
    }
    let mut entries = Vec::new();
    let count = walk(ks, tree, tree.root, tree.height as usize - 1, &mut entries);
    assert_eq!(count, tree.len(), "the directory counts the tree's members");
    assert!(entries.windows(2).all(|w| order(&w[0], &w[1]) == Ordering::Less), "members out of order");
    let mut in_tree: Vec<(Bytes, u64)> = entries.iter().map(|(s, m)| (m.clone(), s.to_bits())).collect();
    let mut in_buckets = Vec::new();
    for bucket in tree.scores.numbers() {
        let Some(data) = ks.part(&tree.scores.key(bucket)).unwrap() else { continue };
        let scores = Scores::decode(&data).unwrap();
        assert!(scores.count() > 0, "an empty bucket is not stored");
        for (score, member) in scores.0 {
            assert_eq!(tree.scores.of(&member), bucket, "a member in another bucket than its own");
            in_buckets.push((member, score.to_bits()));
        }
    }
    in_tree.sort();
    in_buckets.sort();
    assert_eq!(in_tree, in_buckets, "the buckets hold the tree's members and scores");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{
        ExpireCond, Expiry, LexBound, Queued, ReadQuery, SetOp, WriteOp, ZAddCmp, ZAddCond, ZAggregate,
        ZRangeBy, ZRangeSpec, ZScoreBound,
    };
    use crate::keyspace::parts::Parts;
    use crate::keyspace::tests::{every_step, layouts_agree, Replica};
    use crate::keyspace::{KeyRead, Limits};

    /// A score from a few, so that members share scores and ties are ordered by member.
    fn score(rng: &mut fastrand::Rng) -> f64 {
        match rng.u8(..20) {
            0 => f64::INFINITY,
            1 => f64::NEG_INFINITY,
            2 => 0.5,
            3 => -0.0,
            _ => rng.i8(-4..5) as f64,
        }
    }

    fn bound(rng: &mut fastrand::Rng) -> ZScoreBound {
        ZScoreBound { value: score(rng), open: rng.bool() }
    }

    fn lex_bound(rng: &mut fastrand::Rng) -> LexBound {
        match rng.u8(..6) {
            0 => LexBound::Min,
            1 => LexBound::Max,
            2 | 3 => LexBound::Included(Bytes::from(format!("m{}", rng.u8(..60)))),
            _ => LexBound::Excluded(Bytes::from(format!("m{}", rng.u8(..60)))),
        }
    }

    fn by(rng: &mut fastrand::Rng) -> ZRangeBy {
        match rng.u8(..3) {
            0 => ZRangeBy::Rank(rng.i64(-12..12), rng.i64(-12..12)),
            1 => ZRangeBy::Lex(lex_bound(rng), lex_bound(rng)),
            _ => ZRangeBy::Score(bound(rng), bound(rng)),
        }
    }

    fn spec(rng: &mut fastrand::Rng) -> ZRangeSpec {
        ZRangeSpec {
            by: by(rng),
            rev: rng.bool(),
            limit: rng.bool().then(|| (rng.i64(-1..6), rng.i64(-1..6))),
            with_scores: rng.bool(),
        }
    }

    /// A random sorted set command (or, now and then, another command on the same keys). "a"
    /// and "b" get any scores; "c" only 0, so that ranges by member over it are ranges of
    /// ranks (over the others they are every member inside them).
    fn random_step(rng: &mut fastrand::Rng) -> Queued {
        let key = |rng: &mut fastrand::Rng| Bytes::from(["a", "b", "c"][rng.usize(..3)]);
        let mixed = |rng: &mut fastrand::Rng| Bytes::from(["a", "b"][rng.usize(..2)]);
        let member = |rng: &mut fastrand::Rng| Bytes::from(format!("m{}", rng.u8(..60)));
        let members = |rng: &mut fastrand::Rng, n: usize| (0..rng.usize(1..n)).map(|_| member(rng)).collect();
        let op = |rng: &mut fastrand::Rng| [SetOp::Inter, SetOp::Union, SetOp::Diff][rng.usize(..3)];
        let aggregate =
            |rng: &mut fastrand::Rng| [ZAggregate::Sum, ZAggregate::Min, ZAggregate::Max][rng.usize(..3)];
        let weights = |rng: &mut fastrand::Rng| match rng.bool() {
            true => vec![],
            false => vec![rng.i8(-2..3) as f64, 0.5],
        };
        let (write, read) = (Queued::Write, Queued::Read);
        match rng.u8(..100) {
            0..=27 => {
                let key = key(rng);
                let incr = rng.u8(..8) == 0;
                let n = if incr { 1 } else { rng.usize(1..12) };
                let zero = key.as_ref() == b"c";
                write(WriteOp::ZAdd {
                    pairs: (0..n).map(|_| (if zero { 0.0 } else { score(rng) }, member(rng))).collect(),
                    key,
                    cond: [ZAddCond::Always, ZAddCond::Always, ZAddCond::IfAbsent, ZAddCond::IfPresent]
                        [rng.usize(..4)],
                    cmp: [ZAddCmp::Any, ZAddCmp::Any, ZAddCmp::Greater, ZAddCmp::Less][rng.usize(..4)],
                    ch: rng.bool(),
                    incr,
                })
            }
            28..=37 => write(WriteOp::ZRem { key: key(rng), members: members(rng, 14) }),
            38..=41 => write(WriteOp::ZPop {
                key: key(rng),
                max: rng.bool(),
                count: rng.bool().then(|| rng.u64(0..8)),
            }),
            42..=45 => write(WriteOp::ZRemRange { key: key(rng), by: by(rng) }),
            46..=47 => write(WriteOp::ZMPop {
                keys: vec![key(rng), key(rng)],
                max: rng.bool(),
                count: rng.u64(1..8),
            }),
            48 => write(WriteOp::BZPop { keys: vec![key(rng), key(rng)], max: rng.bool() }),
            49..=50 => write(WriteOp::ZCombineStore {
                op: op(rng),
                destination: mixed(rng),
                keys: vec![key(rng), key(rng)],
                weights: weights(rng),
                aggregate: aggregate(rng),
            }),
            51..=52 => {
                write(WriteOp::ZRangeStore { destination: mixed(rng), source: key(rng), spec: spec(rng) })
            }
            53 => write(WriteOp::Rename { from: key(rng), to: mixed(rng), only_if_absent: rng.bool() }),
            54 => write(WriteOp::Copy { from: key(rng), to: mixed(rng), replace: rng.bool() }),
            55 => write(WriteOp::Del { keys: vec![key(rng)] }),
            56 => write(WriteOp::Set { key: mixed(rng), value: member(rng) }),
            57 => write(WriteOp::Expire {
                key: key(rng),
                at: Expiry::InMs(if rng.bool() { 10_000 } else { -1 }),
                cond: ExpireCond::Always,
            }),
            58 if rng.u8(..10) == 0 => write(WriteOp::FlushAll),
            58..=61 => read(ReadQuery::ZCard(key(rng))),
            62..=67 => read(ReadQuery::ZScore { key: key(rng), members: members(rng, 5), many: rng.bool() }),
            68..=72 => read(ReadQuery::ZRank { key: key(rng), member: member(rng), rev: rng.bool() }),
            73..=76 => read(ReadQuery::ZCount { key: key(rng), by: by(rng) }),
            77..=86 => read(ReadQuery::ZRange { key: key(rng), spec: spec(rng) }),
            87..=90 => read(ReadQuery::ZRandMember {
                key: key(rng),
                count: rng.bool().then(|| rng.i64(-6..12)),
                with_scores: rng.bool(),
                seed: rng.u64(..),
            }),
            91..=92 => read(ReadQuery::ZScan { key: key(rng), cursor: 0, scan: every_step("m1*", false) }),
            93..=95 => read(ReadQuery::ZCombine {
                op: op(rng),
                keys: vec![key(rng), key(rng)],
                weights: weights(rng),
                aggregate: aggregate(rng),
                with_scores: rng.bool(),
            }),
            96..=97 => read(ReadQuery::ZInterCard { keys: vec![key(rng), key(rng)], limit: rng.u64(0..5) }),
            98 => read(ReadQuery::Keys(Bytes::from("*"))),
            _ => read(ReadQuery::DbSize),
        }
    }

    /// A reply with the order of ZSCAN's pairs taken out: a tree is scanned bucket by bucket, a
    /// whole sorted set in order.
    fn unordered_scan(step: &Queued, reply: Frame) -> Frame {
        match (step, reply) {
            (Queued::Read(ReadQuery::ZScan { .. }), Frame::Array(mut parts)) => {
                let Some(Frame::Array(items)) = parts.pop() else { panic!("ZSCAN's reply") };
                let mut pairs: Vec<Frame> = items.chunks(2).map(|pair| Frame::Array(pair.to_vec())).collect();
                pairs.sort_by_key(|pair| format!("{pair:?}"));
                parts.push(Frame::Array(pairs));
                Frame::Array(parts)
            }
            (_, reply) => reply,
        }
    }

    /// Small trees: nodes of one to five, split, merged, grown and shrunk all the time.
    fn small_trees(rng: &mut fastrand::Rng) -> Limits {
        Limits {
            whole_fields: rng.usize(1..6),
            whole_again: rng.u64(0..3),
            bucket_load: rng.u64(1..5),
            tree_node: rng.usize(1..6),
            ..Limits::default()
        }
    }

    /// Sorted sets stored as trees answer every sorted set command as whole ones do, reply for
    /// reply.
    #[test]
    fn sorted_sets_in_trees_answer_as_whole_ones_do() {
        let all = |key| ReadQuery::ZRange {
            key,
            spec: ZRangeSpec { by: ZRangeBy::Rank(0, -1), rev: false, limit: None, with_scores: true },
        };
        layouts_agree(small_trees, random_step, unordered_scan, all);
    }

    /// A tree of thousands of members in nodes of eight (five levels): ranks, scores and
    /// ranges agree with a whole sorted set's as members come and go in bulk.
    #[test]
    fn a_deep_tree_keeps_ranks_and_ranges_as_members_come_and_go() {
        let limits =
            Limits { tree_node: 8, whole_fields: 16, whole_again: 4, bucket_load: 8, ..Limits::default() };
        let kept_whole = Limits { whole_fields: usize::MAX, ..Limits::default() };
        let (mut tree, mut whole) = (Replica::new(limits), Replica::new(kept_whole));
        let mut rng = fastrand::Rng::with_seed(7);
        let key = Bytes::from("z");
        let mut index = 1;
        for round in 0..12 {
            let mut steps: Vec<Queued> = (0..20)
                .map(|_| {
                    let pairs = (0..100)
                        .map(|_| (rng.i32(-500..500) as f64, Bytes::from(format!("m{}", rng.u16(..6000)))))
                        .collect();
                    Queued::Write(WriteOp::ZAdd {
                        key: key.clone(),
                        pairs,
                        cond: ZAddCond::Always,
                        cmp: ZAddCmp::Any,
                        ch: true,
                        incr: false,
                    })
                })
                .collect();
            let score = |v: f64| ZScoreBound { value: v, open: false };
            let (low, high) = (rng.i32(-500..500) as f64, rng.i32(-500..500) as f64);
            steps.push(Queued::Write(WriteOp::ZRemRange {
                key: key.clone(),
                by: ZRangeBy::Score(score(low), score(high)),
            }));
            steps.push(Queued::Write(WriteOp::ZRemRange {
                key: key.clone(),
                by: ZRangeBy::Rank(rng.i64(0..500), rng.i64(500..900)),
            }));
            steps.push(Queued::Write(WriteOp::ZPop {
                key: key.clone(),
                max: round % 2 == 0,
                count: Some(300),
            }));
            for _ in 0..30 {
                let member = Bytes::from(format!("m{}", rng.u16(..6000)));
                steps.push(Queued::Read(ReadQuery::ZRank {
                    key: key.clone(),
                    member: member.clone(),
                    rev: rng.bool(),
                }));
                steps.push(Queued::Read(ReadQuery::ZScore {
                    key: key.clone(),
                    members: vec![member],
                    many: false,
                }));
                let spec = ZRangeSpec {
                    by: ZRangeBy::Score(score(rng.i32(-500..500) as f64), score(rng.i32(-500..500) as f64)),
                    rev: rng.bool(),
                    limit: Some((rng.i64(0..50), rng.i64(0..50))),
                    with_scores: true,
                };
                steps.push(Queued::Read(ReadQuery::ZRange { key: key.clone(), spec }));
            }
            steps.push(Queued::Read(ReadQuery::ZCard(key.clone())));
            assert_eq!(tree.apply(index, &steps), whole.apply(index, &steps), "round {round}");
            index += steps.len() as u64;
            tree.check_records();
        }
        let Some(Parts::Tree(stored)) =
            tree.db_view().value(&key).unwrap().map(|v| Parts::of(&v).unwrap().unwrap())
        else {
            panic!("a tree")
        };
        assert!(stored.height >= 4, "{stored:?}");
    }

    #[test]
    fn a_directory_reads_back_and_a_damaged_one_is_refused() {
        let id = crate::keyspace::parts::PartsId { index: 9, n: 2 };
        let tree = Tree { scores: Buckets::sized_for(id, 300, 64), root: 5, height: 2, next: 7 };
        assert_eq!(Tree::decode(&tree.encode()).unwrap(), Some(tree));
        assert!(Tree::decode(&tree.encode()[..30]).is_err(), "cut short");
        let beyond = Tree { root: 7, ..tree };
        assert!(Tree::decode(&beyond.encode()).is_err(), "a root not yet numbered");
        let node = Node::Inner(vec![
            Child { first: (1.5, Bytes::from("a")), number: 3, count: 10 },
            Child { first: (f64::INFINITY, Bytes::from("b")), number: 4, count: 1 },
        ]);
        assert_eq!(Node::decode(&node.encode(), false).unwrap(), node);
    }
}
