//! A whole node in one process: RedisStore driven through its typed `Execute` message, and a
//! Session driven over its socket with pipelined requests split at awkward boundaries. Each test
//! shuts its node down, so the process never exits with RocksDB still open on another thread.

use std::time::{Duration, Instant};

use actors::command::Command;
use actors::pubsub::Deliver;
use actors::raft_node::RaftTiming;
use actors::redis_store::{Block, ClientEvent, Execute};
use actors::resp::{Frame, RespLimits};
use actors::{start_node, NodeConfig, RunningNode};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn single_node(dir: &std::path::Path) -> RunningNode {
    single_node_with(dir, Default::default()).await
}

async fn single_node_with(dir: &std::path::Path, limits: RespLimits) -> RunningNode {
    single_node_configured(dir, |config| config.limits = limits).await
}

async fn single_node_configured(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut NodeConfig),
) -> RunningNode {
    let mut config = NodeConfig {
        id: 1,
        cluster: vec!["127.0.0.1:0".into()],
        bind: "127.0.0.1".into(),
        port: 0,
        data_dir: dir.to_path_buf(),
        raft: RaftTiming { tick: Duration::from_millis(10), ..Default::default() },
        store: Default::default(),
        limits: RespLimits::default(),
        requirepass: None,
        maxclients: 10_000,
        join: false,
        cluster_secret: Vec::new(),
        fault_control: None,
        fsync: Default::default(),
        tls: None,
    };
    configure(&mut config);
    start_node(config).await.expect("the node starts")
}

fn command(words: &[&str]) -> Command {
    Command::parse(words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()).unwrap()
}

async fn execute(node: &RunningNode, words: &[&str]) -> Frame {
    node.store.send(Execute(command(words))).await.expect("RedisStore answers")
}

/// Writes until the node has elected itself (before that, writes answer CLUSTERDOWN).
async fn wait_for_leadership(node: &RunningNode) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if execute(node, &["SET", "ready", "1"]).await == Frame::ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the single node never became leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn redis_store_answers_typed_commands_through_raft() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    assert_eq!(execute(&node, &["SET", "k", "v"]).await, Frame::ok());
    assert_eq!(execute(&node, &["GET", "k"]).await, Frame::bulk("v"));
    assert_eq!(execute(&node, &["INCR", "n"]).await, Frame::Integer(1));
    assert_eq!(execute(&node, &["INCR", "n"]).await, Frame::Integer(2));
    assert_eq!(
        execute(&node, &["INCR", "k"]).await,
        Frame::Error("ERR value is not an integer or out of range".into())
    );
    assert_eq!(execute(&node, &["DEL", "k", "n", "missing"]).await, Frame::Integer(2));
    assert_eq!(execute(&node, &["EXISTS", "k", "n"]).await, Frame::Integer(0));
    assert_eq!(execute(&node, &["GET", "k"]).await, Frame::Null);
    assert_eq!(execute(&node, &["DBSIZE"]).await, Frame::Integer(1), "only `ready` is left");
    node.shutdown().await;
}

#[actix_rt::test]
async fn session_answers_pipelined_requests_split_at_odd_boundaries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    let mut stream = TcpStream::connect(node.redis_addr).await.unwrap();
    // RESP and inline requests mixed, the write before the read of the same key.
    let requests: &[u8] =
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$5\r\nfirst\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n\
*3\r\n$3\r\nSET\r\n$1\r\na\r\n$6\r\nsecond\r\nGET a\r\nECHO \"x y\"\r\n";
    for chunk in requests.chunks(3) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
    }
    let expected: &[u8] = b"+OK\r\n$5\r\nfirst\r\n+PONG\r\n+OK\r\n$6\r\nsecond\r\n$3\r\nx y\r\n";
    read_expected(&mut stream, expected).await;
    node.shutdown().await;
}

/// How many clients wait in a blocking command, from `INFO clients`.
async fn blocked_clients(node: &RunningNode) -> usize {
    let Frame::Verbatim(info) = execute(node, &["INFO", "clients"]).await else {
        panic!("INFO answers text")
    };
    let line = info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).expect("the field is there");
    line.trim().parse().unwrap()
}

