//! A three-node raft-kv cluster seen from outside: real node processes on loopback, driven
//! through Redis clients (redis-rs, raw RESP bytes, `redis-cli`, `redis-benchmark`).
//!
//! Every test starts its own cluster. They are sized for a small machine running them one at
//! a time: `cargo test --release --test cluster -- --test-threads=1` (`make test`).
//! The timeouts are generous bounds on polls, never sleeps.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{blocked_clients, connect, get, get_string, run_tool, set, wait_until, Cluster, REPLY_TIMEOUT};
use redis::{Connection, Value};

/// Until the live nodes agree on a leader (first election, or after the leader died).
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Until a write retried across an election is acknowledged.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Until a restarted node answers reads again.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command may take to fail when the cluster has no quorum.
const FAIL_FAST_BOUND: Duration = Duration::from_secs(15);

/// The README's walkthrough: write, lose a node, write again, bring it back, read the latest.
#[test]
fn walkthrough_from_the_notes() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);

    let mut node1 = cluster.client(1);
    set(&mut node1, "mykey", "myvalue");
    assert_eq!(get_string(&mut node1, "mykey").as_deref(), Some("myvalue"));

    // `goreman run stop node2`. If node2 was the leader, node1 answers CLUSTERDOWN or TIMEOUT
    // until node1 and node3 have elected a new one, so this write is retried.
    cluster.kill(2);
    cluster.set_with_retry(1, "mykey", "new-value", WRITE_TIMEOUT);

    // `goreman run start node2`. Reads are linearizable, so the first read node2 answers at
    // all must already be the latest value: it is not polled for.
    cluster.start(2);
    let value: Option<String> = cluster.query_with_retry(2, redis::cmd("GET").arg("mykey"), CATCH_UP_TIMEOUT);
    assert_eq!(value.as_deref(), Some("new-value"), "node2 after its restart");

    let keys: Vec<String> =
        redis::cmd("KEYS").arg("*").query(&mut cluster.client(2)).expect("KEYS * on node2");
    assert_eq!(keys, ["mykey"]);
}

#[test]
fn stopping_the_leader_keeps_the_cluster_writable() {
    let mut cluster = Cluster::launch(3);
    let old_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(old_leader, "color", "red", WRITE_TIMEOUT);

    cluster.kill(old_leader);
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(new_leader, old_leader);

    let survivors = cluster.live_ids();
    assert_eq!(survivors.len(), 2);
    for &id in &survivors {
        cluster.set_with_retry(id, format!("written-via-{id}"), format!("{id}"), WRITE_TIMEOUT);
        cluster.set_with_retry(id, "color", format!("color-{id}"), WRITE_TIMEOUT);
    }
    let latest_color = format!("color-{}", survivors[1]);

    for &id in &survivors {
        let mut con = cluster.client(id);
        assert_eq!(get_string(&mut con, "color"), Some(latest_color.clone()), "node {id}");
        for &writer in &survivors {
            assert_eq!(
                get_string(&mut con, format!("written-via-{writer}")),
                Some(writer.to_string()),
                "node {id} reading what node {writer} wrote"
            );
        }
    }

    // The old leader comes back as a follower and catches up. Its reads are linearizable,
    // so the first answer it gives must be the latest value.
    cluster.start(old_leader);
    let color: Option<String> =
        cluster.query_with_retry(old_leader, redis::cmd("GET").arg("color"), CATCH_UP_TIMEOUT);
    assert_eq!(color, Some(latest_color), "the old leader after its restart");
    let mut con = cluster.client(old_leader);
    for &writer in &survivors {
        assert_eq!(
            get_string(&mut con, format!("written-via-{writer}")),
            Some(writer.to_string()),
            "the old leader reading what node {writer} wrote"
        );
    }
    // All three agree on one leader again.
    cluster.wait_for_leader(LEADER_TIMEOUT);
}

#[test]
fn writes_and_reads_through_every_node() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let ids = cluster.ids();
    let mut clients: Vec<Connection> = ids.iter().map(|&id| cluster.client(id)).collect();

    // Every node writes; right after the acknowledgement every node must read the write:
    // reads are linearizable, so there is no waiting here.
    let mut written = 0;
    for &writer in &ids {
        for n in 0..4 {
            let key = format!("{writer}:key:{n}");
            let value = format!("value {n} from node {writer}");
            set(node(&mut clients, writer), &key, &value);
            written += 1;
            for &reader in &ids {
                assert_eq!(
                    get_string(node(&mut clients, reader), &key).as_deref(),
                    Some(value.as_str()),
                    "node {reader} reading {key} right after node {writer} acknowledged it"
                );
            }
        }
    }

    // Keys and values are bytes: NUL, CR LF, invalid UTF-8, even RESP-looking text.
    let binary_key: &[u8] = b"bin\0key\r\n\xff\xfe";
    let binary_value: &[u8] = b"\0\r\n\xff\x80 *1\r\n$4\r\nPING\r\n \xc3\x28";
    set(node(&mut clients, 2), binary_key, binary_value);
    written += 1;
    set(node(&mut clients, 3), "empty", "");
    written += 1;
    for &reader in &ids {
        assert_eq!(
            get(node(&mut clients, reader), binary_key).as_deref(),
            Some(binary_value),
            "node {reader}"
        );
        assert_eq!(
            get(node(&mut clients, reader), "empty"),
            Some(Vec::new()),
            "node {reader}: empty, not nil"
        );
    }

    let deleted: i64 = redis::cmd("DEL")
        .arg("1:key:0")
        .arg("2:key:0")
        .arg("no-such-key")
        .query(node(&mut clients, 2))
        .expect("DEL on node2");
    assert_eq!(deleted, 2, "DEL counts the keys it removed");
    written -= 2;
    assert_eq!(get(node(&mut clients, 3), "1:key:0"), None, "node3 after node2 deleted it");

    // EXISTS counts a key once per mention, like Redis.
    let existing: i64 = redis::cmd("EXISTS")
        .arg("1:key:0")
        .arg("1:key:1")
        .arg("1:key:1")
        .arg(binary_key)
        .arg("no-such-key")
        .query(node(&mut clients, 3))
        .expect("EXISTS on node3");
    assert_eq!(existing, 3);

    let keys: BTreeSet<String> =
        redis::cmd("KEYS").arg("2:key:*").query(node(&mut clients, 1)).expect("KEYS on node1");
    assert_eq!(keys, BTreeSet::from(["2:key:1", "2:key:2", "2:key:3"].map(String::from)));

    for &id in &ids {
        let size: i64 = redis::cmd("DBSIZE").query(node(&mut clients, id)).expect("DBSIZE");
        assert_eq!(size, written, "DBSIZE on node {id}");
    }
}

