//! The raft-kv node: parse options, set up logging, start the actors, wait for a signal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A Redis-compatible key-value store whose writes are replicated with Raft.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {
    /// This node's id: its position (1-based) in --cluster.
    #[arg(long, env = "RAFTKV_ID")]
    id: u64,
    /// Comma-separated peer (Raft) addresses of all nodes, host:port, node i at position i.
    #[arg(long, env = "RAFTKV_CLUSTER", value_delimiter = ',', required = true)]
    cluster: Vec<String>,
    /// The Redis port clients connect to.
    #[arg(long, env = "RAFTKV_PORT")]
    port: u16,
    /// Address the Redis port listens on.
    #[arg(long, env = "RAFTKV_BIND", default_value = "127.0.0.1")]
    bind: String,
    /// Where the node keeps its Raft log and data [default: data/node<ID>].
    #[arg(long, env = "RAFTKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Require clients to AUTH with this password (like Redis's `requirepass`).
    #[arg(long, env = "RAFTKV_REQUIREPASS")]
    requirepass: Option<String>,
    /// Start with an empty data dir and wait to be added by the cluster (`RAFT.NODE ADD`).
    #[arg(long, env = "RAFTKV_JOIN")]
    join: bool,
    /// Compact the Raft log once this many applied entries follow the last compaction point.
    #[arg(long, env = "RAFTKV_SNAPSHOT_THRESHOLD", default_value_t = 20_000)]
    snapshot_threshold: u64,
    /// Largest bulk string (value) a client may send, in bytes (like Redis's
    /// `proto-max-bulk-len`); at most 512 MiB, since a value must fit in one Raft message.
    #[arg(long, env = "RAFTKV_PROTO_MAX_BULK_LEN", default_value_t = 512 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=512 * 1024 * 1024))]
    proto_max_bulk_len: u64,
    /// Fault tests only: a file naming peer traffic to drop (`drop-out <id>` / `drop-in <id>`).
    #[arg(long, env = "RAFTKV_FAULT_CONTROL", hide = true)]
    fault_control: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run() {
        // One clear line for an operator, not a backtrace.
        eprintln!("raft-kv: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if options.cluster.iter().any(|a| a.trim().is_empty()) {
        bail!("--cluster has an empty address");
    }
    let data_dir =
        options.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("data/node{}", options.id)));
    let config = actors::NodeConfig {
        id: options.id,
        cluster: options.cluster.clone(),
        bind: options.bind.clone(),
        port: options.port,
        data_dir,
        raft: actors::raft_node::RaftTiming {
            compact_after: options.snapshot_threshold.max(1),
            compact_keep: (options.snapshot_threshold / 10).min(2_000),
            ..Default::default()
        },
        store: Default::default(),
        limits: actors::resp::RespLimits {
            max_bulk_len: options.proto_max_bulk_len as usize,
            ..Default::default()
        },
        requirepass: options.requirepass.clone(),
        join: options.join,
        fault_control: options.fault_control.clone(),
    };
    let system = actix_rt::System::new();
    system.block_on(async move {
        let node = actors::start_node(config)
            .await
            .map_err(anyhow::Error::msg)
            .context("raft-kv could not start")?;
        wait_for_shutdown_signal().await;
        tracing::info!("shutting down");
        // A leader hands over first, so clients see a new leader at once instead of after an
        // election timeout. Bounded: a stuck transfer does not keep the process alive.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), node.raft.send(actors::raft_node::Shutdown)).await;
        Ok(())
    })
}

async fn wait_for_shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
