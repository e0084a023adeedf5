//! Hostile and broken clients against a real three-node cluster: each must cost the node only
//! bounded memory and must not slow down anybody else.
//!
//! - a slow-loris client (a request one byte at a time, or a bulk string announced and never
//!   finished) does not stall other clients;
//! - a client pipelining 100 k commands without reading replies does not grow the node's
//!   memory without bound (the node stops reading from it), other clients are served
//!   meanwhile, and once it reads it gets every reply, in order;
//! - a client whose unread replies pass the output limit is disconnected, and logged; so is a
//!   subscriber that never reads the messages published to it, and its node forgets it;
//! - 10 k idle connections do not stall other clients;
//! - a thousand clients blocked in BLPOP do not stall other clients, and once gone are
//!   forgotten (a later push stays in its list);
//! - garbage and protocol violations close that connection only;
//! - `--proto-max-bulk-len` limits values and `CONFIG GET` reports it;
//! - clients past `--maxclients` are refused with Redis's error, and a place freed is taken
//!   again;
//! - under a low open-file limit the node lowers `--maxclients` to fit, and a flood of
//!   connections is refused while the node goes on writing new files.
//!
//! Memory is the node's resident set (`VmRSS` in `/proc/<pid>/status`); the pid is found by
//! the node's `--port` argument in `/proc/*/cmdline`. Run them one at a time
//! (`cargo test --release --test hostile_clients -- --test-threads=1`, as `make test` does).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use actors::resp::encode_request;
use common::{blocked_clients, get, set, wait_until, Cluster};
use redis::Value;

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one command of a well-behaved client may take while the node is under attack.
/// An unloaded node answers in about a millisecond; this leaves room for a slow CI machine.
const PROMPT: Duration = Duration::from_secs(2);

/// How many commands the well-behaved client sends during an attack.
const PROBE_COMMANDS: usize = 200;

/// Runs `PROBE_COMMANDS` SET/GET pairs' worth of commands on a fresh connection to `id` and
/// asserts every one answers correctly within `PROMPT`. Returns the slowest.
fn assert_served_promptly(cluster: &Cluster, id: u64, what: &str) -> Duration {
    let mut con = cluster.client(id);
    let mut slowest = Duration::ZERO;
    for i in 0..PROBE_COMMANDS / 2 {
        let key = format!("probe:{i}");
        let started = Instant::now();
        set(&mut con, &key, i.to_string());
        slowest = slowest.max(started.elapsed());
        let started = Instant::now();
        assert_eq!(get(&mut con, &key), Some(i.to_string().into_bytes()));
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < PROMPT, "{what}: a normal client waited {slowest:?} for one reply");
    slowest
}

/// The pid of the node process serving Redis on `port`.
fn node_pid(port: u16) -> u32 {
    let port = port.to_string();
    for entry in std::fs::read_dir("/proc").expect("cannot list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"--port" && w[1] == port.as_bytes())
            && args.windows(2).any(|w| w[0] == b"--cluster")
        {
            return pid;
        }
    }
    panic!("no process with --port {port} in /proc");
}

/// The resident set size of a process, in bytes.
fn rss(pid: u32) -> usize {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("cannot read the node's status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("no VmRSS line");
    let kib: usize = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a VmRSS number");
    kib * 1024
}

/// The soft limit on open files of this process (the nodes inherit it).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("cannot read /proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("no open files limit");
    let soft = line.split_whitespace().nth(3).expect("a soft limit");
    soft.parse().unwrap_or(usize::MAX)
}

/// One reply, enough of RESP for these tests: simple strings, errors, integers and bulks.
#[derive(Debug, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&line[1..]).trim_end().to_string();
    Ok(match line[0] {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Integer(text.parse().expect("an integer reply")),
        b'$' if text == "-1" => Reply::Bulk(None),
        b'$' => {
            let len: usize = text.parse().expect("a bulk length");
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data)?;
            data.truncate(len);
            Reply::Bulk(Some(data))
        }
        other => panic!("unexpected reply type {:?} in {:?}", other as char, String::from_utf8_lossy(&line)),
    })
}

/// Reads until the node closes the connection; returns everything read. Fails the test if
/// the connection is still open after `timeout`.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!(
                    "the connection was still open after {timeout:?}; it had sent {:?}",
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                )
            }
            // A reset also closes it (the node may close with unread input).
            Err(_) => return out,
        }
    }
}

