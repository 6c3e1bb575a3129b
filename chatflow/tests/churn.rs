#![allow(clippy::unwrap_used)]
//! Sockets opened and dropped in a loop: after each round the node is back
//! where it started (no socket left registered, no descriptor held, no
//! device still shown online), whether the clients closed cleanly or just
//! went away.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Chatflow, Ws};
use futures::StreamExt;
use serde_json::json;

const ROUNDS: usize = 4;
const USERS: usize = 125;
const DEVICES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_opened_and_dropped_in_a_loop_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let users: Vec<String> = (0..USERS).map(|u| format!("churn{u}")).collect();
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(cf.token(user).await);
    }
    // Groups of five, so that each device going on- or offline is news to
    // four others.
    for group in users.chunks(5) {
        let others: Vec<&str> = group[1..].iter().map(String::as_str).collect();
        Api::new(
            &cf,
            &tokens[users.iter().position(|u| *u == group[0]).unwrap()],
        )
        .create_group(&others)
        .await;
    }
    let baseline = cf.open_fds();

    for round in 0..ROUNDS {
        let opened: Vec<Ws> = futures::stream::iter((0..USERS * DEVICES).map(|i| {
            let (token, cf) = (&tokens[i / DEVICES], &cf);
            async move {
                let mut ws = Ws::connect(cf, token, &format!("d{}", i % DEVICES)).await;
                ws.live().await;
                ws
            }
        }))
        .buffer_unordered(100)
        .collect()
        .await;
        assert_eq!(
            cf.metric("chatflow_gateway_sockets_open").await,
            Some((USERS * DEVICES) as f64),
            "round {round}: every socket registered"
        );
        // Half say goodbye; the other half vanish (the connection just
        // ends, as when a phone loses its network).
        futures::stream::iter(opened.into_iter().enumerate())
            .for_each_concurrent(100, |(i, mut ws)| async move {
                if i % 2 == 0 {
                    let _ = ws.stream.close(None).await;
                    while let Some(Ok(_)) = ws.stream.next().await {}
                } else {
                    drop(ws);
                }
            })
            .await;

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let open = cf.metric("chatflow_gateway_sockets_open").await;
            let fds = cf.open_fds();
            if open == Some(0.0) && fds <= baseline + 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: 30 s after the clients left the node still has {open:?} sockets and {fds} fds (baseline {baseline})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Nobody is left online: every device's offline record went out.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (user, token) in users.iter().zip(&tokens) {
        loop {
            let (status, body) = Api::new(&cf, token)
                .get(&format!("/v1/users/{user}/presence"))
                .await;
            assert_eq!(status, 200, "{body}");
            if body["online"] == json!(false) && body["last_seen"].is_string() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{user} still shown {body} after all their devices left"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