/// The connection to node `id` among one connection per node.
fn node(clients: &mut [Connection], id: u64) -> &mut Connection {
    &mut clients[id as usize - 1]
}

#[test]
fn kill_all_nodes_then_restart_loses_no_acknowledged_write() {
    kill_all_nodes_then_restart(&[]);
}

/// `--fsync everysec` leaves log writes unsynced for up to a second, but they are in the
/// kernel already: killing every process (unlike a power loss) still loses none of them.
#[test]
fn kill_all_nodes_with_fsync_everysec_loses_no_acknowledged_write() {
    kill_all_nodes_then_restart(&["--fsync", "everysec"]);
}

fn kill_all_nodes_then_restart(flags: &[&str]) {
    const KEYS: usize = 200;
    let key = |n: usize| format!("durable:{n:03}");
    // Node (n % 3) + 1 writes key n: two thirds of the writes go through followers.
    let writer = |n: usize| (n % 3) as u64 + 1;
    let value = |n: usize| format!("value {n} via node {}", writer(n));

    let mut cluster = Cluster::launch_with(3, flags);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    if flags.contains(&"everysec") {
        let log = cluster.log_since(1, 0);
        assert!(
            log.contains("--fsync everysec"),
            "node 1 does not say it runs with --fsync everysec:\n{log}"
        );
    }
    let ports: Vec<(u64, u16)> = cluster.ids().into_iter().map(|id| (id, cluster.redis_port(id))).collect();

    // One writer per node. Once half the keys are acknowledged, every node is killed with
    // SIGKILL while the writers are still busy; only acknowledged writes must survive.
    let acknowledged = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for &(id, port) in &ports {
            let acknowledged = &acknowledged;
            scope.spawn(move || {
                let Ok(mut con) = connect(port, REPLY_TIMEOUT) else {
                    return;
                };
                for n in (0..KEYS).filter(|&n| writer(n) == id) {
                    let reply = redis::cmd("SET").arg(key(n)).arg(value(n)).query(&mut con);
                    match reply {
                        Ok(Value::Okay) => acknowledged.lock().unwrap().push(n),
                        Ok(other) => panic!("SET {} through node {id} answered {other:?}", key(n)),
                        // The node is gone: the fate of this write is unknown.
                        Err(e) if e.is_io_error() => return,
                        // Refused or timed out: not acknowledged, carry on.
                        Err(_) => {}
                    }
                }
            });
        }
        wait_until(WRITE_TIMEOUT, "half of the writes to be acknowledged", || {
            acknowledged.lock().unwrap().len() >= KEYS / 2
        });
        cluster.kill_all();
    });
    let acknowledged: BTreeSet<usize> = acknowledged.into_inner().unwrap().into_iter().collect();

    for id in cluster.ids() {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "after-restart", "yes", WRITE_TIMEOUT);

    for id in cluster.ids() {
        let mut con = cluster.client(id);
        for n in 0..KEYS {
            let found = get_string(&mut con, key(n));
            if acknowledged.contains(&n) {
                assert_eq!(found, Some(value(n)), "node {id}: acknowledged {} was lost", key(n));
            } else if let Some(found) = found {
                // An unacknowledged write may or may not have been committed, but never garbled.
                assert_eq!(found, value(n), "node {id}: unacknowledged {}", key(n));
            }
        }
    }
}

#[test]
fn no_leader_fails_fast_instead_of_hanging() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "before", "1", WRITE_TIMEOUT);

    // Keep one follower; kill the leader and the other follower.
    let survivor = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let mut con = connect(cluster.redis_port(survivor), FAIL_FAST_BOUND + Duration::from_secs(5))
        .expect("connect to the survivor");
    for id in cluster.ids() {
        if id != survivor {
            cluster.kill(id);
        }
    }

    let started = Instant::now();
    let write = redis::cmd("SET").arg("during-outage").arg("x").query::<Value>(&mut con);
    assert_unavailable("SET", write, started.elapsed());

    let started = Instant::now();
    let read = redis::cmd("GET").arg("before").query::<Value>(&mut con);
    assert_unavailable("GET", read, started.elapsed());

    // The connection is still usable, and the node still reports on itself.
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING after the failures");
    assert_eq!(pong, "PONG");
    let info = cluster.raft_info(survivor).expect("INFO raft on the survivor");
    assert_ne!(info.role, "leader", "a lone node of three cannot lead");

    // With a second node back the cluster has a quorum again and the survivor takes writes.
    let other = cluster.ids().into_iter().find(|&id| id != survivor).unwrap();
    cluster.start(other);
    cluster.set_with_retry(survivor, "after-outage", "1", WRITE_TIMEOUT);
}

