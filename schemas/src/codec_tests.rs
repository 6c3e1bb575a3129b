use super::*;

fn event(payload: Payload) -> ChatEvent {
    ChatEvent {
        event_id: "01J000000000000000000000AA".into(),
        conversation_id: "c-1".into(),
        occurred_at: 1_700_000_000_123,
        actor: Actor {
            user_id: "alice".into(),
            device_id: "phone".into(),
        },
        payload,
    }
}

fn every_payload() -> Vec<Payload> {
    vec![
        Payload::ConversationCreated(ConversationCreated {
            kind: "group".into(),
            name: Some("Team ☕".into()),
            description: None,
            members: vec![
                MemberSpec {
                    user_id: "alice".into(),
                    role: "owner".into(),
                },
                MemberSpec {
                    user_id: "bob".into(),
                    role: "member".into(),
                },
            ],
        }),
        Payload::ConversationUpdated(ConversationUpdated {
            name: None,
            description: Some("about".into()),
        }),
        Payload::MemberAdded(MemberAdded {
            user_id: "carol".into(),
            role: "admin".into(),
        }),
        Payload::MemberRemoved(MemberRemoved {
            user_id: "carol".into(),
        }),
        Payload::MemberRoleChanged(MemberRoleChanged {
            user_id: "bob".into(),
            role: "admin".into(),
        }),
        Payload::MessagePosted(MessagePosted {
            silent: false,
            attachments: Vec::new(),
            sealed: None,
            message_id: "01J0000000000000000000000B".into(),
            client_msg_id: "m-1".into(),
            body: "héllo 世界 👋".into(),
            reply_to: Some(41),
            mentions: vec!["bob".into()],
        }),
        Payload::MessagePosted(MessagePosted {
            silent: true,
            attachments: vec![
                Attachment {
                    id: "01J0000000000000000000000U".into(),
                    name: "über plan.pdf".into(),
                    content_type: "application/pdf".into(),
                    size: 48_213,
                    thumbnail: None,
                },
                Attachment {
                    id: "01J0000000000000000000000V".into(),
                    name: "cat.png".into(),
                    content_type: "image/png".into(),
                    size: 1_048_576,
                    thumbnail: Some("iVBORw0KGgo=".into()),
                },
            ],
            sealed: Some("01J00000000000000000000KEY".into()),
            message_id: "01J0000000000000000000000C".into(),
            client_msg_id: "m-2".into(),
            body: String::new(),
            reply_to: None,
            mentions: vec![],
        }),
        Payload::MessageEdited(MessageEdited {
            seq: 7,
            body: "fixed".into(),
            sealed: None,
        }),
        Payload::MessageEdited(MessageEdited {
            seq: 8,
            body: "c2VhbGVk".into(),
            sealed: Some("01J00000000000000000000KEY".into()),
        }),
        Payload::UserErased(UserErased {
            user_id: "carol".into(),
        }),
        Payload::ExportRequested(ExportRequested {
            user_id: "carol".into(),
            export_id: "01J0000000000000000000000X".into(),
        }),
        Payload::MessageDeleted(MessageDeleted { seq: 7 }),
        Payload::ReactionAdded(ReactionAdded {
            seq: 7,
            emoji: "👍".into(),
        }),
        Payload::ReactionRemoved(ReactionRemoved {
            seq: 7,
            emoji: "👍".into(),
        }),
        Payload::ReadUpTo(ReadUpTo { seq: 9 }),
        Payload::DeliveredUpTo(DeliveredUpTo { seq: 9 }),
        Payload::MemberMuted(MemberMuted { muted: true }),
        Payload::DeviceRegistered(DeviceRegistered {
            device_id: "phone".into(),
            platform: "ios".into(),
            push_token: Some("apns-token".into()),
        }),
        Payload::DeviceRegistered(DeviceRegistered {
            device_id: "web".into(),
            platform: "web".into(),
            push_token: None,
        }),
        Payload::DeviceRemoved(DeviceRemoved {
            device_id: "phone".into(),
        }),
        Payload::MessagePinned(MessagePinned {
            seq: 7,
            pinned: true,
        }),
    ]
}

#[test]
fn every_payload_round_trips() {
    let codec = Codec::new();
    let payloads = every_payload();
    // One case per union branch, so a new branch without a test fails here.
    let branches: std::collections::HashSet<_> = payloads.iter().map(|p| p.kind()).collect();
    assert_eq!(branches.len(), 18);
    for payload in payloads {
        let original = event(payload);
        let bytes = codec.encode(&original).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 6], "Confluent header, v3 id");
        let decoded: ChatEvent = codec.decode(&bytes).unwrap();
        assert_eq!(decoded, original);
    }
}