/// Waits until `blocked_clients` is `n`.
async fn wait_for_blocked(node: &RunningNode, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while blocked_clients(node).await != n {
        assert!(Instant::now() < deadline, "blocked_clients never became {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A blocking pop, as a Session sends it: the receiver of its answer.
fn block(node: &RunningNode, words: &[&str]) -> tokio::sync::oneshot::Receiver<Frame> {
    block_as(node, 0, words)
}

/// A blocking pop of the client `client`.
fn block_as(node: &RunningNode, client: u64, words: &[&str]) -> tokio::sync::oneshot::Receiver<Frame> {
    let Command::Blocking { op, timeout } = command(words) else { panic!("{words:?} is a blocking command") };
    let (reply, answer) = tokio::sync::oneshot::channel();
    node.store.do_send(Block { client, op, timeout, reply });
    answer
}

#[actix_rt::test]
async fn client_kill_closes_the_connections_it_names_and_not_the_asking_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    let mut asking = TcpStream::connect(node.redis_addr).await.unwrap();
    let mut victim = TcpStream::connect(node.redis_addr).await.unwrap();
    let id = client_id(&mut victim).await;
    // The victim waits in BLPOP; it is marked so in CLIENT LIST, then killed.
    victim.write_all(b"BLPOP q 0\r\n").await.unwrap();
    wait_for_blocked(&node, 1).await;
    asking.write_all(b"CLIENT LIST\r\n").await.unwrap();
    let mut list = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), asking.read(&mut list)).await.unwrap().unwrap();
    let list = String::from_utf8_lossy(&list[..n]).into_owned();
    let line = list.lines().find(|l| l.starts_with(&format!("id={id} "))).expect("the victim is listed");
    assert!(line.contains("flags=b"), "{line}");
    exchange(&mut asking, format!("CLIENT KILL ID {id}\r\n").as_bytes(), b":1\r\n").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), victim.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("the connection closes").unwrap(), 0, "closed without a reply");
    wait_for_blocked(&node, 0).await;
    // SKIPME is the default: the asking connection survives a filter that names it.
    let own = format!("CLIENT KILL ADDR {}\r\n", asking.local_addr().unwrap());
    exchange(&mut asking, own.as_bytes(), b":0\r\n").await;
    exchange(&mut asking, b"CLIENT KILL 10.0.0.1:1\r\n", b"-ERR No such client\r\n").await;
    exchange(&mut asking, b"PING\r\n", b"+PONG\r\n").await;
    node.shutdown().await;
}

#[actix_rt::test]
async fn a_blocked_pop_waits_for_a_push_and_a_client_that_leaves_stops_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    // Something to pop: answered at once, as LPOP would be.
    assert_eq!(execute(&node, &["RPUSH", "q", "first"]).await, Frame::Integer(1));
    let answer = block(&node, &["BLPOP", "q", "0"]);
    assert_eq!(answer.await.unwrap(), Frame::Array(vec![Frame::bulk("q"), Frame::bulk("first")]));

    // Nothing to pop: the clients wait, in the order they came, until pushes feed their keys.
    let one = block(&node, &["BRPOP", "other", "q", "0"]);
    wait_for_blocked(&node, 1).await;
    let two = block(&node, &["BZPOPMIN", "z", "q", "0"]);
    wait_for_blocked(&node, 2).await;
    assert_eq!(execute(&node, &["RPUSH", "q", "a"]).await, Frame::Integer(1));
    assert_eq!(one.await.unwrap(), Frame::Array(vec![Frame::bulk("q"), Frame::bulk("a")]));
    assert_eq!(blocked_clients(&node).await, 1, "the sorted set's client waits on");
    assert_eq!(execute(&node, &["ZADD", "z", "5", "m"]).await, Frame::Integer(1));
    assert_eq!(two.await.unwrap(), Frame::Array(vec![Frame::bulk("z"), Frame::bulk("m"), Frame::bulk("5")]));
    assert_eq!(execute(&node, &["EXISTS", "q", "z"]).await, Frame::Integer(0));

    // One push of three elements serves three clients; the fourth waits for the next one.
    let waiting: Vec<_> =
        (0..4).map(|_| block(&node, &["BLMOVE", "jobs", "done", "LEFT", "RIGHT", "0"])).collect();
    wait_for_blocked(&node, 4).await;
    assert_eq!(execute(&node, &["RPUSH", "jobs", "j1", "j2", "j3"]).await, Frame::Integer(3));
    let mut waiting = waiting.into_iter();
    let mut served = Vec::new();
    for answer in waiting.by_ref().take(3) {
        served.push(answer.await.unwrap());
    }
    let moved = Frame::Array(vec![Frame::bulk("j1"), Frame::bulk("j2"), Frame::bulk("j3")]);
    assert_eq!(Frame::Array(served), moved, "the first three clients, in the order they blocked");
    assert_eq!(execute(&node, &["LRANGE", "done", "0", "-1"]).await, moved);
    // (It may be trying again for a moment: the pops between left "jobs" with elements.)
    wait_for_blocked(&node, 1).await;

    // A deadline: answered null.
    let late = block(&node, &["BLMPOP", "0.05", "1", "nothing", "LEFT"]);
    assert_eq!(late.await.unwrap(), Frame::NullArray);

    // CLIENT UNBLOCK ends a wait, as a timeout would or with an error.
    let unblocked = block_as(&node, 41, &["BLPOP", "nothing", "0"]);
    let errored = block_as(&node, 42, &["BZPOPMAX", "nothing", "0"]);
    wait_for_blocked(&node, 3).await;
    assert_eq!(execute(&node, &["CLIENT", "UNBLOCK", "41"]).await, Frame::Integer(1));
    assert_eq!(execute(&node, &["CLIENT", "UNBLOCK", "42", "ERROR"]).await, Frame::Integer(1));
    assert_eq!(execute(&node, &["CLIENT", "UNBLOCK", "42"]).await, Frame::Integer(0), "no longer waiting");
    assert_eq!(unblocked.await.unwrap(), Frame::NullArray);
    assert_eq!(errored.await.unwrap(), Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK"));

    // A client that goes away stops waiting, and what is pushed then stays in the list.
    drop(waiting.next());
    wait_for_blocked(&node, 0).await;
    assert_eq!(execute(&node, &["RPUSH", "jobs", "kept"]).await, Frame::Integer(1));
    assert_eq!(execute(&node, &["LLEN", "jobs"]).await, Frame::Integer(1));
    node.shutdown().await;
}

