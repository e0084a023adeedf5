//! Operating a node: metrics, the config file, JSON logs, clean shutdown, peer authentication,
//! TLS clients (`redis-cli --tls`, `redis-benchmark --tls`).
//!
//! These tests start `raft-kv` processes directly (one-node clusters, or three nodes with
//! different secrets), because each needs flags of its own.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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

/// A one-node cluster, up and writable, holding `kept = yes`.
fn node_keeping_a_key(dir: &Path) -> Node {
    let node = single_node(dir, &[]);
    wait_writable(node.port);
    let _: String = redis::cmd("SET").arg("kept").arg("yes").query(&mut client(node.port)).unwrap();
    node
}

/// Waits for a node that was told to stop (by `how`) to exit 0.
fn exits_cleanly(node: &mut Node, how: &str) {
    let status =
        exit_within(&mut node.child, WAIT, "the node").unwrap_or_else(|| panic!("no exit after {how}"));
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

/// Starts a node again on the data directory of [`node_keeping_a_key`] and reads `kept` back.
fn restarts_with_the_key(dir: &Path) {
    // The address book recorded in the data dir wins over --cluster, so a fresh port is fine.
    let node = single_node(dir, &[]);
    wait_writable(node.port);
    let value: String = redis::cmd("GET").arg("kept").query(&mut client(node.port)).unwrap();
    assert_eq!(value, "yes");
}

#[test]
fn sigterm_stops_the_node_cleanly_and_it_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_keeping_a_key(dir.path());
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    exits_cleanly(&mut node, "SIGTERM");
    drop(node);
    restarts_with_the_key(dir.path());
}

#[test]
fn shutdown_from_redis_cli_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_keeping_a_key(dir.path());
    let port = node.port.to_string();
    let cli = |args: &[&str]| common::run_tool("redis-cli", &[&["-p", port.as_str()], args].concat(), WAIT);
    // What is refused stops nothing.
    assert_eq!(cli(&["SHUTDOWN", "ABORT"]).stdout.trim(), "ERR No shutdown in progress.");
    assert_eq!(cli(&["SHUTDOWN", "SAVE", "NOSAVE"]).stdout.trim(), "ERR syntax error");
    let mut con = client(node.port);
    let _: String = redis::cmd("MULTI").query(&mut con).unwrap();
    let refused = redis::cmd("SHUTDOWN").query::<String>(&mut con).unwrap_err();
    assert!(refused.to_string().contains("not allowed inside a transaction"), "{refused}");
    assert!(node.child.try_wait().unwrap().is_none(), "the node stopped");

    let shutdown = cli(&["SHUTDOWN", "NOSAVE"]);
    assert!(shutdown.status.success() && shutdown.stdout.trim().is_empty(), "{shutdown:?}");
    exits_cleanly(&mut node, "SHUTDOWN");
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(log.contains("a client sent SHUTDOWN"), "{log}");
    drop(node);
    restarts_with_the_key(dir.path());
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

/// PEM files for the TLS tests: a CA, the nodes' certificate (for 127.0.0.1 and localhost, as
/// a server and, towards peers, as a client) and a client's, both signed by the CA.
struct Certificates {
    ca: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn certificates(dir: &Path) -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "raft-kv test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let signed = |names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = usages;
        (params.signed_by(&key, &ca, &ca_key).unwrap().pem(), key.serialize_pem())
    };
    let (node_cert, node_key) = signed(
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    );
    let (client_cert, client_key) = signed(Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth]);
    Certificates {
        ca: write("ca.crt", ca.pem()),
        node_cert: write("node.crt", node_cert),
        node_key: write("node.key", node_key),
        client_cert: write("client.crt", client_cert),
        client_key: write("client.key", client_key),
    }
}

/// A one-node cluster that also serves TLS clients, up and writable; returns it and its TLS port.
fn tls_node(dir: &Path, certs: &Certificates, extra: &[&str]) -> (Node, u16) {
    let tls_port = free_port();
    let port = tls_port.to_string();
    let mut args = vec!["--tls-port", &port];
    for (flag, path) in [
        ("--tls-cert-file", &certs.node_cert),
        ("--tls-key-file", &certs.node_key),
        ("--tls-ca-cert-file", &certs.ca),
    ] {
        args.extend([flag, path.to_str().unwrap()]);
    }
    args.extend(extra);
    let node = single_node(dir, &args);
    wait_writable(node.port);
    (node, tls_port)
}

