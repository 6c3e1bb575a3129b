//! The S3 backend against a real S3-API server that checks signatures
//! (`s3s-fs`, installed by `scripts/test`; `S3S_FS` names another binary).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use archive::ArchiveError;
use bytes::Bytes;

struct Server {
    child: Child,
    addr: SocketAddr,
    _root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An s3s-fs with bucket `chatflow`, taking only `local`/`secret`'s
/// signatures.
fn s3s_fs(secret: &str) -> Server {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("chatflow")).expect("bucket dir");
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let program = std::env::var("S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
    let child = Command::new(&program)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", "local", "--secret-key", secret])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program} (scripts/test installs it): {e}"));
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        addr,
        _root: root,
    }
}

fn url(server: &Server) -> String {
    format!(
        "s3://chatflow/archive?endpoint=http://{}&region=us-east-1",
        server.addr
    )
}

#[tokio::test]
async fn the_s3_backend_conforms() {
    // The client signs as local/local when it has no credentials of its own.
    let server = s3s_fs("local");
    let archive = archive::open(&url(&server)).await.expect("connect");
    archive::conformance::run(archive).await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_for_good() {
    let server = s3s_fs("not-what-the-client-signs-with");
    let archive = archive::open(&url(&server)).await.expect("connect");
    let refused = archive.put("k", Bytes::from_static(b"x")).await;
    assert!(
        matches!(refused, Err(ArchiveError::Permanent(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn presigned_urls_put_and_get_without_credentials() {
    let server = s3s_fs("local");
    let archive = archive::open(&url(&server)).await.expect("connect");
    let ttl = Duration::from_secs(300);
    let put = archive
        .presign_put("uploads/u1/data", "image/png", ttl)
        .await
        .unwrap()
        .expect("S3 presigns");
    let http = reqwest::Client::new();
    let bytes = vec![0x89u8; 3000];
    let response = http
        .put(&put)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(archive.head("uploads/u1/data").await.unwrap(), Some(3000));

    // The signature covers the key: another key with it is refused.
    let forged = put.replace("uploads/u1/data", "uploads/u2/data");
    let response = http.put(&forged).body("x").send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(archive.head("uploads/u2/data").await.unwrap(), None);

    let download = archive::Download {
        content_type: "image/png".into(),
        content_disposition: "inline; filename=\"cat.png\"".into(),
    };
    let get = archive
        .presign_get("uploads/u1/data", &download, ttl)
        .await
        .unwrap()
        .expect("S3 presigns");
    let response = http.get(&get).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    let response = http
        .get(get.replace("uploads/u1/data", "uploads/u2/data"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_directory_archive_has_no_urls_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive::open(&format!("file://{}", dir.path().display()))
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    assert_eq!(
        archive.presign_put("k", "text/plain", ttl).await.unwrap(),
        None
    );
}
