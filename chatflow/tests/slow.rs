#![allow(clippy::unwrap_used)]
//! A device that never reads its socket: the node keeps a bounded amount
//! of frames for it, then drops it (close 1013 if it ever reads again),
//! and the other members of the conversation get every message as usual.

mod common;

use std::time::Duration;

use common::{Api, Chatflow, Ws};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

/// Enough 16 KB messages to fill the loopback buffers and the node's
/// per-socket budget (4 MiB) several times over.
const MESSAGES: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_reads_is_dropped_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let (alice, bob, carol) = (
        cf.token("alice").await,
        cf.token("bob").await,
        cf.token("carol").await,
    );
    let cid = Api::new(&cf, &alice).create_group(&["bob", "carol"]).await;

    // Bob's phone resumes, then never reads again. Its receive buffer is
    // small, as on a phone, so what the node queues for it shows soon.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(cf.http).await.unwrap();
    let url = format!("ws://{}/v1/ws?device_id=stuck&token={bob}", cf.http);
    let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut stuck = Ws { stream };
    stuck.live().await;
    // Carol's laptop reads everything.
    let mut reader = Ws::connect(&cf, &carol, "laptop").await;
    reader.live().await;
    let (cid_r, total) = (cid.clone(), MESSAGES);
    let carol_reads = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < total {
            let f = reader.next().await;
            if f["type"] == "event" && f["conversation_id"] == *cid_r.as_str() {
                seqs.push(f["seq"].as_i64().unwrap());
            }
        }
        (seqs, reader)
    });

    // Alice sends, a window of 32 in flight, reading her own socket.
    let mut sender = Ws::connect(&cf, &alice, "desk").await;
    sender.live().await;
    let body = "x".repeat(16_000);
    let (mut sent, mut acked) = (0, 0);
    while acked < MESSAGES {
        while sent < MESSAGES && sent - acked < 32 {
            sender
                .send(json!({"type": "send", "conversation_id": cid, "client_msg_id": format!("m{sent}"), "body": body}))
                .await;
            sent += 1;
        }
        let f = sender.next().await;
        assert_ne!(f["type"], "error", "{f}");
        if f["type"] == "ack" {
            acked += 1;
        }
    }

    // Carol got every message, in order.
    let (seqs, _reader) = tokio::time::timeout(Duration::from_secs(60), carol_reads)
        .await
        .expect("carol receives every message")
        .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order");

    // Bob's stuck socket is no longer held: the node counts only alice's
    // and carol's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let open = cf.metric("chatflow_gateway_sockets_open").await;
        if open == Some(2.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck socket is still registered: {open:?} sockets open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Reading at last, bob finds a bounded backlog, then the end: a 1013
    // close if the close frame made it into the buffers, else the dropped
    // connection.
    let mut events = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stuck.stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    let f: Value = serde_json::from_str(&t).unwrap();
                    if f["type"] == "event" {
                        events += 1;
                    }
                }
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the stuck socket ends");
    assert!(matches!(ended, Some(1013) | None), "closed with {ended:?}");
    assert!(events < MESSAGES, "bob's backlog is bounded: {events}");
    // A new socket resumes what bob missed.
    let mut again = Ws::connect(&cf, &bob, "stuck").await;
    again
        .send(json!({"type": "resume", "cursors": {cid.clone(): -1}}))
        .await;
    let (resumed, _) = again.until("resumed").await;
    assert!(resumed["events"].as_u64().unwrap() >= MESSAGES as u64);
}

/// Slow-loris: a client that trickles its request headers is cut off after
/// 10 s, one that trickles its body gets 408 `request_timeout`; a normal
/// request on another connection is answered all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_trickle_in_are_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let alice = cf.token("alice").await;
    let started = std::time::Instant::now();

    // Headers: a line every second, never the blank line that ends them.
    let headers = tokio::spawn({
        let addr = cf.http;
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            for i in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tcp
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                let mut byte = [0u8; 1];
                if let Ok(read) =
                    tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut byte)).await
                {
                    // Closed (0 or a reset), not answered.
                    assert!(
                        read.map_or(true, |n| n == 0),
                        "an answer to a request never finished"
                    );
                    break;
                }
            }
            started.elapsed()
        }
    });

    // Body: the headers promise 1,000 bytes, 10 arrive.
    let mut tcp = TcpStream::connect(cf.http).await.unwrap();
    let head = format!(
        "POST /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"kind\":\""
    );
    tcp.write_all(head.as_bytes()).await.unwrap();

    // Meanwhile others are served.
    let (status, _) = Api::new(&cf, &alice).get("/v1/conversations").await;
    assert_eq!(status, 200);

    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer))
        .await
        .expect("the server ends a connection whose body never comes")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    let body_cut = started.elapsed();

    let headers_cut = headers.await.unwrap();
    for cut in [headers_cut, body_cut] {
        assert!(
            cut >= Duration::from_secs(9) && cut < Duration::from_secs(30),
            "cut off after {cut:?}, the limit is 10 s"
        );
    }
}

