//! The raft-kv node: read options (flags, `RAFTKV_*` environment variables, or a TOML config
//! file with the same names), set up logging and metrics, start the actors, wait for a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

mod metrics_http;

/// Every request allocates a few small buffers, replies and messages across threads; glibc's
/// malloc spent about a fifth of the leader's event-loop time on them (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Redis-compatible key-value store whose writes are replicated with Raft.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Every option can also be set with an environment variable (shown in brackets) or in \
                  the --config file, under the option's name (e.g. `data-dir = \"data/node1\"`). \
                  Flags win over the environment, which wins over the file."
)]
struct Options {
    /// A TOML file of options, with the same names as the flags (e.g. `port = 63791`).
    #[arg(long, env = "RAFTKV_CONFIG")]
    config: Option<PathBuf>,
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
    /// Where the node keeps its Raft log and data (default: `data/node<ID>`).
    #[arg(long, env = "RAFTKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Require clients to AUTH with this password (like Redis's `requirepass`).
    #[arg(long, env = "RAFTKV_REQUIREPASS")]
    requirepass: Option<String>,
    /// At most this many client connections at once (like Redis's `maxclients`): one more is
    /// answered `-ERR max number of clients reached`. The node raises its open-file limit to fit,
    /// or lowers this to fit the limit (and says so).
    #[arg(long, env = "RAFTKV_MAXCLIENTS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    maxclients: u64,
    /// Start with an empty data dir and wait to be added by the cluster (`RAFT.NODE ADD`).
    #[arg(long, env = "RAFTKV_JOIN")]
    join: bool,
    /// Compact the Raft log once this many applied entries follow the last compaction point
    /// (or once its entries hold 64 MiB); a leader waits up to twice that for a follower that
    /// can still catch up from the log.
    #[arg(long, env = "RAFTKV_SNAPSHOT_THRESHOLD", default_value_t = 20_000)]
    snapshot_threshold: u64,
    /// Largest bulk string (value) a client may send, in bytes (like Redis's
    /// `proto-max-bulk-len`); at most 512 MiB, since a value must fit in one Raft message.
    #[arg(long, env = "RAFTKV_PROTO_MAX_BULK_LEN", default_value_t = 512 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=512 * 1024 * 1024))]
    proto_max_bulk_len: u64,
    /// Peers must prove they know this secret when they connect (same value on every node).
    #[arg(
        long,
        env = "RAFTKV_CLUSTER_SECRET",
        conflicts_with = "cluster_secret_file",
        hide_env_values = true
    )]
    cluster_secret: Option<String>,
    /// A file holding the cluster secret (its surrounding whitespace is ignored).
    #[arg(long, env = "RAFTKV_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9121); off when unset.
    #[arg(long, env = "RAFTKV_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// When Raft log writes reach the disk. `everysec` is faster and NOT Raft-safe: see README.
    #[arg(long, env = "RAFTKV_FSYNC", value_enum, default_value = "always")]
    fsync: FsyncMode,
    /// Serve reads on the leader under a lease (`on`, the default) or with a read-index round
    /// each (`off`): see README, "Reads".
    #[arg(long, env = "RAFTKV_READ_LEASE", value_enum, default_value = "on")]
    read_lease: Switch,
    /// How long a write may wait to be committed before it is answered `-TIMEOUT` (its outcome
    /// is then unknown), in milliseconds.
    #[arg(long, env = "RAFTKV_WRITE_TIMEOUT", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    write_timeout: u64,
    /// Also serve clients over TLS on this port (like Redis's `tls-port`); needs
    /// --tls-cert-file and --tls-key-file. Off when unset.
    #[arg(long, env = "RAFTKV_TLS_PORT", requires_all = ["tls_cert_file", "tls_key_file"])]
    tls_port: Option<u16>,
    /// Peers connect to each other over TLS, each showing its certificate (like Redis's
    /// `tls-cluster`); needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file on every node.
    #[arg(long, env = "RAFTKV_TLS_PEERS", requires_all = ["tls_cert_file", "tls_key_file", "tls_ca_cert_file"])]
    tls_peers: bool,
    /// The node's TLS certificate chain (PEM, leaf first), for --tls-port and --tls-peers.
    #[arg(long, env = "RAFTKV_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, env = "RAFTKV_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client and peer certificates must chain to.
    #[arg(long, env = "RAFTKV_TLS_CA_CERT_FILE")]
    tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must show a certificate signed by --tls-ca-cert-file (`yes`, Redis's
    /// default), may show one (`optional`), or are not asked for one (`no`).
    #[arg(long, env = "RAFTKV_TLS_AUTH_CLIENTS", value_enum, default_value = "yes")]
    tls_auth_clients: TlsAuthClients,
    /// Log format on stderr.
    #[arg(long, env = "RAFTKV_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Fault tests only: a file naming peer traffic to drop (`drop-out <id>` / `drop-in <id>`).
    #[arg(long, env = "RAFTKV_FAULT_CONTROL", hide = true)]
    fault_control: Option<PathBuf>,
}

