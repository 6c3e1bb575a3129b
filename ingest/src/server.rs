//! Serving the gateway: `serve(listener, gateway, …, shutdown)` on an
//! already-bound listener (tests bind port 0), with a drain that answers
//! everything in hand before it returns.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

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
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
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
