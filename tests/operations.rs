//! Operating a node: metrics, the config file, JSON logs, clean shutdown, peer authentication.
//!
//! These tests start `raft-kv` processes directly (one-node clusters, or three nodes with
//! different secrets), because each needs flags of its own.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{exit_within, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A node process that is killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_raft-kv"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Starts a one-node cluster; `extra` flags are appended.
fn single_node(dir: &Path, extra: &[&str]) -> Node {
    let port = free_port();
    let mut args: Vec<String> = vec![
        "--id".into(),
        "1".into(),
        "--cluster".into(),
        format!("127.0.0.1:{}", free_port()),
        "--port".into(),
        port.to_string(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Node { child: spawn(&args, &dir.join("node.log")), port }
}

fn client(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let con = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    con
}

/// Waits until the node accepts a write (it is up and has elected itself).
fn wait_writable(port: u16) {
    wait_until(WAIT, "the node to accept writes", || {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else { return false };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return false };
        redis::cmd("SET").arg("ready").arg("1").query::<String>(&mut con).is_ok()
    });
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A one-node cluster serving metrics, up and writable; returns it and its metrics address.
fn node_with_metrics(dir: &Path) -> (Node, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = single_node(dir, &["--metrics-addr", &metrics]);
    wait_writable(node.port);
    (node, metrics)
}

#[test]
fn metrics_endpoint_reports_raft_state_writes_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (node, metrics) = node_with_metrics(dir.path());
    let mut con = client(node.port);
    let _: String = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    let mut page = String::new();
    wait_until(WAIT, "the metrics page to show the write", || {
        page = http_get(&metrics, "/metrics").unwrap_or_default();
        page.contains("raftkv_keys 2")
    });
    for expected in [
        "raftkv_raft_is_leader 1",
        "raftkv_raft_leader_id 1",
        "raftkv_writes_total{result=\"ok\"} 2",
        "raftkv_reads_total{result=\"ok\"} 1",
        "raftkv_fsync_seconds_count",
        "raftkv_write_seconds_count 2",
        "# HELP raftkv_raft_term",
    ] {
        assert!(page.contains(expected), "{expected:?} missing from:\n{page}");
    }
}

/// Connections the metrics port serves at once (`MAX_CONNECTIONS` in src/metrics_http.rs).
const METRICS_CONNECTIONS: usize = 16;

#[test]
fn the_metrics_port_bounds_its_connections_and_closes_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (node, metrics) = node_with_metrics(dir.path());
    let answer = http_get(&metrics, "/elsewhere").unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 404"), "not a 404: {answer}");

    // Connections that never send a request take every place: the next scrape is refused.
    let mut silent: Vec<TcpStream> =
        (0..METRICS_CONNECTIONS).map(|_| TcpStream::connect(&metrics).unwrap()).collect();
    // (A refusal is answered without waiting for the request; a connection given a place
    // would wait for it.)
    wait_until(WAIT, "a connection past the places to be refused with a 503", || {
        let mut stream = TcpStream::connect(&metrics).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 503")
    });

    // The node closes them at its timeout (5 s), which gives their places back.
    for stream in &mut silent {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).unwrap(), 0, "a silent connection was answered");
    }
    wait_until(WAIT, "scrapes to be served again", || {
        http_get(&metrics, "/metrics")
            .is_some_and(|page| page.starts_with("HTTP/1.1 200") && page.contains("raftkv_"))
    });
    let mut con = client(node.port);
    let _: String = redis::cmd("SET").arg("after").arg("1").query(&mut con).unwrap();
}

#[test]
fn config_file_sets_options_flags_override_it_and_unknown_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "id = 1\ncluster = [\"127.0.0.1:{}\"]\nport = {file_port}\ndata-dir = \"{}\"\nlog-format = \"json\"\n",
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let args =
        vec!["--config".to_string(), config.display().to_string(), "--port".into(), flag_port.to_string()];
    let log = dir.path().join("node.log");
    let _node = Node { child: spawn(&args, &log), port: flag_port };
    wait_writable(flag_port);
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.lines().next().expect("the node logged something");
    assert!(first.starts_with('{') && first.contains("\"level\""), "not a JSON log line: {first}");
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err(), "the --port flag wins over the file");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "id = 1\nbogus = 2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raft-kv")).arg("--config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown option \"bogus\""), "{err}");
}

#[test]
fn sigterm_stops_the_node_cleanly_and_it_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = single_node(dir.path(), &[]);
    wait_writable(node.port);
    let _: String = redis::cmd("SET").arg("kept").arg("yes").query(&mut client(node.port)).unwrap();
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = exit_within(&mut node.child, WAIT, "the node").expect("the node exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
    drop(node);
    // The address book recorded in the data dir wins over --cluster, so a fresh port is fine.
    let node = single_node(dir.path(), &[]);
    wait_writable(node.port);
    let value: String = redis::cmd("GET").arg("kept").query(&mut client(node.port)).unwrap();
    assert_eq!(value, "yes");
}

#[test]
fn a_node_without_the_cluster_secret_is_refused_by_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let peers: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let secrets = ["right", "right", "wrong"];
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let port = free_port();
            let args: Vec<String> = vec![
                "--id".into(),
                id.to_string(),
                "--cluster".into(),
                peers.join(","),
                "--port".into(),
                port.to_string(),
                "--data-dir".into(),
                dir.path().join(format!("node{id}")).display().to_string(),
                "--cluster-secret".into(),
                secrets[id - 1].into(),
            ];
            Node { child: spawn(&args, &dir.path().join(format!("node{id}.log"))), port }
        })
        .collect();
    // The two nodes that share the secret form a majority and serve writes.
    wait_writable(nodes[0].port);
    let log1 = dir.path().join("node1.log");
    wait_until(WAIT, "node 1 to refuse node 3", || {
        std::fs::read_to_string(&log1).unwrap_or_default().contains("node 3 failed peer authentication")
    });
    // Node 3 never hears from the leader: it cannot learn the write.
    let info: String = redis::cmd("INFO").arg("raft").query(&mut client(nodes[2].port)).unwrap();
    assert!(info.contains("leader_id:0"), "node 3 found a leader despite the wrong secret:\n{info}");
    let read = redis::cmd("GET").arg("ready").query::<Option<String>>(&mut client(nodes[2].port));
    assert!(read.is_err(), "node 3 must not serve a read without a leader: {read:?}");
}