/// `redis-cli --tls` against `port`, trusting the test CA, with the client certificate or
/// without one.
fn redis_cli_tls(port: u16, certs: &Certificates, client_cert: bool, command: &[&str]) -> common::ToolOutput {
    let port = port.to_string();
    let mut args = vec!["--tls", "--cacert", certs.ca.to_str().unwrap(), "-p", &port];
    if client_cert {
        args.extend(["--cert", certs.client_cert.to_str().unwrap()]);
        args.extend(["--key", certs.client_key.to_str().unwrap()]);
    }
    args.extend(command);
    common::run_tool("redis-cli", &args, WAIT)
}

/// What a connection to `port` gets back for a plain-text `PING` before the node closes it.
fn plain_ping(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"PING\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn tls_clients_use_the_tls_port_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let (node, tls_port) = tls_node(dir.path(), &certs, &[]);

    let set = redis_cli_tls(tls_port, &certs, true, &["SET", "secret", "over-tls"]);
    assert_eq!(set.stdout.trim(), "OK", "{set:?}");
    let plain: String = redis::cmd("GET").arg("secret").query(&mut client(node.port)).unwrap();
    assert_eq!(plain, "over-tls", "a write over TLS is the same keyspace");
    let get = redis_cli_tls(tls_port, &certs, true, &["GET", "secret"]);
    assert_eq!(get.stdout.trim(), "over-tls", "{get:?}");
    let config = redis_cli_tls(tls_port, &certs, true, &["CONFIG", "GET", "tls-*"]);
    let config: Vec<&str> = config.stdout.lines().collect();
    for pair in [["tls-port", &tls_port.to_string()], ["tls-auth-clients", "yes"]] {
        assert!(config.windows(2).any(|w| w == pair), "{pair:?} not in CONFIG GET tls-*: {config:?}");
    }

    // Pipelined and concurrent requests over TLS: the session reads and writes the stream at once.
    let port = tls_port.to_string();
    let (ca, cert, key) =
        (certs.ca.to_str().unwrap(), certs.client_cert.to_str().unwrap(), certs.client_key.to_str().unwrap());
    let bench = common::run_tool(
        "redis-benchmark",
        &["--tls", "--cacert", ca, "--cert", cert, "--key", key, "-p", &port]
            .into_iter()
            .chain(["-t", "set,get", "-n", "2000", "-c", "8", "-P", "4", "--csv"])
            .collect::<Vec<_>>(),
        WAIT,
    );
    for test in ["\"SET\"", "\"GET\""] {
        let line = bench.stdout.lines().find(|l| l.starts_with(test));
        let rate: f64 =
            line.and_then(|l| l.split(',').nth(1)).map_or(0.0, |r| r.trim_matches('"').parse().unwrap());
        assert!(rate > 0.0, "redis-benchmark --tls ran no {test}: {bench:?}");
    }

    // Without a client certificate, or without TLS, no command gets through.
    let refused = redis_cli_tls(tls_port, &certs, false, &["PING"]);
    assert!(!refused.stdout.contains("PONG"), "a client without a certificate was served: {refused:?}");
    let answer = plain_ping(tls_port);
    assert!(!String::from_utf8_lossy(&answer).contains("PONG"), "plain text was served: {answer:?}");
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(log.contains("TLS handshake failed") && log.contains("no certificates"), "{log}");
}