/// The connection's `CLIENT ID`.
async fn client_id(stream: &mut TcpStream) -> u64 {
    stream.write_all(b"CLIENT ID\r\n").await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        reply.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&reply);
    text.trim().strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("CLIENT ID: {text}"))
}

/// Sends `requests` and reads exactly the bytes of `expected` back.
async fn exchange(stream: &mut TcpStream, requests: &[u8], expected: &[u8]) {
    stream.write_all(requests).await.unwrap();
    read_expected(stream, expected).await;
}

/// Reads as many bytes as `expected` holds and checks they are those.
async fn read_expected(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut got))
        .await
        .expect("replies arrive")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
}

#[actix_rt::test]
async fn a_transaction_larger_than_a_request_is_refused_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A whole transaction becomes one Raft entry, so it may hold no more than one request:
    // 4000 bytes here, counting each queued command's arguments plus a fixed overhead (about
    // 1.4 KB for each SET below).
    let limits = RespLimits { max_bulk_len: 1000, max_request_len: 4000, ..RespLimits::default() };
    let node = single_node_with(dir.path(), limits).await;
    wait_for_leadership(&node).await;
    let mut stream = TcpStream::connect(node.redis_addr).await.unwrap();
    let set = |key: &str| {
        let value = "v".repeat(900);
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n", key.len(), value.len())
    };
    exchange(&mut stream, b"*1\r\n$5\r\nMULTI\r\n", b"+OK\r\n").await;
    exchange(&mut stream, set("a").as_bytes(), b"+QUEUED\r\n").await;
    exchange(&mut stream, set("b").as_bytes(), b"+QUEUED\r\n").await;
    exchange(
        &mut stream,
        set("c").as_bytes(),
        b"-ERR transaction too large: its commands exceed 4000 bytes\r\n",
    )
    .await;
    exchange(
        &mut stream,
        b"*1\r\n$4\r\nEXEC\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    // Nothing was applied, and the connection goes on.
    exchange(&mut stream, b"*2\r\n$6\r\nEXISTS\r\n$1\r\na\r\n", b":0\r\n").await;
    exchange(&mut stream, set("a").as_bytes(), b"+OK\r\n").await;
    node.shutdown().await;
}

