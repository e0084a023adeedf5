//! The Prometheus scrape endpoint (`--metrics-addr`): `GET /metrics` over HTTP/1.1, served on a
//! thread of its own so that a scrape never waits on, or delays, the node's event loop.
//!
//! The port is bounded like the client port: at most [`MAX_CONNECTIONS`] connections at once,
//! each closed after one request or [`CONNECTION_TIMEOUT`], whichever comes first. A connection
//! past the limit gets `503 Service Unavailable` and is closed. Without the bound, a flood of
//! connections here could take the file descriptors RocksDB needs, and stop the node.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections the metrics port serves at once (part of [`actors::RESERVED_FDS`]).
pub const MAX_CONNECTIONS: usize = 16;

/// How long one connection may take, from accept to its response written.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How often histograms are rolled over and idle metrics dropped: the recorder's upkeep.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Installs the Prometheus recorder and serves it on `addr`. Binding happens here, so a busy
/// or bad address stops the node at start.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    listener.set_nonblocking(true)?;
    let handle =
        PrometheusBuilder::new().install_recorder().context("cannot install the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || runtime.block_on(accept(listener, handle)))
        .context("cannot start the metrics thread")?;
    Ok(())
}

/// Accepts scrapes forever, each on a task of its own while it holds a place.
async fn accept(listener: std::net::TcpListener, handle: PrometheusHandle) {
    let listener = TcpListener::from_std(listener).expect("a bound listener registers with the runtime");
    tokio::spawn(upkeep(handle.clone()));
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Apart, so that refused scrapes never hide a failing accept (out of descriptors, say).
    let mut accept_warnings = actors::RefusalWarnings::default();
    let mut refusal_warnings = actors::RefusalWarnings::default();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin on the error.
                if accept_warnings.due() {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            if refusal_warnings.due() {
                tracing::warn!(%remote, "{MAX_CONNECTIONS} metrics connections open: refusing new ones");
            }
            // Read what the request has sent already (closing over unread bytes would reset the
            // connection and lose the answer). A fresh socket's send buffer takes the answer at
            // once; if not, the scraper gets the close.
            let _ = stream.try_read(&mut [0u8; 4096]);
            let _ = stream.try_write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                std::future::ready(Ok::<_, Infallible>(respond(&handle, &request)))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A slow or silent scraper is dropped at the timeout, and its place given back.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(place);
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics`.
fn respond(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, handle.render()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    response
}

/// Runs the recorder's upkeep, which the exporter's own listener used to run.
async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}