#[test]
fn a_tls_client_that_never_finishes_its_handshake_gives_its_place_back() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let (node, tls_port) = tls_node(dir.path(), &certs, &["--tls-auth-clients", "no", "--maxclients", "1"]);
    let ping = redis_cli_tls(tls_port, &certs, false, &["PING"]);
    assert_eq!(ping.stdout.trim(), "PONG", "--tls-auth-clients no asks for no certificate: {ping:?}");

    // A connection to the TLS port that sends nothing takes the only place (once the last
    // client's is given back: one refused is closed at once, one given the place is kept)...
    let mut silent = None;
    wait_until(WAIT, "a silent connection to the TLS port to be kept open", || {
        let stream = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let kept = matches!(
            (&stream).read(&mut [0u8; 16]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        );
        silent = kept.then_some(stream);
        kept
    });
    let mut silent = silent.unwrap();
    let refused = plain_ping(node.port);
    assert!(
        String::from_utf8_lossy(&refused).contains("max number of clients reached"),
        "a plain client was not refused while the TLS handshake held the only place: {refused:?}"
    );
    // ...until the node gives up on its handshake (10 s) and closes it.
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "the silent connection got an answer");
    wait_until(WAIT, "a plain client to be served again", || {
        String::from_utf8_lossy(&plain_ping(node.port)).contains("+PONG")
    });
}

#[test]
fn a_node_with_incomplete_tls_settings_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let data_dir = dir.path().join("data");
    let start = |extra: &[&str]| {
        let mut args = vec!["--id", "1", "--cluster", "127.0.0.1:1", "--port", "0", "--tls-port", "0"];
        args.extend(["--data-dir", data_dir.to_str().unwrap()]);
        args.extend(extra);
        let out = common::run_tool(env!("CARGO_BIN_EXE_raft-kv"), &args, WAIT);
        assert!(!out.status.success(), "started with {extra:?}");
        out.stderr
    };
    let no_files = start(&[]);
    assert!(no_files.contains("--tls-cert-file") && no_files.contains("--tls-key-file"), "{no_files}");
    let (cert, key) = (certs.node_cert.to_str().unwrap(), certs.node_key.to_str().unwrap());
    let no_ca = start(&["--tls-cert-file", cert, "--tls-key-file", key]);
    assert!(no_ca.contains("needs --tls-ca-cert-file"), "{no_ca}");
    let swapped = start(&["--tls-cert-file", key, "--tls-key-file", cert, "--tls-auth-clients", "no"]);
    assert!(swapped.contains("--tls-cert-file"), "{swapped}");
    let peers_without_ca = start(&["--tls-peers", "--tls-cert-file", cert, "--tls-key-file", key]);
    assert!(peers_without_ca.contains("--tls-ca-cert-file"), "{peers_without_ca}");
}

#[test]
fn peers_replicate_and_send_snapshots_over_tls_and_refuse_a_node_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let files = [&certs.node_cert, &certs.node_key, &certs.ca].map(|path| path.to_str().unwrap());
    let mut cluster = common::Cluster::launch_with(
        3,
        &[
            "--tls-peers",
            "--tls-cert-file",
            files[0],
            "--tls-key-file",
            files[1],
            "--tls-ca-cert-file",
            files[2],
            "--snapshot-threshold",
            "50",
        ],
    );
    let leader = cluster.wait_for_leader(WAIT);
    for i in 0..300 {
        cluster.set_with_retry(leader, format!("key{i}"), format!("value{i}"), WAIT);
    }
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let value: String = cluster.query_with_retry(follower, redis::cmd("GET").arg("key299"), WAIT);
    assert_eq!(value, "value299");

    // A new node starts far behind the compacted log: it gets a snapshot, over TLS.
    let joining = cluster.add_node();
    cluster.add_member(leader, joining, WAIT);
    wait_until(WAIT, "the new node to hold every key", || {
        cluster.query_with_retry::<u64>(joining, &redis::cmd("DBSIZE"), WAIT) >= 300
    });
    let log = std::fs::read_to_string(cluster.log_path(joining)).unwrap();
    assert!(log.contains("installed a snapshot"), "node {joining} did not catch up by snapshot:\n{log}");
    assert!(log.contains("tls_peers=true"), "{log}");

    // A peer connection without TLS gets no further than the TLS handshake.
    let peer = cluster.peer_addr(leader).to_string();
    let mut plain = TcpStream::connect(&peer).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(&[0, 0, 0, 4, b'R', b'K', b'V', b'1']).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    wait_until(WAIT, "the leader to log the refused connection", || {
        std::fs::read_to_string(cluster.log_path(leader)).unwrap().contains("reason=TLS handshake failed")
    });
    assert!(answer.first().is_none_or(|&b| b == 0x15), "a plain peer got more than a TLS alert: {answer:?}");
}
