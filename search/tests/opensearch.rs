//! The OpenSearch backend against osmem-server (an in-memory
//! OpenSearch-compatible server from PyPI, installed by `scripts/test`).
#![cfg(feature = "opensearch")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use std::sync::Arc;

use search::{OpenSearchIndex, SearchIndex, conformance};

/// The server runs until its stdin closes, that is until this test ends.
struct Osmem {
    _child: Child,
    url: String,
}

fn osmem_binary() -> String {
    if let Ok(bin) = std::env::var("OSMEM_SERVER_BIN") {
        return bin;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import osmem_server, os; print(os.path.join(os.path.dirname(osmem_server.__file__), 'bin', 'osmem-server'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "osmem-server is missing: pip install osmem-server (scripts/test does)"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn start_osmem() -> Osmem {
    let mut child = Command::new(osmem_binary())
        .args(["-addr", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("osmem-server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let banner: serde_json::Value = serde_json::from_str(&line).unwrap();
    Osmem {
        url: banner["url"].as_str().unwrap().to_owned(),
        _child: child,
    }
}

#[tokio::test]
async fn opensearch_passes_the_search_conformance_suite() {
    let server = start_osmem();
    let index = OpenSearchIndex::connect(&format!("{}/conformance", server.url))
        .await
        .unwrap();
    conformance::run(Arc::new(index)).await;
}

#[tokio::test]
async fn a_second_connect_reuses_the_index_and_its_documents() {
    let server = start_osmem();
    let url = format!("{}/chatflow-messages", server.url);
    let first = OpenSearchIndex::connect(&url).await.unwrap();
    let doc = search::MessageDoc {
        conversation_id: "c".into(),
        seq: 3,
        message_id: "m".into(),
        sender_id: "u".into(),
        sent_at: 1,
        body: "still here".into(),
        deleted: false,
        version: 3,
    };
    first
        .apply(vec![search::IndexOp::Post(doc.clone())])
        .await
        .unwrap();
    let second = OpenSearchIndex::connect(&url).await.unwrap();
    assert_eq!(second.get("c", 3).await.unwrap(), Some(doc));
}