#[actix_rt::test]
async fn a_session_past_maxclients_gets_redis_error_and_a_freed_place_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node_configured(dir.path(), |config| config.maxclients = 2).await;
    let mut first = TcpStream::connect(node.redis_addr).await.unwrap();
    exchange(&mut first, b"PING\r\n", b"+PONG\r\n").await;
    let mut second = TcpStream::connect(node.redis_addr).await.unwrap();
    exchange(&mut second, b"PING\r\n", b"+PONG\r\n").await;

    let mut third = TcpStream::connect(node.redis_addr).await.unwrap();
    let mut said = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), third.read_to_end(&mut said))
        .await
        .expect("the connection past maxclients is closed")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&said), "-ERR max number of clients reached\r\n");
    exchange(&mut first, b"CONFIG GET maxclients\r\n", b"*2\r\n$10\r\nmaxclients\r\n$1\r\n2\r\n").await;

    // A place is given back once the node has seen the connection close.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut again = TcpStream::connect(node.redis_addr).await.unwrap();
        again.write_all(b"PING\r\n").await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), again.read_buf(&mut reply)).await;
        if reply == b"+PONG\r\n" {
            break;
        }
        assert_eq!(String::from_utf8_lossy(&reply), "-ERR max number of clients reached\r\n");
        assert!(Instant::now() < deadline, "the closed connection's place was never given back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(info_stat(&node, "rejected_connections").await >= 1, "no rejection counted");
    node.shutdown().await;
}

/// A counter of `INFO stats`.
async fn info_stat(node: &RunningNode, name: &str) -> u64 {
    let Frame::Verbatim(stats) = execute(node, &["INFO", "stats"]).await else { panic!("INFO stats") };
    let field = format!("{name}:");
    let value = stats.lines().find_map(|l| l.strip_prefix(field.as_str()));
    value.and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[actix_rt::test]
async fn config_resetstat_starts_the_info_stats_counters_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    let mut stream = TcpStream::connect(node.redis_addr).await.unwrap();
    for _ in 0..10 {
        exchange(&mut stream, b"PING\r\n", b"+PONG\r\n").await;
    }
    assert!(info_stat(&node, "total_commands_processed").await >= 11);
    exchange(&mut stream, b"CONFIG RESETSTAT\r\n", b"+OK\r\n").await;
    let processed = info_stat(&node, "total_commands_processed").await;
    assert!(processed <= 1, "only the RESETSTAT itself may count after the reset: {processed}");
    assert_eq!(info_stat(&node, "total_connections_received").await, 0);
    node.shutdown().await;
}

/// Stands in for a subscribed Session: keeps what RedisStore delivers.
struct Inbox(tokio::sync::mpsc::UnboundedSender<Frame>);

impl actix::Actor for Inbox {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Deliver> for Inbox {
    type Result = ();