#[test]
fn slow_loris_clients_do_not_stall_other_clients() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);

    // Half-sent bulks: announced large, a few bytes sent, never finished.
    let mut half_sent: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut stream = cluster.raw_client(leader);
            let key = format!("loris:{i}");
            stream
                .write_all(format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$100000\r\nabc", key.len()).as_bytes())
                .unwrap();
            stream
        })
        .collect();

    // Byte-by-byte senders, one byte every 100 ms, of a request that never ends.
    let stop = Arc::new(AtomicBool::new(false));
    let dribblers: Vec<_> = (0..10)
        .map(|_| {
            let mut stream = cluster.raw_client(leader);
            let stop = stop.clone();
            thread::spawn(move || {
                let endless = b"*2\r\n$4\r\nECHO\r\n$1000000\r\n".iter().chain(std::iter::repeat(&b'x'));
                for byte in endless {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                        return stream;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                unreachable!("the request never ends")
            })
        })
        .collect();
    // Let every dribbler get into the middle of its bulk string.
    thread::sleep(Duration::from_millis(2_500));

    let slowest = assert_served_promptly(&cluster, leader, "slow-loris clients connected");
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    assert_served_promptly(&cluster, follower, "slow-loris clients connected to the leader");
    eprintln!("slowest normal reply during the slow-loris attack: {slowest:?}");

    // The half-sent requests were kept, not dropped: finishing one completes it.
    let stream = &mut half_sent[0];
    stream.write_all(&vec![b'v'; 100_000 - 3]).unwrap();
    stream.write_all(b"\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_reply(&mut reader).unwrap(), Reply::Status("OK".into()));
    let value = get(&mut cluster.client(leader), "loris:0").expect("loris:0 was set");
    assert_eq!(value, [&b"abc"[..], &vec![b'v'; 100_000 - 3]].concat());

    stop.store(true, Ordering::Relaxed);
    for dribbler in dribblers {
        dribbler.join().expect("a dribbler panicked");
    }
}

#[test]
fn a_client_pipelining_100k_commands_without_reading_is_bounded_and_then_answered_in_order() {
    const COMMANDS: usize = 100_000;
    const KEYS: usize = 100;
    const VALUE_LEN: usize = 4096;
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let pid = node_pid(cluster.redis_port(leader));

    // 100 keys of 4 KiB, each starting with its own number, so a reply shows which GET it
    // answers: 100 k replies are about 370 MiB, far more than the node may buffer (and than
    // the kernel's socket buffers hold).
    let mut con = cluster.client(leader);
    let value_of = |j: usize| {
        let mut value = format!("{j}:").into_bytes();
        value.resize(VALUE_LEN, b'.');
        value
    };
    for j in 0..KEYS {
        set(&mut con, format!("flood:{j}"), value_of(j));
    }
    // Warm up the node's allocations before taking the baseline.
    assert_served_promptly(&cluster, leader, "before the flood");
    let before = rss(pid);

    // Every 500th command is a SET (answered +OK), the others GETs. (Few SETs: a connection's
    // reads wait for its earlier writes and the other way round, so each SET is a barrier.)
    let mut flood = Vec::new();
    for i in 0..COMMANDS {
        if i % 500 == 0 {
            flood.extend(encode_request(&[
                b"SET",
                format!("flood:set:{}", i % 64).as_bytes(),
                i.to_string().as_bytes(),
            ]));
        } else {
            flood.extend(encode_request(&[b"GET", format!("flood:{}", i % KEYS).as_bytes()]));
        }
    }
    let flood_len = flood.len();
    let stream = cluster.raw_client(leader);
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let mut stream = stream.try_clone().unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            for chunk in flood.chunks(16 * 1024) {
                stream.write_all(chunk).expect("writing the flood");
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        })
    };

    // While the flooding client reads nothing: other clients are served, and the node's
    // memory stays bounded. Sampled for a few seconds, the time the node needs to run the
    // whole flood when nothing holds it back.
    let mut peak = before;
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        assert_served_promptly(&cluster, leader, "a client floods without reading");
        peak = peak.max(rss(pid));
        thread::sleep(Duration::from_millis(100));
    }
    let growth = peak.saturating_sub(before);
    eprintln!(
        "flood: sent {} of {flood_len} bytes while unread; node RSS {} MiB -> peak {} MiB",
        sent.load(Ordering::Relaxed),
        before >> 20,
        peak >> 20
    );
    assert!(
        growth < 32 << 20,
        "the node's RSS grew by {} MiB while a client pipelined without reading",
        growth >> 20
    );

    // The client reads now: every reply arrives, in request order.
    let reading = Instant::now();
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    for i in 0..COMMANDS {
        let reply = read_reply(&mut reader).unwrap_or_else(|e| panic!("reply {i} of the flood: {e}"));
        if i % 500 == 0 {
            assert_eq!(reply, Reply::Status("OK".into()), "reply {i}");
        } else {
            assert_eq!(reply, Reply::Bulk(Some(value_of(i % KEYS))), "reply {i}");
        }
    }
    eprintln!("flood: {COMMANDS} replies read in {:?}", reading.elapsed());
    sender.join().expect("the flood sender panicked");
    assert_eq!(sent.load(Ordering::Relaxed), flood_len);
    assert_served_promptly(&cluster, leader, "after the flood");
}

