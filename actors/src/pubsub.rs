//! Pub/sub: which of this node's connections listen to which channels and patterns, and the
//! delivery of published messages to them. RedisStore owns the [`Subscriptions`].
//!
//! `PUBLISH` is a write like any other: its message travels in the Raft log, and every node
//! delivers it to its own subscribers when it applies the entry ([`Published`]). So a client
//! subscribed on any node receives what is published through any node, every subscriber sees
//! the messages in the same order (the log's), and a message published while a node is cut off
//! reaches that node's subscribers once it catches up, if they are still there. As in Redis
//! Cluster, `PUBLISH` replies how many subscriptions *of the node it was sent to* match: counted
//! when it is proposed, since that node's subscriptions are all it knows.
//!
//! A subscription belongs to a connection: the Session keeps the client's own sets (for the
//! counts its replies carry) and tells RedisStore of each change, RedisStore forgets a client's
//! subscriptions when it is gone. Messages reach the Session as [`Deliver`], which queues them
//! behind the replies to the requests it read before.

use std::collections::{BTreeMap, HashMap, HashSet};

use actix::prelude::*;
use bytes::Bytes;

use crate::command::pubsub::PubSubQuery;
use crate::glob::glob_match;
use crate::resp::Frame;

/// A published message, as an applied entry carries it to every node's subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub channel: Bytes,
    pub message: Bytes,
}

/// A message for a subscribed connection (a RESP3 push). Sent to a Session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver(pub Frame);

/// The listeners of each channel (or pattern), by client id.
type Table = BTreeMap<Bytes, BTreeMap<u64, Recipient<Deliver>>>;

/// Who listens: by channel, by pattern, and each client's own.
#[derive(Default)]
pub struct Subscriptions {
    channels: Table,
    patterns: Table,
    /// Each subscribed client's channels and patterns.
    clients: HashMap<u64, (HashSet<Bytes>, HashSet<Bytes>)>,
}

impl Subscriptions {
    /// `client` (reached at `to`) listens to `names`, channels or (`pattern`) patterns.
    pub fn subscribe(&mut self, client: u64, names: Vec<Bytes>, pattern: bool, to: Recipient<Deliver>) {
        let own = self.clients.entry(client).or_default();
        for name in names {
            let (table, mine) = match pattern {
                false => (self.channels.entry(name.clone()).or_default(), &mut own.0),
                true => (self.patterns.entry(name.clone()).or_default(), &mut own.1),
            };
            table.insert(client, to.clone());
            mine.insert(name);
        }
    }

    /// `client` stops listening to `names`.
    pub fn unsubscribe(&mut self, client: u64, names: &[Bytes], pattern: bool) {
        let Some(own) = self.clients.get_mut(&client) else { return };
        let (mine, table) = match pattern {
            false => (&mut own.0, &mut self.channels),
            true => (&mut own.1, &mut self.patterns),
        };
        for name in names {
            if mine.remove(name) {
                remove_listener(table, name, client);
            }
        }
        if own.0.is_empty() && own.1.is_empty() {
            self.clients.remove(&client);
        }
    }

    /// Forgets every subscription of a client that is gone.
    pub fn remove_client(&mut self, client: u64) {
        if let Some((channels, patterns)) = self.clients.remove(&client) {
            for channel in &channels {
                remove_listener(&mut self.channels, channel, client);
            }
            for pattern in &patterns {
                remove_listener(&mut self.patterns, pattern, client);
            }
        }
    }

    /// How many subscriptions a message to `channel` reaches: its subscribers, and the
    /// subscribers of each pattern it matches.
    pub fn receivers(&self, channel: &[u8]) -> u64 {
        let direct = self.channels.get(channel).map_or(0, BTreeMap::len);
        let by_pattern: usize = self
            .patterns
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, channel))
            .map(|(_, listeners)| listeners.len())
            .sum();
        (direct + by_pattern) as u64
    }

    /// Hands a published message to every subscription it reaches, channel subscribers first,
    /// as Redis does.
    pub fn deliver(&self, published: &Published) {
        let Published { channel, message } = published;
        if let Some(listeners) = self.channels.get(channel) {
            for to in listeners.values() {
                let frame =
                    vec![Frame::bulk("message"), Frame::Bulk(channel.clone()), Frame::Bulk(message.clone())];
                to.do_send(Deliver(Frame::Push(frame)));
            }
        }
        for (pattern, listeners) in &self.patterns {
            if !glob_match(pattern, channel) {
                continue;
            }
            for to in listeners.values() {
                let frame = vec![
                    Frame::bulk("pmessage"),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ];
                to.do_send(Deliver(Frame::Push(frame)));
            }
        }
    }

    /// Answers `PUBSUB CHANNELS | NUMSUB | NUMPAT` about this node's clients.
    pub fn query(&self, query: &PubSubQuery) -> Frame {
        match query {
            PubSubQuery::Channels(pattern) => Frame::Array(
                self.channels
                    .keys()
                    .filter(|channel| pattern.as_ref().is_none_or(|p| glob_match(p, channel)))
                    .map(|channel| Frame::Bulk(channel.clone()))
                    .collect(),
            ),
            PubSubQuery::NumSub(channels) => Frame::Array(
                channels
                    .iter()
                    .flat_map(|channel| {
                        let n = self.channels.get(channel).map_or(0, BTreeMap::len);
                        [Frame::Bulk(channel.clone()), Frame::Integer(n as i64)]
                    })
                    .collect(),
            ),
            PubSubQuery::NumPat => Frame::Integer(self.patterns.len() as i64),
        }
    }
}

/// Removes `client` from the listeners of `name`, and `name` once no one listens.
fn remove_listener(table: &mut Table, name: &Bytes, client: u64) {
    if let Some(listeners) = table.get_mut(name) {
        listeners.remove(&client);
        if listeners.is_empty() {
            table.remove(name);
        }
    }
}
