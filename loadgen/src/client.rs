//! The one WebSocket client of chatflow's load tools: dev login, a socket
//! from a chosen local address, resume, and waiting for a kind of frame.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A token from the gateway's dev login (`--dev-auth true`).
pub async fn dev_token(http: &reqwest::Client, base: &str, user: &str) -> anyhow::Result<String> {
    let v: Value = http
        .post(format!("{base}/v1/dev/token"))
        .json(&json!({"user_id": user}))
        .send()
        .await?
        .error_for_status()
        .context("dev login (the gateway needs --dev-auth true)")?
        .json()
        .await?;
    v["token"].as_str().map(str::to_owned).context("no token")
}

/// A WebSocket to `path` on `server`, from `source` (any local address
/// when `None`; many sources lift the limit of ports per address).
pub async fn open(
    server: SocketAddr,
    source: Option<Ipv4Addr>,
    path: &str,
) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    socket.set_nodelay(true)?;
    let stream = socket.connect(server).await?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{server}{path}"), stream).await?;
    Ok(ws)
}

/// A chatflow device's socket, resumed with no cursors (live from now).
pub async fn connect(server: SocketAddr, token: &str, device: &str) -> anyhow::Result<Socket> {
    let path = format!("/v1/ws?device_id={device}&token={token}");
    let mut ws = open(server, None, &path).await?;
    send(&mut ws, &json!({"type": "resume", "cursors": {}})).await?;
    wait_for(&mut ws, "resumed").await?;
    Ok(ws)
}

pub async fn send(ws: &mut Socket, frame: &Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

/// The next frame of type `kind`, skipping others; an `error` frame, a
/// closed socket or 30 s of silence is an error.
pub async fn wait_for(ws: &mut Socket, kind: &str) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("timed out")?;
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] == kind {
                    return Ok(v);
                }
                if v["type"] == "error" {
                    bail!("error frame: {v}");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("socket closed"),
        }
    }
}