#[test]
fn a_client_whose_unread_replies_pass_the_output_limit_is_disconnected() {
    const VALUE_LEN: usize = 4 << 20;
    const GETS: usize = 64;
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    set(&mut cluster.client(leader), "big", vec![b'b'; VALUE_LEN]);

    // 64 GETs of 4 MiB, 256 MiB of replies, never read: past the 64 MiB output limit.
    let mut stream = cluster.raw_client(leader);
    let requests: Vec<u8> = (0..GETS).flat_map(|_| encode_request(&[b"GET", b"big"])).collect();
    stream.write_all(&requests).unwrap();
    let log = cluster.log_path(leader).to_path_buf();
    wait_until(Duration::from_secs(20), "the node to log the output limit", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("output buffer limit reached")
    });
    assert_served_promptly(&cluster, leader, "a client was over its output limit");

    // The client reads now: part of its replies, then the end of the connection.
    let received = read_until_closed(&mut stream, Duration::from_secs(20));
    assert!(
        received.len() < GETS * VALUE_LEN,
        "the client got all {} bytes of its replies; it should have been cut off",
        received.len()
    );
}

/// Messages travel to a subscriber's node through the log, whatever the subscriber does: one that
/// never reads them is cut off at the output limit, like a client that never reads its replies,
/// and its node forgets its subscription.
#[test]
fn a_subscriber_that_never_reads_is_disconnected_at_the_output_limit_and_forgotten() {
    const MESSAGE_LEN: usize = 4 << 20;
    const MOST_MESSAGES: usize = 48;
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let numsub = |cluster: &Cluster| -> i64 {
        let reply: Vec<Value> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg("firehose").query(&mut cluster.client(follower)).unwrap();
        redis::from_redis_value(reply[1].clone()).unwrap()
    };
    let mut subscriber = cluster.raw_client(follower);
    subscriber.write_all(&encode_request(&[b"SUBSCRIBE", b"firehose"])).unwrap();
    wait_until(Duration::from_secs(20), "the subscription to be registered", || numsub(&cluster) == 1);

    // Messages of 4 MiB published through the leader, never read: past the 64 MiB limit.
    let log = cluster.log_path(follower).to_path_buf();
    let cut_off =
        || std::fs::read_to_string(&log).unwrap_or_default().contains("output buffer limit reached");
    let mut publisher = cluster.client(leader);
    let message = vec![b'm'; MESSAGE_LEN];
    let mut published = 0;
    while published < MOST_MESSAGES && !cut_off() {
        let _: i64 = redis::cmd("PUBLISH").arg("firehose").arg(&message).query(&mut publisher).unwrap();
        published += 1;
    }
    wait_until(Duration::from_secs(20), "the subscriber's node to log the output limit", cut_off);
    assert_served_promptly(&cluster, follower, "a subscriber was over its output limit");
    wait_until(Duration::from_secs(20), "the node to forget the subscription", || numsub(&cluster) == 0);
    let reached: i64 = redis::cmd("PUBLISH").arg("firehose").arg("after").query(&mut publisher).unwrap();
    assert_eq!(reached, 0, "no subscriber on the publisher's node");

    // The subscriber reads now: part of its messages, then the end of the connection.
    let received = read_until_closed(&mut subscriber, Duration::from_secs(20));
    assert!(
        received.len() < published * MESSAGE_LEN,
        "the subscriber got all {} bytes of its messages; it should have been cut off",
        received.len()
    );
}