/// Every node's `RAFT.INFO` lists every member with the Redis address clients reach it on and
/// the store id of its data directory: the initial members, whom `--cluster` names by peer
/// address only, add both through the log, and the address book keeps them across a restart
/// of the whole cluster.
#[test]
fn raft_info_lists_every_members_redis_address_and_store_on_every_node() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let ids = cluster.ids();
    let expected: Vec<String> = ids
        .iter()
        .map(|&id| {
            format!(
                "member:id={id},peer={},redis=127.0.0.1:{},",
                cluster.peer_addr(id),
                cluster.redis_port(id)
            )
        })
        .collect();
    let raft_info = |cluster: &Cluster, id| -> Option<String> {
        let mut con = connect(cluster.redis_port(id), REPLY_TIMEOUT).ok()?;
        redis::cmd("RAFT.INFO").query(&mut con).ok()
    };
    // `store=` is 16 hex digits once known, empty before.
    let store_of = |text: &str, id: u64| -> Option<String> {
        let line = text.lines().find(|l| l.starts_with(&format!("member:id={id},")))?;
        let store = line.split(',').find_map(|field| field.strip_prefix("store="))?;
        (store.len() == 16 && store.chars().all(|c| c.is_ascii_hexdigit())).then(|| store.to_owned())
    };
    let lists_all = |text: &str| {
        expected.iter().all(|line| text.contains(line.as_str()))
            && ids.iter().all(|&id| store_of(text, id).is_some())
    };
    wait_until(CATCH_UP_TIMEOUT, "every node to list every member's Redis address and store", || {
        ids.iter().all(|&id| raft_info(&cluster, id).is_some_and(|text| lists_all(&text)))
    });
    let before = raft_info(&cluster, ids[0]).expect("node answered just now");
    let stores: std::collections::HashMap<u64, Option<String>> =
        ids.iter().map(|&id| (id, store_of(&before, id))).collect();
    let distinct: std::collections::HashSet<_> = stores.values().collect();
    assert_eq!(distinct.len(), ids.len(), "every data directory has its own store id:\n{before}");

    cluster.kill_all();
    for &id in &ids {
        cluster.start(id);
    }
    for &id in &ids {
        let mut first = None;
        wait_until(LEADER_TIMEOUT, &format!("node {id} to answer RAFT.INFO"), || {
            first = raft_info(&cluster, id);
            first.is_some()
        });
        let text = first.expect("just answered");
        assert!(lists_all(&text), "node {id} forgot addresses across its restart:\n{text}");
        assert_eq!(store_of(&text, id), stores[&id], "node {id}'s store id changed across its restart");
    }
}

