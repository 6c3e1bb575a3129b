//! What sealing costs per message: CPU to seal (the gateway) and to open
//! (each reader), and the bytes it adds to an event on the log.
//!
//!   cargo bench -p vault --bench seal

use std::sync::Arc;
use std::time::Instant;

use schemas::{Actor, ChatEvent, Codec, MessagePosted, Payload};
use vault::{MasterKey, Vault};

const ROUNDS: u32 = 100_000;

fn event(body: &str) -> ChatEvent {
    ChatEvent {
        event_id: "01J0000000000000000000000E".into(),
        conversation_id: "g:01J000000000000000000000C".into(),
        occurred_at: 1_800_000_000_000,
        actor: Actor {
            user_id: "alice".into(),
            device_id: "phone".into(),
        },
        payload: Payload::MessagePosted(MessagePosted {
            message_id: "01J0000000000000000000000M".into(),
            client_msg_id: "c-1".into(),
            body: body.into(),
            reply_to: None,
            mentions: Vec::new(),
            silent: false,
            attachments: Vec::new(),
            sealed: None,
        }),
    }
}

#[allow(clippy::unwrap_used)]
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let archive = Arc::new(archive::FileArchive::open(dir.path()).unwrap());
    let master = MasterKey::load_or_create(&dir.path().join("master-key")).unwrap();
    let vault = Vault::new(archive, master);
    let codec = Codec::new();
    for size in [100usize, 1000, 16 * 1024] {
        let body = "x".repeat(size);
        let plain = event(&body);
        let plain_bytes = codec.encode(&plain).unwrap().len();
        let (seal_ns, open_ns, sealed_bytes) = runtime.block_on(async {
            // The key is made once, then cached.
            vault.sealing_key("alice").await.unwrap();
            let started = Instant::now();
            let mut sealed = plain.clone();
            for _ in 0..ROUNDS {
                sealed = plain.clone();
                let Payload::MessagePosted(p) = &mut sealed.payload else {
                    unreachable!()
                };
                vault.seal_posted("alice", "g:1", p).await.unwrap();
            }
            let seal = started.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
            let started = Instant::now();
            for _ in 0..ROUNDS {
                let mut opened = sealed.clone();
                vault.open_event(&mut opened).await.unwrap();
            }
            let open = started.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
            (seal, open, codec.encode(&sealed).unwrap().len())
        });
        if size == 100 {
            // What one attachment adds to a message event (name, type,
            // size, a 1 KiB thumbnail), plaintext and sealed.
            let mut with_file = plain.clone();
            if let Payload::MessagePosted(p) = &mut with_file.payload {
                p.attachments.push(schemas::Attachment {
                    id: "01J0000000000000000000000U".into(),
                    name: "holiday photo.jpg".into(),
                    content_type: "image/jpeg".into(),
                    size: 2_400_000,
                    thumbnail: Some("A".repeat(1368)),
                });
            }
            let file_bytes = codec.encode(&with_file).unwrap().len();
            let sealed_file_bytes = runtime.block_on(async {
                let Payload::MessagePosted(p) = &mut with_file.payload else {
                    unreachable!()
                };
                vault.seal_posted("alice", "g:1", p).await.unwrap();
                codec.encode(&with_file).unwrap().len()
            });
            println!(
                "one attachment (1 KiB thumbnail): event {plain_bytes} B → {file_bytes} B plaintext, \
                 {sealed_file_bytes} B sealed"
            );
        }
        println!(
            "body {size:>5} B: seal {:>6.2} µs, open {:>6.2} µs (each with a clone of the event), \
             event {plain_bytes} B → {sealed_bytes} B (+{} B, +{:.0} %)",
            seal_ns / 1000.0,
            open_ns / 1000.0,
            sealed_bytes - plain_bytes,
            100.0 * (sealed_bytes - plain_bytes) as f64 / plain_bytes as f64
        );
    }
}