fn main() {
    no_transparent_huge_pages();
    if let Err(e) = run() {
        // One clear line for an operator, not a backtrace.
        eprintln!("raft-kv: {e:#}");
        std::process::exit(1);
    }
}

/// mimalloc asks for transparent huge pages on its arenas, so every first touch of memory it
/// had returned to the kernel faulted in and zeroed 2 MiB at once: a sixth of Storage's
/// thread under pipelined writes (which allocate and free large log entries), and latency
/// spikes on whichever thread took the fault. With 4 KiB pages `-P 16` SET took 5–10 % less
/// CPU and its p99 fell by a third (docs/BENCHMARKS.md, eighth round). Best effort: a kernel
/// without the switch keeps its default.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FsyncMode {
    /// Sync every Raft log write before acknowledging it (Raft's rule; the default).
    Always,
    /// Sync log writes about once a second, like Redis's `appendfsync everysec`: faster, but a
    /// power loss can lose acknowledged writes and let replicas diverge. Not Raft-safe.
    Everysec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TlsAuthClients {
    Yes,
    Optional,
    No,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn run() -> anyhow::Result<()> {
    load_config_file()?;
    let options = Options::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match options.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    if options.cluster.iter().any(|a| a.trim().is_empty()) {
        bail!("--cluster has an empty address");
    }
    let cluster_secret = match (&options.cluster_secret, &options.cluster_secret_file) {
        (Some(secret), _) => secret.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --cluster-secret-file {}", path.display()))?
            .trim()
            .as_bytes()
            .to_vec(),
        (None, None) => Vec::new(),
    };
    let loopback = options.bind.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || options.bind == "localhost";
    if !loopback && options.requirepass.is_none() {
        // Redis's protected mode refuses such clients; we serve them, but say it loudly.
        tracing::warn!(
            bind = %options.bind,
            "the Redis port is reachable from other hosts and no --requirepass is set: \
             anyone who can connect can read and change every key"
        );
    }
    if !loopback && cluster_secret.is_empty() {
        tracing::warn!("no --cluster-secret: any host that can reach the peer port can pose as a node");
    }
    let tls_files = [&options.tls_cert_file, &options.tls_key_file, &options.tls_ca_cert_file];
    if options.tls_port.is_none() && !options.tls_peers && tls_files.iter().any(|f| f.is_some()) {
        bail!("TLS certificate files are given, but neither --tls-port nor --tls-peers is set");
    }
    if matches!(options.fsync, FsyncMode::Everysec) {
        tracing::warn!(
            "--fsync everysec: log writes are synced about once a second; a power loss can lose \
             acknowledged writes and let the replicas diverge"
        );
    }
    if let Some(addr) = options.metrics_addr {
        metrics_http::serve(addr)?;
        actors::telemetry::describe();
        tracing::info!(%addr, "serving Prometheus metrics");
    }
    let maxclients = fit_open_files(options.maxclients)?;
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
            read_lease: options.read_lease == Switch::On,
            ..Default::default()
        },
        store: actors::redis_store::StoreTiming {
            write_timeout: std::time::Duration::from_millis(options.write_timeout),
            ..Default::default()
        },
        limits: actors::resp::RespLimits {
            max_bulk_len: options.proto_max_bulk_len as usize,
            ..Default::default()
        },
        requirepass: options.requirepass.clone(),
        maxclients: usize::try_from(maxclients).expect("--maxclients is at most 1 000 000"),
        join: options.join,
        cluster_secret,
        fault_control: options.fault_control.clone(),
        fsync: match options.fsync {
            FsyncMode::Always => actors::storage::Fsync::Always,
            FsyncMode::Everysec => actors::storage::Fsync::EverySec,
        },
        tls: (options.tls_port.is_some() || options.tls_peers).then(|| actors::tls::TlsSettings {
            port: options.tls_port,
            peers: options.tls_peers,
            cert_file: options.tls_cert_file.clone().expect("clap requires --tls-cert-file"),
            key_file: options.tls_key_file.clone().expect("clap requires --tls-key-file"),
            ca_cert_file: options.tls_ca_cert_file.clone(),
            client_auth: match options.tls_auth_clients {
                TlsAuthClients::Yes => actors::tls::ClientAuth::Required,
                TlsAuthClients::Optional => actors::tls::ClientAuth::Optional,
                TlsAuthClients::No => actors::tls::ClientAuth::No,
            },
        }),
    };
    let system = actix_rt::System::new();
    system.block_on(async move {
        // A write past the file-size limit (`ulimit -f`) then fails with EFBIG and stops the
        // node through its storage-error path, as a full disk does, instead of SIGXFSZ killing
        // it without a word. (A handler, once registered, stays for the process's lifetime.)
        let _file_too_large = signal(SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw()))
            .context("cannot handle SIGXFSZ")?;
        let mut node = actors::start_node(config)
            .await
            .map_err(anyhow::Error::msg)
            .context("raft-kv could not start")?;
        tokio::select! {
            _ = wait_for_shutdown_signal() => tracing::info!("shutting down"),
            Some(()) = node.shutdown_requests.recv() => tracing::info!("shutting down: a client sent SHUTDOWN"),
        }
        node.shutdown().await;
        Ok(())
    })
}