/// Redis's replication view (`ROLE`, `INFO replication`): the leader is the master, with the
/// other members as its replicas; every other node is a replica of the leader.
#[test]
fn role_and_info_replication_show_the_leader_as_the_master() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "k", "v", WRITE_TIMEOUT);
    let ids = cluster.ids();
    let followers: Vec<u64> = ids.iter().copied().filter(|&id| id != leader).collect();
    // The members' Redis addresses reach the address book through the log: wait for them.
    let role = |id: u64| -> Value { cluster.query_with_retry(id, &redis::cmd("ROLE"), WRITE_TIMEOUT) };
    let ports_of = |replicas: &[Value]| -> BTreeSet<String> {
        replicas
            .iter()
            .filter_map(|r| match r {
                Value::Array(fields) => match fields.get(1) {
                    Some(Value::BulkString(port)) => Some(String::from_utf8_lossy(port).into_owned()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let follower_ports: BTreeSet<String> =
        followers.iter().map(|&id| cluster.redis_port(id).to_string()).collect();
    wait_until(CATCH_UP_TIMEOUT, "the leader's ROLE to list both followers", || {
        matches!(role(leader), Value::Array(parts) if parts.len() == 3
            && parts[0] == Value::BulkString(b"master".to_vec())
            && matches!(&parts[2], Value::Array(replicas) if ports_of(replicas) == follower_ports))
    });
    for &id in &followers {
        wait_until(CATCH_UP_TIMEOUT, &format!("node {id}'s ROLE to name the leader"), || {
            let expected = [
                Value::BulkString(b"slave".to_vec()),
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(i64::from(cluster.redis_port(leader))),
                Value::BulkString(b"connected".to_vec()),
            ];
            matches!(role(id), Value::Array(parts) if parts.len() == 5 && parts[..4] == expected)
        });
        let info: String = cluster.query_with_retry(id, redis::cmd("INFO").arg("replication"), WRITE_TIMEOUT);
        assert!(info.contains("role:slave\r\n"), "{info}");
        assert!(info.contains(&format!("master_port:{}\r\n", cluster.redis_port(leader))), "{info}");
        assert!(info.contains("master_link_status:up\r\n"), "{info}");
    }
    let info: String = cluster.query_with_retry(leader, redis::cmd("INFO").arg("replication"), WRITE_TIMEOUT);
    assert!(info.contains("role:master\r\nconnected_slaves:2\r\n"), "{info}");
}

/// A SCAN cursor is a position in the keyspace's order, the same on every node: a scan goes on
/// through another node, and through the same node after it restarted, and returns every key
/// (as a client reconnecting elsewhere mid-scan, or to a restarted node, needs).
#[test]
fn a_scan_goes_on_through_another_node_and_after_a_restart() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let mset: Vec<String> = keys.iter().flat_map(|k| [k.clone(), "v".to_owned()]).collect();
    let reply: Value = cluster.query_with_retry(leader, redis::cmd("MSET").arg(&mset), WRITE_TIMEOUT);
    assert_eq!(reply, Value::Okay);
    let ids = cluster.ids();
    let scan = |cluster: &Cluster, id: u64, cursor: &str| -> (String, Vec<String>) {
        let command = redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(5).clone();
        cluster.query_with_retry(id, &command, WRITE_TIMEOUT)
    };
    let (mut cursor, mut seen, mut calls) = ("0".to_owned(), Vec::new(), 0);
    loop {
        // Every call through the next node; the third node restarts halfway through.
        if calls == 3 {
            cluster.restart(ids[2]);
        }
        let (next, found) = scan(&cluster, ids[calls % ids.len()], &cursor);
        calls += 1;
        seen.extend(found);
        if next == "0" {
            break;
        }
        assert!(calls < 100, "the scan does not end");
        cursor = next;
    }
    assert!(calls > 3, "40 keys take more than three SCANs of 5");
    seen.sort();
    seen.dedup();
    let mut expected = keys;
    expected.sort();
    assert_eq!(seen, expected);
}

/// The leader serves reads under a lease (`INFO raft` shows what is left of it) unless the
/// nodes run with `--read-lease off`; reads through every node are linearizable either way.
#[test]
fn the_leader_holds_a_read_lease_unless_it_is_turned_off() {
    for (flags, lease) in [(&[][..], true), (&["--read-lease", "off"][..], false)] {
        let mut cluster = Cluster::launch_with(3, flags);
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
        cluster.set_with_retry(leader, "k", "v", WRITE_TIMEOUT);
        let mut con = cluster.client(leader);
        let mut read_and_look = || {
            assert_eq!(get_string(&mut con, "k").as_deref(), Some("v"));
            cluster.raft_info(leader).expect("INFO raft on the leader").read_lease_ms
        };
        if lease {
            wait_until(LEADER_TIMEOUT, "the leader to hold a read lease", || read_and_look() > 0);
        } else {
            for _ in 0..20 {
                assert_eq!(read_and_look(), 0, "--read-lease off");
            }
        }
        let ids = cluster.ids();
        let mut clients: Vec<Connection> = ids.iter().map(|&id| cluster.client(id)).collect();
        for &writer in &ids {
            let value = format!("from {writer}");
            set(node(&mut clients, writer), "k", &value);
            for &reader in &ids {
                assert_eq!(get_string(node(&mut clients, reader), "k"), Some(value.clone()), "node {reader}");
            }
        }
    }
}

/// A follower away for fewer entries than twice `--snapshot-threshold` catches up from the
/// leader's log, which the leader keeps for it (README, "Running a node"); away for longer, it
/// gets a snapshot. The second half shows that the first would have seen one.
#[test]
fn a_follower_away_briefly_catches_up_from_the_log_and_away_long_by_snapshot() {
    const THRESHOLD: u64 = 100;
    let mut cluster = Cluster::launch_with(3, &["--snapshot-threshold", &THRESHOLD.to_string()]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let mut con = cluster.client(leader);
    let mut last = 0;
    set(&mut con, "k", last.to_string());

    for (away, by_snapshot) in [(THRESHOLD * 3 / 2, false), (THRESHOLD * 5 / 2, true)] {
        let (leader_log, follower_log) = (cluster.log_len(leader), cluster.log_len(follower));
        let left_at = raft_info(&cluster, leader).applied_index;
        cluster.kill(follower);
        let point = write_past_compaction_point(&cluster, leader, &mut con, &mut last, away);
        let first_now = raft_info(&cluster, leader).log_first_index;
        if by_snapshot {
            assert!(first_now > left_at + 1, "the leader kept {left_at}.. past twice the threshold");
        } else {
            assert_eq!(
                first_now,
                point + 1,
                "the leader compacted while its follower could catch up from the log"
            );
        }
        cluster.start(follower);
        let target = raft_info(&cluster, leader).commit_index;
        wait_until(CATCH_UP_TIMEOUT, "the follower to catch up", || {
            cluster.raft_info(follower).is_ok_and(|view| view.applied_index >= target)
        });
        let sent = cluster.log_since(leader, leader_log).contains("sending a snapshot");
        let installed = cluster.log_since(follower, follower_log).contains("installed a snapshot");
        assert_eq!((sent, installed), (by_snapshot, by_snapshot), "away for {away} entries");
        assert_eq!(get_string(&mut cluster.client(follower), "k"), Some(last.to_string()));
    }
    // With the follower back, nothing holds the compaction.
    let point = write_past_compaction_point(&cluster, leader, &mut con, &mut last, THRESHOLD);
    wait_until(CATCH_UP_TIMEOUT, "the leader to compact its log", || {
        raft_info(&cluster, leader).log_first_index > point + 1
    });
}

fn raft_info(cluster: &Cluster, id: u64) -> common::RaftInfo {
    cluster.raft_info(id).unwrap_or_else(|e| panic!("INFO raft on node {id}: {e}"))
}

/// Overwrites one key until the leader has applied `entries` past its compaction point
/// (`log_first_index - 1`, returned) as it was at the call. An unpipelined SET is one entry.
fn write_past_compaction_point(
    cluster: &Cluster,
    leader: u64,
    con: &mut Connection,
    last: &mut u64,
    entries: u64,
) -> u64 {
    let point = raft_info(cluster, leader).log_first_index - 1;
    while raft_info(cluster, leader).applied_index < point + entries {
        for _ in 0..10 {
            *last += 1;
            set(con, "k", last.to_string());
        }
    }
    point
}

/// A write whose forward to the leader is lost (dropped, then the leader killed) is answered,
/// with an unknown outcome, as soon as the new leader commits: not after the write timeout.
#[test]
fn a_write_lost_with_its_leader_is_answered_once_a_new_leader_commits() {
    // A write timeout far beyond any election, so that only the lost-write answer can come.
    let mut cluster = Cluster::launch_with(3, &["--write-timeout", "600000"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "k", "before", WRITE_TIMEOUT);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    // The follower still hears the leader, so it keeps forwarding to it; what it sends is lost.
    cluster.cut_one_way(follower, leader);

    // An election takes seconds: a minute without an answer is a failure.
    let mut writer = connect(cluster.redis_port(follower), Duration::from_secs(60)).expect("connect");
    let mut probe = cluster.client(follower);
    let mut processed = || -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut probe).expect("INFO stats");
        let line = info.lines().find_map(|l| l.strip_prefix("total_commands_processed:"));
        line.and_then(|n| n.trim().parse().ok()).expect("total_commands_processed in INFO")
    };
    let before = processed();
    let write = thread::spawn(move || {
        let started = Instant::now();
        let reply = redis::cmd("SET").arg("k").arg("lost").query::<Value>(&mut writer);
        (reply, started.elapsed())
    });
    // RedisStore counts a command when it takes it and proposes it in that same turn; each
    // INFO counts itself too.
    let mut probes = 0;
    wait_until(REPLY_TIMEOUT, "the follower to take the write", || {
        probes += 1;
        processed() > before + probes
    });
    cluster.kill(leader);

    let (reply, elapsed) = write.join().expect("the writer thread");
    match &reply {
        Err(e) if e.code() == Some("TIMEOUT") && e.detail().is_some_and(|d| d.contains("leader changed")) => {
        }
        other => panic!("the lost write answered {other:?} after {elapsed:?}"),
    }
    // It was indeed not applied.
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let value: Option<String> =
        cluster.query_with_retry(new_leader, redis::cmd("GET").arg("k"), WRITE_TIMEOUT);
    assert_eq!(value.as_deref(), Some("before"));
}

#[test]
fn a_transfer_to_a_node_that_cannot_take_over_is_answered_once_raft_gives_it_up() {
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "k", "before", WRITE_TIMEOUT);
    let target = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.pause(target);
    let reply = redis::cmd("RAFT.TRANSFER-LEADER").arg(target).query::<Value>(&mut cluster.client(leader));
    // Not the 10 s admin timeout's answer: raft-rs gives a transfer up after an election timeout.
    match &reply {
        Err(e) if e.to_string().contains("gave the transfer up") => {}
        other => panic!("RAFT.TRANSFER-LEADER to a stopped node answered {other:?}"),
    }
    cluster.resume(target);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    cluster.set_with_retry(leader, "k", "after", WRITE_TIMEOUT);
}

/// A command sent with no quorum must come back as CLUSTERDOWN or TIMEOUT, in bounded time.
fn assert_unavailable(what: &str, reply: redis::RedisResult<Value>, elapsed: Duration) {
    match reply {
        Err(e) if common::is_unavailable_reply(&e) => {}
        other => {
            panic!("{what} without a quorum answered {other:?} after {elapsed:?}, not CLUSTERDOWN or TIMEOUT")
        }
    }
    assert!(elapsed < FAIL_FAST_BOUND, "{what} without a quorum took {elapsed:?} to fail");
}

/// The walkthrough again, typed into the real `redis-cli` as the README shows it.
#[test]
fn redis_cli_walkthrough() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let node1 = cluster.redis_port(1);
    let node2 = cluster.redis_port(2);

    assert_eq!(redis_cli(node1, &["ping"]), "PONG");
    assert_eq!(redis_cli(node1, &["set", "mykey", "myvalue"]), "OK");
    assert_eq!(redis_cli(node1, &["get", "mykey"]), "myvalue");

    cluster.kill(2);
    // Retried: if node2 was the leader, node1 refuses writes until a new one is elected.
    wait_until(WRITE_TIMEOUT, "redis-cli set mykey new-value to answer OK", || {
        redis_cli(node1, &["set", "mykey", "new-value"]) == "OK"
    });

    cluster.start(2);
    // Retried until node2 serves reads at all; its first answer must be the latest value.
    let mut answer = String::new();
    wait_until(CATCH_UP_TIMEOUT, "node2 to answer redis-cli get mykey", || {
        let output = run_tool("redis-cli", &cli_args(node2, &["get", "mykey"]), REPLY_TIMEOUT);
        answer = output.stdout.trim_end().to_string();
        output.status.success() && !answer.starts_with("CLUSTERDOWN") && !answer.starts_with("TIMEOUT")
    });
    assert_eq!(answer, "new-value", "node2 after its restart");
    assert_eq!(redis_cli(node2, &["keys", "*"]), "mykey");

    assert_eq!(redis_cli(node2, &["del", "mykey"]), "1");
    assert_eq!(redis_cli(node1, &["exists", "mykey"]), "0");
    assert_eq!(redis_cli(node1, &["dbsize"]), "0");
}

fn cli_args(port: u16, args: &[&str]) -> Vec<String> {
    let connection = ["-h".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
    connection.into_iter().chain(args.iter().map(|arg| arg.to_string())).collect()
}

/// `redis-cli -p PORT args...`, which must exit 0; returns what it printed, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = run_tool("redis-cli", &cli_args(port, args), REPLY_TIMEOUT);
    assert!(output.status.success(), "redis-cli {args:?} failed: {output:?}");
    output.stdout.trim_end().to_string()
}

#[test]
fn redis_benchmark_runs_without_errors() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    // As `make bench` runs it, smaller. `-r` spreads the keys over key:000000000000..999.
    let command_line = format!("-h 127.0.0.1 -p {} -t set,get -n 20000 -r 1000 -q", cluster.redis_port(1));
    let args: Vec<&str> = command_line.split_whitespace().collect();
    let output = run_tool("redis-benchmark", &args, Duration::from_secs(180));
    // stdout is mostly `\r`-separated progress lines; the summary lines end with `\n`.
    let summary: Vec<&str> =
        output.stdout.split(['\r', '\n']).filter(|line| line.contains("requests per second")).collect();
    assert!(
        output.status.success(),
        "redis-benchmark exited with {}; stderr: {:?}; summary: {summary:?}",
        output.status,
        output.stderr
    );
    // redis-benchmark stops at the first error reply and says so on stderr; it warns when
    // CONFIG GET does not work. Neither may happen.
    for line in output.stdout.split(['\r', '\n']).chain(output.stderr.lines()) {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("error") && !line.contains("ERR") && !lower.contains("warning"),
            "redis-benchmark reported {line:?}; summary: {summary:?}"
        );
    }
    // The summary lines read like `SET: 12345.67 requests per second, p50=0.311 msec`.
    let requests_per_second = |test: &str| -> f64 {
        summary
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("{test}: ")))
            .filter_map(|rest| rest.split_once(" requests per second"))
            .filter_map(|(number, _)| number.trim().parse::<f64>().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no {test} figure in the summary: {summary:?}"))
    };
    assert!(requests_per_second("SET") > 0.0);
    assert!(requests_per_second("GET") > 0.0);

    // The cluster still answers, and every node holds the same benchmark keys.
    let mut sizes = Vec::new();
    for id in cluster.ids() {
        let mut con = cluster.client(id);
        let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
        assert!(size > 0, "node {id} holds no keys after the benchmark");
        sizes.push(size);
        let keys: Vec<String> = redis::cmd("KEYS").arg("key:*").query(&mut con).expect("KEYS");
        assert_eq!(keys.len() as i64, size, "node {id}: every key is a benchmark key");
        for key in &keys {
            let digits = key.strip_prefix("key:").unwrap();
            assert!(
                digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()),
                "unexpected key {key:?} on node {id}"
            );
        }
    }
    assert!(sizes.windows(2).all(|pair| pair[0] == pair[1]), "DBSIZE per node: {sizes:?}");
}

