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