/// Makes room for `maxclients` connections in the open-file limit (`ulimit -n`), next to the
/// descriptors the node keeps for its storage and peers ([`actors::RESERVED_FDS`]), as Redis
/// does: raises the soft limit as far as the hard limit allows, and if that is not enough,
/// serves fewer clients (and says so) rather than letting a flood of connections take the
/// descriptors RocksDB needs. Returns the `maxclients` the node runs with.
fn fit_open_files(maxclients: u64) -> anyhow::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let wanted = maxclients + actors::RESERVED_FDS;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < wanted) {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        // Best effort: whatever the limit is now decides below.
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: limit.maximum });
    }
    let limit = getrlimit(Resource::Nofile);
    let fitted = clients_within(maxclients, limit.current).map_err(anyhow::Error::msg)?;
    if fitted < maxclients {
        tracing::warn!(
            maxclients = fitted,
            requested = maxclients,
            open_files = limit.current,
            hard_limit = limit.maximum,
            reserved = actors::RESERVED_FDS,
            "--maxclients lowered to fit the open-file limit (raise `ulimit -n` to serve more clients)"
        );
    }
    Ok(fitted)
}

/// How many clients fit in an open-file limit (`None`: unlimited) next to the descriptors the
/// node keeps for itself.
fn clients_within(maxclients: u64, open_files: Option<u64>) -> Result<u64, String> {
    let Some(open_files) = open_files else { return Ok(maxclients) };
    match open_files.checked_sub(actors::RESERVED_FDS) {
        Some(room) if room > 0 => Ok(room.min(maxclients)),
        _ => Err(format!(
            "the open-file limit (ulimit -n) is {open_files}: a node keeps {} descriptors for its \
             storage and peers and needs more for its clients; raise it to at least {}",
            actors::RESERVED_FDS,
            actors::RESERVED_FDS + maxclients.min(1024)
        )),
    }
}

async fn wait_for_shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Turns the `--config` TOML file (or `RAFTKV_CONFIG`) into `RAFTKV_*` environment variables
/// that are not already set, so the file has the lowest precedence and clap documents and
/// validates every option in one place.
fn load_config_file() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .map(str::to_string)
            .or_else(|| (a == "--config").then(|| args.get(i + 1).cloned()).flatten())
    });
    let Some(path) = from_args.or_else(|| std::env::var("RAFTKV_CONFIG").ok()) else { return Ok(()) };
    let text = std::fs::read_to_string(Path::new(&path))
        .with_context(|| format!("cannot read config file {path}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("config file {path} is not valid TOML"))?;
    let command = <Options as clap::CommandFactory>::command();
    let known: Vec<&str> = command.get_arguments().filter_map(|a| a.get_long()).collect();
    for (name, value) in table {
        if !known.contains(&name.as_str()) || name == "config" {
            bail!("config file {path}: unknown option {name:?} (options: {})", known.join(", "));
        }
        let var = format!("RAFTKV_{}", name.to_ascii_uppercase().replace('-', "_"));
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => bail!("config file {path}: unsupported value for {name}: {other}"),
        };
        if std::env::var_os(&var).is_none() {
            // Single-threaded here: nothing else reads the environment concurrently.
            std::env::set_var(&var, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clients_within;
    use actors::RESERVED_FDS;

    #[test]
    fn clients_get_what_the_open_file_limit_leaves_after_the_reserve() {
        assert_eq!(clients_within(10_000, None), Ok(10_000), "no limit");
        assert_eq!(clients_within(10_000, Some(1_048_576)), Ok(10_000));
        assert_eq!(clients_within(10_000, Some(10_000 + RESERVED_FDS)), Ok(10_000), "exactly enough");
        assert_eq!(clients_within(10_000, Some(1024)), Ok(1024 - RESERVED_FDS));
        assert_eq!(clients_within(5, Some(RESERVED_FDS + 1)), Ok(1));
        let refused = clients_within(10_000, Some(RESERVED_FDS)).unwrap_err();
        assert!(refused.contains("ulimit -n") && refused.contains(&RESERVED_FDS.to_string()), "{refused}");
        assert!(clients_within(10_000, Some(100)).is_err());
    }
}