/// 500 SET/GET pairs in one write: the replies come back in request order, and each GET sees
/// the SET sent just before it on the same connection, as with Redis.
#[test]
fn pipelined_commands_are_answered_in_order() {
    const PAIRS: usize = 500;
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let stream = cluster.raw_client(1);

    let mut batch = Vec::new();
    for n in 0..PAIRS {
        let key = format!("pipelined:{n}");
        batch.extend(redis::cmd("SET").arg(&key).arg(format!("value {n}")).get_packed_command());
        batch.extend(redis::cmd("GET").arg(&key).get_packed_command());
    }

    let mut writer = stream.try_clone().expect("clone the stream");
    thread::scope(|scope| {
        // Written from another thread so that neither side can block on a full socket buffer.
        scope.spawn(move || writer.write_all(&batch).expect("write the pipeline"));

        let mut reader = BufReader::new(&stream);
        let mut parser = redis::Parser::new();
        for n in 0..PAIRS {
            let set_reply = parser.parse_value(&mut reader).expect("a reply to SET");
            assert_eq!(set_reply, Value::Okay, "reply {} (SET pipelined:{n})", 2 * n);
            // Redis runs one connection's commands in order, so a GET sees the SET before it
            // even when neither reply has been read yet. A nil here means the read overtook
            // the write.
            let get_reply = parser.parse_value(&mut reader).expect("a reply to GET");
            assert_eq!(
                get_reply,
                Value::BulkString(format!("value {n}").into_bytes()),
                "reply {} (GET pipelined:{n}, sent right after its SET)",
                2 * n + 1
            );
        }
    });
}