/// One user flooding from many sockets and REST at once shares one budget
/// (PROTOCOL.md: 20 sends/s, burst 50, per user): what is over it is
/// refused with `rate_limited` naming the send, nothing refused is stored,
/// every socket stays open, and another user's sends in the same
/// conversation are all accepted meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_flooding_from_many_sockets_shares_one_budget() {
    const SOCKETS: usize = 8;
    const PER_SOCKET: usize = 40;
    const REST: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start(&dir.path().join("data")).await;
    let (flood, calm) = (cf.token("flood").await, cf.token("calm").await);
    let cid = Api::new(&cf, &flood).create_group(&["calm"]).await;
    let started = std::time::Instant::now();

    let sockets = (0..SOCKETS).map(|s| {
        let (cf, flood, cid) = (&cf, &flood, &cid);
        async move {
            let mut ws = Ws::connect(cf, flood, &format!("f{s}")).await;
            for i in 0..PER_SOCKET {
                ws.send(json!({"type": "send", "conversation_id": cid,
                               "client_msg_id": format!("f{s}-{i}"), "body": "flood"}))
                    .await;
            }
            let (mut acked, mut refused) = (Vec::new(), Vec::new());
            while acked.len() + refused.len() < PER_SOCKET {
                let f = ws.next().await;
                match f["type"].as_str() {
                    Some("ack") => acked.push(f["client_msg_id"].as_str().unwrap().to_owned()),
                    Some("error") => {
                        assert_eq!(f["code"], "rate_limited", "{f}");
                        refused.push(f["ref"].as_str().unwrap().to_owned());
                    }
                    _ => {}
                }
            }
            // Still open: a ping is answered.
            ws.send(json!({"type": "ping"})).await;
            ws.until("pong").await;
            (acked, refused)
        }
    });
    let rest = (0..REST).map(|i| {
        let api = Api::new(&cf, &flood);
        let cid = cid.clone();
        async move {
            let id = format!("rest-{i}");
            let (status, body) = api
                .post(
                    &format!("/v1/conversations/{cid}/messages"),
                    json!({"client_msg_id": id, "body": "flood"}),
                )
                .await;
            match status {
                201 => (vec![id], vec![]),
                429 => {
                    assert_eq!(common::code(&body), "rate_limited");
                    (vec![], vec![id])
                }
                other => panic!("{other}: {body}"),
            }
        }
    });
    let calm_sends = async {
        let api = Api::new(&cf, &calm);
        for i in 0..10 {
            common::post(&api, &cid, &format!("calm-{i}"), json!({"body": "calm"})).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (flooded, rested, ()) = tokio::join!(
        futures::future::join_all(sockets),
        futures::future::join_all(rest),
        calm_sends
    );
    let elapsed = started.elapsed().as_secs_f64();
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for (a, r) in flooded.into_iter().chain(rested) {
        acked.extend(a);
        refused.extend(r);
    }
    let total = SOCKETS * PER_SOCKET + REST;
    assert_eq!(acked.len() + refused.len(), total);
    // The burst, plus what the bucket refilled while the flood lasted.
    let allowed = 50.0 + 20.0 * elapsed;
    assert!(
        acked.len() >= 50 && acked.len() as f64 <= allowed + 1.0,
        "{} of {total} accepted in {elapsed:.1} s (budget {allowed:.0})",
        acked.len()
    );

    // History holds exactly what was accepted, each once.
    let history = Api::new(&cf, &calm).all_messages(&cid).await;
    let mut stored: Vec<String> = history
        .iter()
        .filter(|m| m["sender_id"] == "flood")
        .map(|m| m["client_msg_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    stored.sort();
    acked.sort();
    assert_eq!(stored, acked);
    let calm_stored = history.iter().filter(|m| m["sender_id"] == "calm").count();
    assert_eq!(calm_stored, 10, "the other member's sends all went through");
}