    fn handle(&mut self, Deliver(message): Deliver, _: &mut Self::Context) {
        let _ = self.0.send(message);
    }
}

fn push(parts: &[&str]) -> Frame {
    Frame::Push(parts.iter().map(|p| Frame::Bulk(Bytes::copy_from_slice(p.as_bytes()))).collect())
}

#[actix_rt::test]
async fn redis_store_delivers_a_published_message_to_each_subscription_it_reaches() {
    use actix::Actor;
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    let (to, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let deliver = Inbox(to).start().recipient();
    let names = |names: &[&str]| names.iter().map(|n| Bytes::copy_from_slice(n.as_bytes())).collect();
    let subscribe =
        |names, pattern| ClientEvent::Subscribe { client: 7, names, pattern, deliver: deliver.clone() };
    node.store.do_send(subscribe(names(&["news", "other"]), false));
    node.store.do_send(subscribe(names(&["n*"]), true));

    assert_eq!(execute(&node, &["PUBLISH", "news", "hello"]).await, Frame::Integer(2), "channel and pattern");
    assert_eq!(inbox.recv().await, Some(push(&["message", "news", "hello"])));
    assert_eq!(inbox.recv().await, Some(push(&["pmessage", "n*", "news", "hello"])));
    assert_eq!(execute(&node, &["PUBLISH", "nothing", "x"]).await, Frame::Integer(1), "the pattern only");
    assert_eq!(inbox.recv().await, Some(push(&["pmessage", "n*", "nothing", "x"])));
    let numsub = execute(&node, &["PUBSUB", "NUMSUB", "news", "none"]).await;
    assert_eq!(
        numsub,
        Frame::Array(vec![Frame::bulk("news"), Frame::Integer(1), Frame::bulk("none"), Frame::Integer(0)])
    );
    assert_eq!(
        execute(&node, &["PUBSUB", "CHANNELS"]).await,
        Frame::Array(vec![Frame::bulk("news"), Frame::bulk("other")])
    );
    assert_eq!(execute(&node, &["PUBSUB", "NUMPAT"]).await, Frame::Integer(1));

    node.store.do_send(ClientEvent::Unsubscribe { client: 7, names: names(&["n*"]), pattern: true });
    assert_eq!(execute(&node, &["PUBLISH", "other", "y"]).await, Frame::Integer(1));
    assert_eq!(inbox.recv().await, Some(push(&["message", "other", "y"])));
    node.store.do_send(ClientEvent::Gone(7));
    assert_eq!(
        execute(&node, &["PUBLISH", "news", "z"]).await,
        Frame::Integer(0),
        "a client gone listens no more"
    );
    assert_eq!(execute(&node, &["PUBSUB", "CHANNELS"]).await, Frame::Array(vec![]));
    assert!(inbox.try_recv().is_err(), "nothing more was delivered");
    node.shutdown().await;
}

#[actix_rt::test]
async fn a_subscribed_session_gets_its_messages_between_its_replies_as_redis_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    let mut subscriber = TcpStream::connect(node.redis_addr).await.unwrap();
    let mut publisher = TcpStream::connect(node.redis_addr).await.unwrap();
    exchange(
        &mut subscriber,
        b"SUBSCRIBE a b\r\nPSUBSCRIBE a*\r\nGET k\r\nPING\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n\
*3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:3\r\n\
-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n\
*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    )
    .await;
    exchange(&mut publisher, b"PUBLISH a hi\r\n", b":2\r\n").await;
    read_expected(
        &mut subscriber,
        b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n*4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$2\r\nhi\r\n",
    )
    .await;
    exchange(
        &mut subscriber,
        b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPING\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n\
*3\r\n$12\r\npunsubscribe\r\n$2\r\na*\r\n:0\r\n+PONG\r\n",
    )
    .await;
    exchange(&mut publisher, b"PUBLISH a again\r\n", b":0\r\n").await;
    // RESP3: messages are pushes, and any command may be sent.
    subscriber.write_all(b"HELLO 3\r\nPING\r\n").await.unwrap();
    let mut hello = Vec::new();
    while !hello.ends_with(b"+PONG\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(Duration::from_secs(20), subscriber.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        hello.push(byte[0]);
    }
    exchange(
        &mut subscriber,
        b"SUBSCRIBE c\r\nGET k\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n_\r\n",
    )
    .await;
    exchange(&mut publisher, b"PUBLISH c m\r\n", b":1\r\n").await;
    read_expected(&mut subscriber, b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n").await;
    node.shutdown().await;
}

#[actix_rt::test]
async fn messages_held_behind_a_blocked_request_count_against_the_output_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    wait_for_leadership(&node).await;
    // A RESP3 subscriber may send any command: it blocks, and its messages wait behind BLPOP.
    let mut subscriber = TcpStream::connect(node.redis_addr).await.unwrap();
    subscriber.write_all(b"HELLO 3\r\nSUBSCRIBE c\r\nBLPOP nothing 0\r\n").await.unwrap();
    wait_for_blocked(&node, 1).await;
    let message = "m".repeat(4 << 20);
    let numsub = || execute(&node, &["PUBSUB", "NUMSUB", "c"]);
    let mut published = 0;
    while numsub().await == Frame::Array(vec![Frame::bulk("c"), Frame::Integer(1)]) {
        assert!(published < 40, "160 MiB of messages held and the subscriber still connected");
        assert_eq!(execute(&node, &["PUBLISH", "c", &message]).await, Frame::Integer(1));
        published += 1;
    }
    // Sixteen messages of a little over 4 MiB pass 64 MiB.
    assert_eq!(published, 16, "cut off past the limit, not before");
    // What it was sent before it blocked, then the end of the connection.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), subscriber.read_to_end(&mut received))
        .await
        .expect("the connection is closed")
        .unwrap_or_default();
    assert!(received.len() < 64 << 10, "no message reached it: {} bytes", received.len());
    wait_for_blocked(&node, 0).await; // it no longer waits
    node.shutdown().await;
}
