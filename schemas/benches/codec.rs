//! The codec's cost per record: a chat message event encoded
//! (Confluent-framed Avro) and decoded, as the gateway and every stage do,
//! and a record of the previous schema version decoded into the current one.
//!
//!   cargo bench -p schemas --bench codec

use std::hint::black_box;
use std::time::Instant;

use schemas::{Actor, ChatEvent, Codec, MessagePosted, Payload};

const N: u32 = 200_000;

fn main() {
    let codec = Codec::new();
    let event = ChatEvent {
        event_id: "01J9Z3K6W7Q2V5X8Y4T1R0N6M3".into(),
        conversation_id: "g:01J9Z3K6W7Q2V5X8Y4T1R0N6M4".into(),
        occurred_at: 1_764_000_000_000,
        actor: Actor {
            user_id: "alice".into(),
            device_id: "alice-phone".into(),
        },
        payload: Payload::MessagePosted(MessagePosted {
            silent: false,
            attachments: Vec::new(),
            sealed: None,
            message_id: "01J9Z3K6W7Q2V5X8Y4T1R0N6M5".into(),
            client_msg_id: "c-42".into(),
            body: "a message of a typical length, about eighty bytes of text in all........".into(),
            reply_to: Some(41),
            mentions: vec!["bob".into()],
        }),
    };
    let bytes = codec.encode(&event).expect("encodes");
    let started = Instant::now();
    for _ in 0..N {
        black_box(codec.encode(black_box(&event)).expect("encodes"));
    }
    let encode = started.elapsed() / N;
    let started = Instant::now();
    for _ in 0..N {
        black_box(
            codec
                .decode::<ChatEvent>(black_box(&bytes))
                .expect("decodes"),
        );
    }
    let decode = started.elapsed() / N;
    // A record the previous release wrote (v1), resolved into v2.
    let old = codec
        .encode_version(&event, schemas::VERSIONS[0])
        .expect("encodes as v1");
    let started = Instant::now();
    for _ in 0..N {
        black_box(codec.decode::<ChatEvent>(black_box(&old)).expect("decodes"));
    }
    let decode_v1 = started.elapsed() / N;
    println!(
        "ChatEvent (message_posted, {} bytes): encode {encode:?}, decode {decode:?} per record; \
         a v1 record decoded into v2: {decode_v1:?}",
        bytes.len()
    );
}
