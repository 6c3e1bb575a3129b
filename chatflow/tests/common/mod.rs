#![allow(clippy::unwrap_used)]
//! Starts the real `chatflow` binary on free ports with a temp data dir.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct Chatflow {
    child: Option<Child>,
    pub http: SocketAddr,
    pub kafka: SocketAddr,
    pub registry: SocketAddr,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    /// `RUST_LOG` for the process (default: its own default filter).
    log_filter: Option<String>,
}

impl Chatflow {
    pub async fn start(data_dir: &Path) -> Chatflow {
        Self::start_with(data_dir, &[]).await
    }

    /// A chatflow whose rate limit is far above what a test sends.
    pub async fn start_unlimited(data_dir: &Path) -> Chatflow {
        Self::start_with(data_dir, &["--rate", "10000", "--rate-burst", "10000"]).await
    }

    pub async fn start_with(data_dir: &Path, extra: &[&str]) -> Chatflow {
        let mut cf = Self::unstarted(data_dir, extra);
        cf.spawn().await;
        cf
    }

    /// Like [`Chatflow::start_with`], logging at `filter` (`RUST_LOG`).
    pub async fn start_logging(data_dir: &Path, extra: &[&str], filter: &str) -> Chatflow {
        let mut cf = Self::unstarted(data_dir, extra);
        cf.log_filter = Some(filter.to_owned());
        cf.spawn().await;
        cf
    }

    fn unstarted(data_dir: &Path, extra: &[&str]) -> Chatflow {
        // Held together while picked, so that the three differ.
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let [http, kafka, registry] = [0, 1, 2].map(|i| held[i].local_addr().unwrap());
        drop(held);
        Chatflow {
            child: None,
            http,
            kafka,
            registry,
            data_dir: data_dir.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log_filter: None,
        }
    }

    /// What the process has logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatflow"));
        if let Some(filter) = &self.log_filter {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .arg("serve")
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--http", &self.http.to_string()])
            .args(["--kafka-listen", &self.kafka.to_string()])
            .args(["--registry", &self.registry.to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "chatflow exited early: {status}; see {}",
                    self.data_dir.with_extension("log").display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.data_dir.with_extension("log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "chatflow did not become ready; the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("chatflow running")
    }

    /// File descriptors the running process holds.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chatflow did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again at once and returns how long it took to
    /// answer `/readyz` (restart-to-healthy).
    pub async fn start_again(&mut self) -> Duration {
        let started = Instant::now();
        self.spawn().await;
        started.elapsed()
    }

    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop().await;
            assert!(status.success(), "graceful stop exits 0, got {status}");
        }
        self.spawn().await;
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of a Prometheus series' values on `/metrics` (None if
    /// absent): `name` may carry labels, or leave them out to sum them all.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && !l[name.len()..].starts_with('_'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    pub async fn token(&self, user: &str) -> String {
        dev_token(self.http, user).await
    }

    /// Runs `chatflow <args>` against this instance's broker.
    pub fn cli(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_chatflow"))
                .args(args)
                .args(["--kafka-listen", &self.kafka.to_string()]),
        )
    }
}