#[test]
fn ten_thousand_idle_connections_do_not_stall_other_clients() {
    // Room for them next to the harness's and the probe's own connections.
    let mut cluster = Cluster::launch_with(3, &["--maxclients", "10100"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let pid = node_pid(cluster.redis_port(leader));
    let before = rss(pid);

    // Each connection takes a descriptor here and one in the node (which inherits our limit);
    // leave room for the node's own files (it keeps `RESERVED_FDS` of its limit for them).
    let limit = open_files_limit();
    let count = 10_000.min(limit.saturating_sub(actors::RESERVED_FDS as usize + 100));
    if count < 10_000 {
        eprintln!("the open files limit is {limit}: opening {count} idle connections instead of 10000");
    }
    let port = cluster.redis_port(leader);
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        idle.push(stream);
    }
    // Some of them have been used once (a session that has read and written is idle too).
    for stream in idle.iter_mut().step_by(10) {
        stream.write_all(b"PING\r\n").unwrap();
    }
    for stream in idle.iter_mut().step_by(10) {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut pong = [0u8; 7];
        stream.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
    }
    let connected = rss(pid);

    assert_served_promptly(&cluster, leader, "10 k idle connections are open");
    let clients: String = redis::cmd("INFO").arg("clients").query(&mut cluster.client(leader)).unwrap();
    eprintln!(
        "{count} idle connections: node RSS {} MiB -> {} MiB; INFO clients: {}",
        before >> 20,
        connected >> 20,
        clients.replace("\r\n", " ")
    );
    let per_connection = connected.saturating_sub(before) / count;
    assert!(per_connection < 32 * 1024, "an idle connection costs the node {per_connection} bytes");

    // All closed: the node is still fine.
    for stream in &idle {
        let _ = stream.shutdown(Shutdown::Both);
    }
    drop(idle);
    assert_served_promptly(&cluster, leader, "10 k connections just closed");
}

#[test]
fn a_thousand_clients_blocked_then_gone_leave_nothing_waiting() {
    // Each takes a descriptor here (the harness's own connections need a few more).
    let clients = 1000.min(open_files_limit().saturating_sub(200));
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let port = cluster.redis_port(follower);
    let blocked: Vec<TcpStream> = (0..clients)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(format!("BLPOP queue:{} 0\r\n", i % 10).as_bytes()).unwrap();
            stream
        })
        .collect();
    wait_until(Duration::from_secs(60), "every client blocked", || blocked_clients(port) == clients);
    assert_served_promptly(&cluster, follower, "1 000 clients wait in BLPOP on this node");
    // They go away without a word: the node forgets them, and a push finds no one to serve.
    drop(blocked);
    wait_until(Duration::from_secs(30), "no client left waiting", || blocked_clients(port) == 0);
    let mut con = cluster.client(leader);
    for i in 0..10 {
        let pushed: i64 = redis::cmd("RPUSH").arg(format!("queue:{i}")).arg("job").query(&mut con).unwrap();
        assert_eq!(pushed, 1);
    }
    let mut on_follower = cluster.client(follower);
    for i in 0..10 {
        let len: i64 = redis::cmd("LLEN").arg(format!("queue:{i}")).query(&mut on_follower).unwrap();
        assert_eq!(len, 1, "queue:{i}: a departed client popped its job");
    }
}

#[test]
fn garbage_and_protocol_violations_close_that_connection_only() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut bystander = cluster.client(leader);
    set(&mut bystander, "bystander", "still here");

    let violations: &[(&str, Vec<u8>, &str)] = &[
        ("a bad multibulk count", b"*abc\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length"),
        ("a bad bulk length", b"*1\r\n$x\r\n".to_vec(), "-ERR Protocol error: invalid bulk length"),
        (
            "a bulk above 512 MiB",
            b"*1\r\n$600000000\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length",
        ),
        ("no $ in a multibulk", b"*1\r\n:3\r\n".to_vec(), "-ERR Protocol error: expected '$', got ':'"),
        ("an inline line over 64 KiB", vec![b'a'; 70 * 1024], "-ERR Protocol error: too big inline request"),
        ("unbalanced quotes", b"SET \"k v\r\n".to_vec(), "-ERR Protocol error: unbalanced quotes in request"),
        (
            "bulk data without CRLF",
            b"*2\r\n$3\r\nGET\r\n$1\r\nkXY".to_vec(),
            "-ERR Protocol error: bulk data not terminated by CRLF",
        ),
        ("too many arguments", b"*2000000\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length"),
    ];
    for (what, bytes, expected) in violations {
        let mut stream = cluster.raw_client(leader);
        // A valid request first: it is answered before the violation closes the connection.
        stream.write_all(b"PING\r\n").unwrap();
        stream.write_all(bytes).unwrap();
        let received = read_until_closed(&mut stream, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&received);
        assert_eq!(text, format!("+PONG\r\n{expected}\r\n"), "{what}");
        assert_eq!(get(&mut bystander, "bystander").as_deref(), Some(&b"still here"[..]), "after {what}");
    }

    // Random bytes, seeded: whatever they are taken for, the node answers or closes that
    // connection, and stays up for everybody else.
    let mut state: u64 = 0x5eed_0bad_f00d;
    for round in 0..50 {
        let mut stream = cluster.raw_client(leader);
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly RESP's own punctuation, so the parser gets deep into its states.
                match state % 8 {
                    0 => b'*',
                    1 => b'$',
                    2 => b'\r',
                    3 => b'\n',
                    4 => b'0' + (state >> 8) as u8 % 10,
                    _ => (state >> 16) as u8,
                }
            })
            .collect();
        let _ = stream.write_all(&garbage);
        let _ = stream.shutdown(Shutdown::Write);
        read_until_closed(&mut stream, Duration::from_secs(10));
        let reply: Value =
            redis::cmd("PING").query(&mut bystander).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(reply, Value::SimpleString("PONG".into()), "round {round}");
    }
    cluster.assert_nothing_exited();
    assert_served_promptly(&cluster, leader, "after garbage");
}