#[test]
fn side_records_round_trip() {
    let codec = Codec::new();
    let presence = DevicePresence {
        user_id: "alice".into(),
        device_id: "web".into(),
        node: "n1".into(),
        online: true,
        at: 5,
    };
    assert_eq!(
        codec
            .decode::<DevicePresence>(&codec.encode(&presence).unwrap())
            .unwrap(),
        presence
    );
    let typing = Typing {
        conversation_id: "c".into(),
        user_id: "u".into(),
        device_id: "d".into(),
        at: 6,
    };
    assert_eq!(
        codec
            .decode::<Typing>(&codec.encode(&typing).unwrap())
            .unwrap(),
        typing
    );
    let inner = codec
        .encode(&event(Payload::ReadUpTo(ReadUpTo { seq: 1 })))
        .unwrap();
    let delivery = Delivery {
        conversation_id: "c-1".into(),
        seq: 3,
        devices: vec!["alice/phone".into()],
        event: inner,
    };
    let bytes = codec.encode(&delivery).unwrap();
    assert_eq!(codec.decode::<Delivery>(&bytes).unwrap(), delivery);
    let json = codec.decode_json(&bytes).unwrap();
    assert_eq!(json["event"]["payload"]["type"], "read_up_to");
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let codec = Codec::new();
    assert!(matches!(
        codec.decode::<ChatEvent>(&[]),
        Err(CodecError::Truncated)
    ));
    assert!(matches!(
        codec.decode::<ChatEvent>(&[1, 0, 0, 0, 1, 2]),
        Err(CodecError::Magic(1))
    ));
    assert!(matches!(
        codec.decode::<ChatEvent>(&[0, 0, 0, 0, 2, 2]),
        Err(CodecError::WrongSchema {
            expected: 6,
            found: 2
        })
    ));
    let good = codec
        .encode(&event(Payload::ReadUpTo(ReadUpTo { seq: 1 })))
        .unwrap();
    for cut in 5..good.len() {
        assert!(
            codec.decode::<ChatEvent>(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut garbage = vec![0, 0, 0, 0, 5];
    garbage.extend_from_slice(&[0xff; 32]);
    assert!(codec.decode::<ChatEvent>(&garbage).is_err());
    assert!(codec.decode_json(b"not avro").is_err());
}

/// `event` as chatflow wrote it before v2: framed with id 1, encoded with
/// the v1 schema (no `silent`; no `MessagePinned` branch existed).
fn written_by_v1(event: &ChatEvent) -> Vec<u8> {
    let v1 = VERSIONS[0];
    assert_eq!((v1.schema, v1.number), (SchemaId::ChatEvent, 1));
    let schema = Schema::parse_str(v1.text).unwrap();
    let mut value = event.to_avro().unwrap();
    if let Value::Record(fields) = &mut value
        && let Some((_, Value::Union(_, payload))) = fields.iter_mut().find(|(n, _)| n == "payload")
        && let Value::Record(inner) = payload.as_mut()
    {
        inner.retain(|(name, _)| !["silent", "attachments", "sealed"].contains(&name.as_str()));
    }
    let mut out = vec![0, 0, 0, 0, 1];
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    writer.write_value(&mut out, value).unwrap();
    out
}

#[test]
fn records_written_with_v1_decode_into_v2_with_their_branch_and_defaults() {
    let codec = Codec::new();
    for payload in every_payload() {
        if matches!(
            payload,
            Payload::MessagePinned(_) | Payload::UserErased(_) | Payload::ExportRequested(_)
        ) {
            continue;
        }
        let mut expected = event(payload);
        match &mut expected.payload {
            Payload::MessagePosted(p) => {
                p.silent = false;
                p.attachments.clear();
                p.sealed = None;
            }
            Payload::MessageEdited(p) => p.sealed = None,
            _ => {}
        }
        let bytes = written_by_v1(&expected);
        assert_eq!(
            codec.encode_version(&expected, VERSIONS[0]).unwrap(),
            bytes,
            "what a producer of the previous release writes"
        );
        // The same branch, not merely one of the same shape
        // (MessageDeleted, ReadUpTo and DeliveredUpTo are all {seq}).
        assert_eq!(codec.decode::<ChatEvent>(&bytes).unwrap(), expected);
        assert_eq!(
            codec.decode_json(&bytes).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
    }
}

#[test]
fn a_branch_the_earlier_version_lacks_cannot_be_written_with_it() {
    let codec = Codec::new();
    let pinned = event(Payload::MessagePinned(MessagePinned {
        seq: 1,
        pinned: true,
    }));
    assert!(codec.encode_version(&pinned, VERSIONS[0]).is_err());
    assert!(
        codec.encode_version(&pinned, VERSIONS[1]).is_err(),
        "another record's schema"
    );
}

#[test]
fn every_version_reads_every_earlier_one() {
    // BACKWARD_TRANSITIVE, as the registry enforces: an edit of an .avsc
    // that breaks reading the log written so far fails here.
    for schema in SchemaId::ALL {
        let versions: Vec<_> = schema
            .versions()
            .map(|v| Schema::parse_str(v.text).unwrap())
            .collect();
        for (n, reader) in versions.iter().enumerate() {
            for writer in &versions[..n] {
                let c = apache_avro::schema_compatibility::SchemaCompatibility::can_read(
                    writer, reader,
                );
                assert!(
                    matches!(
                        c,
                        Ok(apache_avro::schema_compatibility::Compatibility::Full)
                    ),
                    "{schema:?} v{} cannot read an earlier version: {c:?}",
                    n + 1
                );
            }
        }
    }
    assert_eq!(SchemaId::ChatEvent.current().number, 3);
}

/// Every record chatflow writes, framed: the seeds the fuzzer mutates.
fn every_record(codec: &Codec) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = every_payload()
        .into_iter()
        .map(|p| codec.encode(&event(p)).unwrap())
        .collect();
    let inner = out[0].clone();
    out.push(
        codec
            .encode(&Delivery {
                conversation_id: "c-1".into(),
                seq: 3,
                devices: vec!["alice/phone".into(), "bob/web".into()],
                event: inner,
            })
            .unwrap(),
    );
    out.push(
        codec
            .encode(&DevicePresence {
                user_id: "alice".into(),
                device_id: "web".into(),
                node: "n1".into(),
                online: true,
                at: 5,
            })
            .unwrap(),
    );
    out.push(
        codec
            .encode(&Typing {
                conversation_id: "c".into(),
                user_id: "u".into(),
                device_id: "d".into(),
                at: 6,
            })
            .unwrap(),
    );
    out
}

/// How a poison record differs from a good one.
#[derive(Clone, Debug)]
enum Damage {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    /// A huge or negative Avro length (zig-zag varint) at a position.
    Length(usize, i64),
}

fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Damage::Flip(at, x)),
        any::<usize>().prop_map(Damage::Cut),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(at, b)| Damage::Insert(at, b)),
        (
            any::<usize>(),
            prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), Just(-1i64)]
        )
            .prop_map(|(at, n)| Damage::Length(at, n)),
    ]
}

fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn damaged(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        // Past the 5-byte header mostly, so the body is what is tested; a
        // damaged header is covered too (position 0..5).
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match d {
            Damage::Flip(i, x) => {
                let n = bytes.len();
                if n > 0 {
                    bytes[at(*i, n)] ^= x;
                }
            }
            Damage::Cut(i) => bytes.truncate(at(*i, bytes.len() + 1)),
            Damage::Insert(i, b) => {
                let i = at(*i, bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Damage::Length(i, n) => {
                let i = at(*i, bytes.len() + 1).max(5.min(bytes.len()));
                bytes.splice(i..i, zigzag(*n));
            }
        }
    }
    bytes
}

/// Poison records on `chat.events` and the other topics: mutated records,
/// lying lengths, random bytes behind a valid header. Each decodes to a
/// value or an error; none panics, and none makes the decoder allocate
/// more than [`MAX_DECODE_ALLOCATION`]. (`cargo test` runs 2,000 cases;
/// `AVRO_FUZZ_CASES` runs more.)
#[test]
fn poison_records_decode_to_errors_never_panics() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let codec = Codec::new();
    let seeds = every_record(&codec);
    let cases = std::env::var("AVRO_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (ok, err) = (std::cell::Cell::new(0usize), std::cell::Cell::new(0usize));
    let header_ids = prop_oneof![
        (0..seeds.len()).prop_map(Some),
        Just(None), // random bytes behind a known header
    ];
    let strategy = (
        header_ids,
        proptest::collection::vec(damage(), 1..4),
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![Just(1u32), Just(5), Just(6), Just(7), Just(8), any::<u32>()],
    );
    runner
        .run(&strategy, |(seed, damages, random, id)| {
            let bytes = match seed {
                Some(i) => damaged(seeds[i].clone(), &damages),
                None => {
                    let mut b = vec![0];
                    b.extend_from_slice(&id.to_be_bytes());
                    b.extend_from_slice(&random);
                    damaged(b, &damages)
                }
            };
            let results = [
                codec.decode::<ChatEvent>(&bytes).map(|_| ()),
                codec.decode::<Delivery>(&bytes).map(|_| ()),
                codec.decode_json(&bytes).map(|_| ()),
            ];
            for r in results {
                match r {
                    Ok(()) => ok.set(ok.get() + 1),
                    Err(_) => err.set(err.get() + 1),
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "avro fuzz: {cases} records x 3 decoders: {} decoded, {} errors, 0 panics",
        ok.get(),
        err.get()
    );
    assert!(
        err.get() > 0 && ok.get() > 0,
        "the fuzzer reached both outcomes"
    );
}

#[test]
fn a_poison_length_is_refused_before_it_is_allocated() {
    let codec = Codec::new();
    // A ChatEvent whose first field (event_id) claims 100 MiB.
    let mut bytes = vec![0, 0, 0, 0, 5];
    bytes.extend(zigzag(100 * 1024 * 1024));
    bytes.extend_from_slice(b"short");
    let e = codec.decode::<ChatEvent>(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("Unable to allocate") && e.contains(&MAX_DECODE_ALLOCATION.to_string()),
        "{e}"
    );
    // Under the cap, a lying length is a short read.
    let mut bytes = vec![0, 0, 0, 0, 5];
    bytes.extend(zigzag(1024 * 1024));
    bytes.extend_from_slice(b"short");
    assert!(codec.decode::<ChatEvent>(&bytes).is_err());
}