impl Drop for Chatflow {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command to its end; it must succeed. Returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Posts a message until the server acknowledges it, re-sending the same
/// client_msg_id while the server is down, restarting or busy, as a client
/// does; returns its seq.
pub async fn send_until_acked(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    cid: &str,
    id: &str,
    body: &str,
) -> i64 {
    loop {
        let r = client
            .post(format!("{base}/v1/conversations/{cid}/messages"))
            .bearer_auth(token)
            .json(&json!({"client_msg_id": id, "body": body}))
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 201 => {
                let ack: Value = r.json().await.unwrap();
                return ack["seq"].as_i64().unwrap();
            }
            Ok(r) => assert!(
                [429, 503].contains(&r.status().as_u16()),
                "unexpected {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => {} // the server is restarting
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A dev-login token from the gateway at `http`.
pub async fn dev_token(http: SocketAddr, user: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("http://{http}/v1/dev/token"))
        .json(&json!({"user_id": user}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_owned()
}

pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(cf: &Chatflow, token: &str) -> Api {
        Api::at(cf.http, token)
    }

    /// The API of the gateway at `http`.
    pub fn at(http: SocketAddr, token: &str) -> Api {
        Api {
            base: format!("http://{http}"),
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Any method, with an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The hits of a search for `q` (one page, default size).
    pub async fn search(&self, q: &str) -> Vec<Value> {
        let (status, body) = self.get(&search_path(q, "")).await;
        assert_eq!(status, 200, "{q}: {body}");
        body["hits"].as_array().unwrap().clone()
    }

    pub async fn create_group(&self, members: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/v1/conversations",
                json!({"kind": "group", "name": "test", "members": members}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["conversation_id"].as_str().unwrap().to_owned()
    }

    /// Every message of the conversation in seq order, page by page.
    pub async fn all_messages(&self, cid: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut after = -1;
        loop {
            let (status, page) = self
                .get(&format!(
                    "/v1/conversations/{cid}/messages?after={after}&limit=200"
                ))
                .await;
            assert_eq!(status, 200, "{page}");
            for m in page["messages"].as_array().unwrap() {
                let seq = m["seq"].as_i64().unwrap();
                assert!(seq > after, "history is in seq order");
                after = seq;
                out.push(m.clone());
            }
            if page["has_more"] != true {
                return out;
            }
        }
    }

    pub async fn history(&self, cid: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/conversations/{cid}/messages?limit=200"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().unwrap().clone()
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    pub stream: WsStream,
}

impl Ws {
    pub async fn connect(cf: &Chatflow, token: &str, device: &str) -> Ws {
        Ws::connect_to(cf.http, token, device).await
    }

    /// A socket to the gateway at `http`.
    pub async fn connect_to(http: SocketAddr, token: &str, device: &str) -> Ws {
        let url = format!("ws://{http}/v1/ws?device_id={device}&token={token}");
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Ws { stream }
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: String) {
        self.stream.send(Message::Text(text.into())).await.unwrap();
    }

    /// The text frames already waiting (none arrive within `quiet`).
    pub async fn pending(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(quiet, self.stream.next()).await {
            if let Message::Text(t) = m {
                out.push(serde_json::from_str(&t).unwrap());
            }
        }
        out
    }

    /// The next text frame as JSON (10 s at most).
    pub async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("a frame within 10 s")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    /// Frames until one of `type`, returned with the ones before it.
    pub async fn until(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let f = self.next().await;
            if f["type"] == kind {
                return (f, before);
            }
            before.push(f);
        }
    }

    /// Frames until one for which `wanted` holds.
    pub async fn until_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let f = self.next().await;
            if wanted(&f) {
                return f;
            }
        }
    }

    /// Resumes from nothing and waits for `resumed`: the socket is live.
    pub async fn live(&mut self) {
        self.send(serde_json::json!({"type": "resume", "cursors": {}}))
            .await;
        self.until("resumed").await;
    }

    /// Whether the server closed the socket, and with which code.
    pub async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .ok()?
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// `GET /v1/search` for `q`, URL-encoded, with more query `extra`
/// (`&limit=…`).
pub fn search_path(q: &str, extra: &str) -> String {
    let q: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/v1/search?q={q}{extra}")
}

/// The `code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error>")
}

/// Posts a message over REST as `api`; its seq.
pub async fn post(api: &Api, cid: &str, id: &str, body: Value) -> i64 {
    let mut req = body;
    req["client_msg_id"] = json!(id);
    let (status, ack) = api
        .post(&format!("/v1/conversations/{cid}/messages"), req)
        .await;
    assert_eq!(status, 201, "{ack}");
    ack["seq"].as_i64().unwrap()
}

/// An event frame of `kind` in `cid`.
pub fn is_event(f: &Value, cid: &str, kind: &str) -> bool {
    f["type"] == "event" && f["conversation_id"] == cid && f["kind"] == kind
}

/// A live socket of `device`.
pub async fn online(cf: &Chatflow, token: &str, device: &str) -> Ws {
    let mut ws = Ws::connect(cf, token, device).await;
    ws.live().await;
    ws
}

/// A fresh chatflow and an API client per user.
pub async fn start<const N: usize>(users: [&str; N]) -> (tempfile::TempDir, Chatflow, [Api; N]) {
    start_args(users, &[]).await
}

/// [`start`] with more arguments for `chatflow serve`.
pub async fn start_args<const N: usize>(
    users: [&str; N],
    extra: &[&str],
) -> (tempfile::TempDir, Chatflow, [Api; N]) {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_with(&dir.path().join("data"), extra).await;
    let mut apis = Vec::new();
    for user in users {
        apis.push(Api::new(&cf, &cf.token(user).await));
    }
    let apis: [Api; N] = apis.try_into().ok().unwrap();
    (dir, cf, apis)
}

/// `chatflow <args> --data-dir <data>` (and `--kafka-listen` when given),
/// run to its end.
pub fn chatflow(args: &[&str], data: &Path, kafka: Option<SocketAddr>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatflow"));
    c.args(args).args(["--data-dir", data.to_str().unwrap()]);
    if let Some(k) = kafka {
        c.args(["--kafka-listen", &k.to_string()]);
    }
    c.output().unwrap()
}

/// A finished command's stdout and stderr.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A JWT for `sub` signed with `secret` (HS256), expiring `exp_in` seconds
/// from now (negative: already expired), with `roles` when given.
/// A global admin's token (JWT `roles: ["admin"]`) for the chatflow whose
/// data dir is `data` (signed with its dev secret).
pub fn admin_token(data: &Path, user: &str) -> String {
    let secret = std::fs::read(data.join("dev-secret")).unwrap();
    signed_token(&secret, user, 3600, &["admin"])
}

pub fn signed_token(secret: &[u8], sub: &str, exp_in: i64, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({"sub": sub, "exp": now + exp_in});
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A proptest runner whose draws are reproducible from the environment
/// variable `seed_var` (printed by the caller on failure).
pub fn seeded_runner(seed_var: &str, default: u64) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed: u64 = std::env::var(seed_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// One value drawn from `strategy`.
pub fn draw<T: std::fmt::Debug>(
    runner: &mut proptest::test_runner::TestRunner,
    strategy: &impl proptest::strategy::Strategy<Value = T>,
) -> T {
    use proptest::strategy::ValueTree;
    strategy.new_tree(runner).unwrap().current()
}