#[test]
fn proto_max_bulk_len_limits_values_and_is_reported() {
    let mut cluster = Cluster::launch_with(3, &["--proto-max-bulk-len", "1048576"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut con = cluster.client(leader);
    let config: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("proto-max-bulk-len").query(&mut con).unwrap();
    assert_eq!(config, ["proto-max-bulk-len", "1048576"]);

    set(&mut con, "at-the-limit", vec![b'x'; 1 << 20]);
    assert_eq!(get(&mut con, "at-the-limit").map(|v| v.len()), Some(1 << 20));

    let mut stream = cluster.raw_client(leader);
    stream.write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", (1 << 20) + 1).as_bytes()).unwrap();
    let received = read_until_closed(&mut stream, Duration::from_secs(10));
    assert_eq!(String::from_utf8_lossy(&received), "-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(get(&mut con, "at-the-limit").map(|v| v.len()), Some(1 << 20));
}

/// Opens a connection and sends PING: the stream if the node answers `+PONG`, or what it
/// answered instead (a refusal), or the error reading it.
fn ping_new_connection(port: u16) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(b"PING\r\n").map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    match read_reply(&mut reader) {
        Ok(Reply::Status(pong)) if pong == "PONG" => Ok(stream),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Sends one command on a raw connection and reads its reply.
fn command(stream: &mut TcpStream, args: &[&[u8]]) -> Reply {
    stream.write_all(&encode_request(args)).unwrap();
    read_reply(&mut BufReader::new(stream.try_clone().unwrap())).unwrap()
}

fn refusal() -> String {
    format!("{:?}", Reply::Error("ERR max number of clients reached".into()))
}

#[test]
fn clients_past_maxclients_are_refused_with_redis_error_and_a_freed_place_is_taken_again() {
    const MAXCLIENTS: usize = 20;
    let mut cluster = Cluster::launch_with(3, &["--maxclients", &MAXCLIENTS.to_string()]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let port = cluster.redis_port(leader);

    // The harness's own connections may hold places until the node sees them closed: open
    // connections until this test holds every place.
    let mut held = Vec::new();
    wait_until(Duration::from_secs(30), "every place is held by this test", || {
        match ping_new_connection(port) {
            Ok(stream) => held.push(stream),
            Err(reply) => assert_eq!(reply, refusal(), "a connection was neither served nor refused"),
        }
        held.len() == MAXCLIENTS
    });
    // One more is refused with Redis's error, and closed.
    assert_eq!(ping_new_connection(port).err(), Some(refusal()));
    let mut refused = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let said = read_until_closed(&mut refused, Duration::from_secs(20));
    assert_eq!(said, b"-ERR max number of clients reached\r\n");

    let stats = command(&mut held[0], &[b"INFO", b"stats"]);
    let Reply::Bulk(Some(stats)) = stats else { panic!("INFO stats answered {stats:?}") };
    let stats = String::from_utf8(stats).unwrap();
    let rejected: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("rejected_connections:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rejected_connections in INFO stats: {stats}"));
    assert!(rejected >= 2, "INFO stats counts {rejected} rejected connections");
    let clients = command(&mut held[1], &[b"INFO", b"clients"]);
    let Reply::Bulk(Some(clients)) = clients else { panic!("INFO clients answered {clients:?}") };
    assert!(String::from_utf8(clients).unwrap().contains(&format!("maxclients:{MAXCLIENTS}\r\n")));
    let config = &mut held[2];
    config.write_all(&encode_request(&[b"CONFIG", b"GET", b"maxclients"])).unwrap();
    let expected =
        format!("*2\r\n$10\r\nmaxclients\r\n${}\r\n{MAXCLIENTS}\r\n", MAXCLIENTS.to_string().len());
    let mut answer = vec![0; expected.len()];
    config.read_exact(&mut answer).unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), expected, "CONFIG GET maxclients");

    // The held connections are served as usual, and a place given back is taken again.
    let mut writer = held.pop().unwrap();
    assert_eq!(command(&mut writer, &[b"SET", b"maxclients:key", b"v"]), Reply::Status("OK".into()));
    drop(held.pop());
    let mut again = None;
    wait_until(Duration::from_secs(30), "a freed place is taken again", || {
        again = ping_new_connection(port).ok();
        again.is_some()
    });
    let mut again = again.unwrap();
    assert_eq!(command(&mut again, &[b"GET", b"maxclients:key"]), Reply::Bulk(Some(b"v".to_vec())));
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    assert_served_promptly(&cluster, follower, "every place on the leader is held");
}

#[test]
fn a_flood_of_connections_under_a_low_open_file_limit_is_refused_while_the_node_writes_new_files() {
    // 600 open files: the node keeps `RESERVED_FDS` for its storage and peers and serves the rest
    // as clients. Before it did, a flood took every descriptor, and the next file RocksDB
    // opened (a flush after a log compaction) failed and stopped the node.
    const OPEN_FILES: u64 = 600;
    let fitted = OPEN_FILES - actors::RESERVED_FDS;
    let mut cluster = Cluster::launch_with(3, &["--snapshot-threshold", "50"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let victim = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.limit_open_files(victim, Some(OPEN_FILES));
    cluster.restart(victim);
    let clients: String =
        cluster.query_with_retry(victim, redis::cmd("INFO").arg("clients"), Duration::from_secs(30));
    assert!(clients.contains(&format!("maxclients:{fitted}\r\n")), "INFO clients: {clients}");
    assert!(
        cluster.log_since(victim, 0).contains("--maxclients lowered to fit the open-file limit"),
        "the node did not say it lowered --maxclients"
    );

    // More connections than the node has descriptors.
    let port = cluster.redis_port(victim);
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..OPEN_FILES + 100 {
        match ping_new_connection(port) {
            Ok(stream) => served.push(stream),
            Err(reply) => {
                assert_eq!(reply, refusal(), "a connection was neither served nor refused");
                refused += 1;
            }
        }
    }
    assert!(served.len() as u64 <= fitted, "{} connections served", served.len());
    eprintln!("flood: {} connections served, {refused} refused", served.len());

    // While the flood holds its connections, writes through the node (forwarded to the leader,
    // then applied here) pass the compaction threshold many times over: the node compacts its
    // log and flushes, writing new files.
    // (Every place is taken: the node is asked on a connection of the flood.)
    let writer = &mut served[0];
    let first_index = log_first_index(writer);
    for i in 0..400 {
        let key = format!("flood:{i}");
        let reply = command(writer, &[b"SET", key.as_bytes(), &[b'v'; 1000]]);
        assert_eq!(reply, Reply::Status("OK".into()), "SET {key}");
    }
    wait_until(Duration::from_secs(30), "the node compacts its log", || {
        log_first_index(writer) > first_index + 100
    });
    cluster.assert_nothing_exited();
    assert_eq!(command(writer, &[b"GET", b"flood:399"]), Reply::Bulk(Some(vec![b'v'; 1000])));
    // Once the flood is gone, new clients are served again.
    drop(served);
    wait_until(Duration::from_secs(30), "a new client is served after the flood", || {
        ping_new_connection(port).is_ok()
    });
}

/// The first index of the node's Raft log, from `INFO raft` on a raw connection.
fn log_first_index(stream: &mut TcpStream) -> u64 {
    match command(stream, &[b"INFO", b"raft"]) {
        Reply::Bulk(Some(text)) => {
            common::RaftInfo::parse(&String::from_utf8(text).unwrap())
                .expect("INFO raft parses")
                .log_first_index
        }
        other => panic!("INFO raft answered {other:?}"),
    }
}
