//! Serving the gateway: `serve(listener, gateway, …, shutdown)` on an
//! already-bound listener (tests bind port 0), with a drain that answers
//! everything in hand before it returns.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::gateway::Gateway;

/// Serves the gateway's routes (plus `extra`, e.g. `/metrics`) until
/// `shutdown`; then stops taking requests and frames and returns once every
/// request and socket frame in hand has its answer, or `drain` has passed.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    extra: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    // The extra routes answer a method they do not take as the others do.
    let app = crate::router(gw.clone())
        .merge(extra)
        .method_not_allowed_fallback(crate::api::ops::method_not_allowed);
    let stop = shutdown.clone();
    let mut server = tokio::spawn(async move {
        accept(listener, app, stop).await;
        Ok::<_, std::io::Error>(())
    });
    let early = tokio::select! {
        result = &mut server => Some(result),
        _ = shutdown.cancelled() => None,
    };
    // Sockets finish the frame in hand, then close with 1001.
    gw.draining.cancel();
    gw.sockets.close();
    if tokio::time::timeout(drain, gw.sockets.wait())
        .await
        .is_err()
    {
        warn!(?drain, "sockets still busy after the drain; closing anyway");
    }
    let result = match early {
        Some(result) => result,
        None => match tokio::time::timeout(drain, &mut server).await {
            Ok(result) => result,
            Err(_) => {
                warn!(
                    ?drain,
                    "HTTP requests still in flight after the drain; closing anyway"
                );
                server.abort();
                return Ok(());
            }
        },
    };
    result.map_err(std::io::Error::other)?
}

/// How long a client has to send a request's headers: a slow-loris client
/// (a byte now and then, never a full request) is dropped after this
/// instead of holding its connection for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes connections until `stop`, then lets those in flight finish their
/// request (sockets are drained by the caller) and returns.
async fn accept(listener: TcpListener, app: Router, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, or a connection that died in the
                    // backlog: wait a moment rather than spin.
                    warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let service = app
            .clone()
            .map_request(|req: axum::http::Request<hyper::body::Incoming>| req.map(Body::new));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