#[test]
fn unknown_command_keeps_connection_open() {
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut stream = cluster.raw_client(1);

    let mut commands = redis::cmd("FOO").arg("a").arg("b").get_packed_command();
    commands.extend(redis::cmd("foo").get_packed_command());
    commands.extend(redis::cmd("PING").get_packed_command());
    stream.write_all(&commands).expect("send the commands");

    // Redis 7's wording, byte for byte, with the command name as the client spelled it.
    let mut reader = BufReader::new(&stream);
    let mut line = || {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).expect("a reply line");
        String::from_utf8_lossy(&line).into_owned()
    };
    assert_eq!(line(), "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
    assert_eq!(line(), "-ERR unknown command 'foo', with args beginning with: \r\n");
    assert_eq!(line(), "+PONG\r\n");
}

/// A client blocked in BLPOP on a follower is served by a push through the other follower.
/// Then a job queue: workers on every node wait in `BRPOP`, jobs are pushed through every
/// node, and each job reaches exactly one worker; then the same once the leader has died, with
/// the workers of the other two nodes waiting through the election.
#[test]
fn blocked_clients_on_any_node_get_each_pushed_element_once_and_outlive_the_leader() {
    const WORKERS_PER_NODE: usize = 2;
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let ids = cluster.ids();
    let followers: Vec<u64> = ids.iter().copied().filter(|&id| id != leader).collect();
    let port = |id: u64| cluster.redis_port(id);
    let ports: std::collections::HashMap<u64, u16> = ids.iter().map(|&id| (id, port(id))).collect();
    let client = |id: u64| connect(ports[&id], REPLY_TIMEOUT).expect("connect");
    let all_blocked = |nodes: &[u64], n: usize| {
        wait_until(WRITE_TIMEOUT, "every client waiting in its blocking command", || {
            nodes.iter().map(|id| blocked_clients(ports[id])).sum::<usize>() == n
        })
    };

    thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let mut con = client(followers[0]);
            redis::cmd("BLPOP").arg("one").arg("two").arg(0).query::<(String, String)>(&mut con)
        });
        all_blocked(&followers[..1], 1);
        let pushed: i64 = redis::cmd("RPUSH").arg("two").arg("x").query(&mut client(followers[1])).unwrap();
        assert_eq!(pushed, 1);
        assert_eq!(waiter.join().unwrap().unwrap(), ("two".to_owned(), "x".to_owned()));
    });

    let delivered = Mutex::new(Vec::<String>::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let worker = |id: u64| {
        let mut con = client(id);
        loop {
            // A short timeout, so that the worker notices `done`; a timeout answers nil.
            match redis::cmd("BRPOP").arg("jobs").arg(1).query::<Option<(String, String)>>(&mut con) {
                Ok(Some((_, job))) => delivered.lock().unwrap().push(job),
                Ok(None) if done.load(std::sync::atomic::Ordering::SeqCst) => return,
                Ok(None) => {}
                // Its node was killed.
                Err(e) if e.is_io_error() => return,
                // No leader for a moment (the election): it tries again, as a worker would.
                Err(e) if common::is_unavailable_reply(&e) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("BRPOP through node {id}: {e}"),
            }
        }
    };
    let push = |via: u64, jobs: std::ops::Range<usize>| {
        let mut con = client(via);
        for job in jobs {
            let _: i64 = redis::cmd("LPUSH").arg("jobs").arg(format!("job-{job}")).query(&mut con).unwrap();
        }
    };
    // The jobs delivered from the `from`th on, in job order.
    let delivered_jobs = |from: usize| -> Vec<String> {
        let mut jobs = delivered.lock().unwrap()[from..].to_vec();
        jobs.sort_by_key(|j| j["job-".len()..].parse::<usize>().unwrap());
        jobs
    };
    let expected = |jobs: std::ops::Range<usize>| jobs.map(|j| format!("job-{j}")).collect::<Vec<_>>();
    thread::scope(|scope| {
        for &id in &ids {
            for _ in 0..WORKERS_PER_NODE {
                scope.spawn(move || worker(id));
            }
        }
        all_blocked(&ids, ids.len() * WORKERS_PER_NODE);
        // One by one through each node in turn, while the workers wait.
        for (n, &via) in ids.iter().enumerate() {
            push(via, n * 50..(n + 1) * 50);
        }
        wait_until(WRITE_TIMEOUT, "every job delivered", || delivered.lock().unwrap().len() >= 150);
        assert_eq!(delivered_jobs(0), expected(0..150), "each job once");
        // The workers wait again, with nothing in flight, when the leader dies. Those of the
        // two other nodes wait through the election and serve the jobs pushed after it.
        all_blocked(&ids, ids.len() * WORKERS_PER_NODE);
        cluster.kill(leader);
        let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT);
        assert_ne!(new_leader, leader);
        cluster.set_with_retry(new_leader, "warm", "1", WRITE_TIMEOUT);
        push(followers[1], 150..250);
        wait_until(WRITE_TIMEOUT, "every job delivered", || delivered.lock().unwrap().len() >= 250);
        assert_eq!(delivered_jobs(150), expected(150..250), "each job once, after the election");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// PUBLISH goes through the log, so a message published through any node reaches the
/// subscribers of every node, and every subscriber sees the messages of concurrent publishers
/// in one and the same order: the log's.
#[test]
fn subscribers_on_every_node_get_every_message_in_the_same_order() {
    const PER_PUBLISHER: usize = 40;
    let mut cluster = Cluster::launch(3);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let ids = cluster.ids();
    let total = PER_PUBLISHER * ids.len();
    let (ready, subscribed) = std::sync::mpsc::channel();
    let subscribers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (mut con, ready) = (cluster.client(id), ready.clone());
            thread::spawn(move || {
                let mut pubsub = con.as_pubsub();
                pubsub.subscribe("events").unwrap();
                pubsub.psubscribe("ev*").unwrap();
                ready.send(()).unwrap();
                let mut received = Vec::new();
                while received.len() < 2 * total {
                    let message = pubsub.get_message().expect("every message arrives");
                    let pattern: Option<String> = message.get_pattern().ok();
                    received.push((pattern, message.get_payload::<String>().unwrap()));
                }
                received
            })
        })
        .collect();
    for _ in &ids {
        subscribed.recv_timeout(REPLY_TIMEOUT).expect("each subscriber subscribed");
    }
    let publishers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let mut con = cluster.client(id);
            thread::spawn(move || {
                for i in 0..PER_PUBLISHER {
                    let reached: i64 =
                        redis::cmd("PUBLISH").arg("events").arg(format!("{id}-{i}")).query(&mut con).unwrap();
                    assert_eq!(reached, 2, "this node's subscriber, by channel and by pattern");
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let received: Vec<Vec<(Option<String>, String)>> =
        subscribers.into_iter().map(|s| s.join().expect("subscriber")).collect();
    for (id, messages) in ids.iter().zip(&received) {
        assert_eq!(messages, &received[0], "node {id}'s subscriber saw another order than node {}'s", ids[0]);
    }
    // Each message once by channel, then once by pattern, each publisher's in its order.
    let by_channel: Vec<&String> = received[0].iter().step_by(2).map(|(_, m)| m).collect();
    for pair in received[0].chunks(2) {
        assert_eq!((&pair[0].0, &pair[1].0), (&None, &Some("ev*".to_owned())));
        assert_eq!(pair[0].1, pair[1].1);
    }
    for &id in &ids {
        let mine: Vec<String> =
            by_channel.iter().filter(|m| m.starts_with(&format!("{id}-"))).map(|m| m.to_string()).collect();
        let expected: Vec<String> = (0..PER_PUBLISHER).map(|i| format!("{id}-{i}")).collect();
        assert_eq!(mine, expected, "node {id}'s publisher's messages, each once, in order");
    }
}

/// Lua scripts through every node: a script loaded through a follower is found by SCRIPT
/// EXISTS and EVALSHA through every node at once (and a SET pipelined after an EVALSHA takes
/// effect after it, whether or not the follower had to catch up first: this does not force
/// that case); read-modify-write scripts sent concurrently through every node
/// (by redis-rs's `Script`, EVALSHA falling back to EVAL) are atomic, none lost; and a
/// script's random choices (`math.random`, SPOP, SRANDMEMBER) come out the same on every
/// node, each made leader in turn and so answering from its own keyspace.
#[test]
fn scripts_run_atomically_and_alike_on_every_node() {
    const PER_NODE: usize = 100;
    let mut cluster = Cluster::launch(3);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let ids = cluster.ids();
    let mut clients: Vec<Connection> = ids.iter().map(|&id| cluster.client(id)).collect();
    let increment = "local n = tonumber(redis.call('get', KEYS[1]) or '0') + 1 \
                     redis.call('set', KEYS[1], n) return n";
    let follower = ids.iter().copied().find(|&id| id != leader).unwrap();
    let sha: String =
        redis::cmd("SCRIPT").arg("LOAD").arg(increment).query(node(&mut clients, follower)).unwrap();
    for &id in &ids {
        let exists: Vec<i64> =
            redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(node(&mut clients, id)).unwrap();
        assert_eq!(exists, [1], "SCRIPT EXISTS through node {id} right after the load");
    }
    for (n, &id) in ids.iter().enumerate() {
        let reply: i64 = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("counter")
            .query(node(&mut clients, id))
            .unwrap_or_else(|e| panic!("EVALSHA through node {id} right after the load: {e}"));
        assert_eq!(reply, n as i64 + 1);
    }
    // Through a follower that may not have applied the load yet (it may have), an EVALSHA
    // pipelined before a SET takes effect before it.
    let overwrite = "return redis.call('set', KEYS[1], ARGV[1])";
    for round in 0..20 {
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(node(&mut clients, leader)).unwrap();
        let sha: String =
            redis::cmd("SCRIPT").arg("LOAD").arg(overwrite).query(node(&mut clients, leader)).unwrap();
        let (first, second): (String, String) = redis::pipe()
            .cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("ordered")
            .arg(format!("script {round}"))
            .cmd("SET")
            .arg("ordered")
            .arg(format!("set {round}"))
            .query(node(&mut clients, follower))
            .unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("OK", "OK"));
        assert_eq!(get_string(node(&mut clients, follower), "ordered"), Some(format!("set {round}")));
    }
    let flushed: String = redis::cmd("SCRIPT").arg("FLUSH").query(node(&mut clients, leader)).unwrap();
    assert_eq!(flushed, "OK");
    let returned = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for &id in &ids {
            let (returned, mut con) = (&returned, cluster.client(id));
            scope.spawn(move || {
                let script = redis::Script::new(increment);
                for _ in 0..PER_NODE {
                    let n: i64 = script.key("counter").invoke(&mut con).expect("the increment");
                    returned.lock().unwrap().push(n);
                }
            });
        }
    });
    let mut returned = returned.into_inner().unwrap();
    returned.sort_unstable();
    let start = ids.len() as i64;
    let expected: Vec<i64> = (start + 1..=start + (PER_NODE * ids.len()) as i64).collect();
    assert_eq!(returned, expected, "each increment saw the one before it: none lost, none repeated");

    let random = "redis.call('sadd', KEYS[1], 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j') \
                  local picked = redis.call('spop', KEYS[1]) \
                  redis.call('rpush', KEYS[2], picked .. ':' .. math.random(1000000) .. ':' .. \
                  redis.call('srandmember', KEYS[1]) .. ':' .. redis.call('randomkey')) return picked";
    for round in 0..30 {
        let id = ids[round % ids.len()];
        let _: String = redis::cmd("EVAL")
            .arg(random)
            .arg(2)
            .arg("bag")
            .arg("picks")
            .query(node(&mut clients, id))
            .unwrap();
    }
    let mut seen: Vec<(u64, Vec<String>, Vec<String>)> = Vec::new();
    for &id in &ids {
        cluster.make_leader(id, LEADER_TIMEOUT);
        let mut con = cluster.client(id);
        let picks: Vec<String> = redis::cmd("LRANGE").arg("picks").arg(0).arg(-1).query(&mut con).unwrap();
        let mut bag: Vec<String> = redis::cmd("SMEMBERS").arg("bag").query(&mut con).unwrap();
        bag.sort();
        assert_eq!(picks.len(), 30, "node {id}");
        seen.push((id, picks, bag));
    }
    for (id, picks, bag) in &seen[1..] {
        assert_eq!((picks, bag), (&seen[0].1, &seen[0].2), "node {id} against node {}", seen[0].0);
    }
}
