#![allow(clippy::unwrap_used)]
//! The authorization matrix as a property test: random sequences of every
//! REST operation and WebSocket frame on a group (and a direct
//! conversation), each by one of owner, admin, member, outsider, global
//! admin or a holder of an expired token, against a model of PROTOCOL.md's
//! rules. Every answer must be the model's (allowed, 401, 403, 404 or 409);
//! a refusal never carries the conversation's content; a socket only ever
//! gets a conversation's events from while its user was a member; search
//! never shows a conversation to a non-member. Roles change as the
//! sequence runs (adds, removals, role changes), so the matrix is checked
//! in many states. `AUTHZ_STEPS` (default 160) and `AUTHZ_SEED` replay a
//! run.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Api, Chatflow, Ws, draw, seeded_runner, signed_token};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The people: the first five have live tokens, the last an expired one
/// (of the owner: expiry must beat every role).
const OWN: usize = 0;
const ADM: usize = 1;
const MEM: usize = 2;
const OUT: usize = 3;
const ROOT: usize = 4;
const EXPIRED: usize = 5;
const NAMES: [&str; 5] = ["own", "adm", "mem", "out", "root"];
/// Whom membership operations name: never the owner (so the group always
/// keeps `own` as an owner and no hand-over happens), never the global
/// admin (who stays an outsider that moderates).
const TARGETS: [usize; 3] = [ADM, MEM, OUT];
const ROLES: [&str; 3] = ["member", "admin", "owner"];
/// Every message body carries it: no refusal may.
const MARKER: &str = "secret-body";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    fn parse(s: &str) -> Role {
        match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            _ => Role::Member,
        }
    }
    fn manages(self) -> bool {
        self != Role::Member
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    GetConversation,
    ListMessages,
    Receipts(usize),
    Search,
    SearchEverywhere,
    Presence,
    Rename,
    AddMember(usize, usize),
    /// Removes a member; of oneself: leaves.
    RemoveMember(usize),
    ChangeRole(usize, usize),
    Send,
    Edit(usize),
    Delete(usize),
    React(usize),
    Pin(usize),
    Read,
    Mute,
    PinDirect,
    RenameDirect,
    AddToDirect,
    WsSend,
    WsTyping,
    WsRead,
    WsResume,
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..64usize;
    prop_oneof![
        1 => Just(Op::GetConversation),
        1 => Just(Op::ListMessages),
        1 => m.clone().prop_map(Op::Receipts),
        1 => Just(Op::Search),
        1 => Just(Op::SearchEverywhere),
        1 => Just(Op::Presence),
        1 => Just(Op::Rename),
        2 => (0..3usize, 0..3usize).prop_map(|(t, r)| Op::AddMember(t, r)),
        2 => (0..3usize).prop_map(Op::RemoveMember),
        2 => (0..3usize, 0..3usize).prop_map(|(t, r)| Op::ChangeRole(t, r)),
        2 => Just(Op::Send),
        1 => m.clone().prop_map(Op::Edit),
        1 => m.clone().prop_map(Op::Delete),
        1 => m.clone().prop_map(Op::React),
        1 => m.prop_map(Op::Pin),
        1 => Just(Op::Read),
        1 => Just(Op::Mute),
        1 => Just(Op::PinDirect),
        1 => Just(Op::RenameDirect),
        1 => Just(Op::AddToDirect),
        2 => Just(Op::WsSend),
        1 => Just(Op::WsTyping),
        1 => Just(Op::WsRead),
        1 => Just(Op::WsResume),
    ]
}

struct Message {
    seq: i64,
    author: usize,
    deleted: bool,
}

/// What PROTOCOL.md says the group looks like after the steps so far.
struct Model {
    roles: HashMap<usize, Role>,
    /// Per person: the seqs of the membership changes that concern them,
    /// `(seq, member from then on)`.
    history: HashMap<usize, Vec<(i64, bool)>>,
    messages: Vec<Message>,
    last_seq: i64,
}

impl Model {
    fn role(&self, who: usize) -> Option<Role> {
        self.roles.get(&who).copied()
    }
    /// The role a caller acts with in a change to the group: a global
    /// admin acts as an owner anywhere.
    fn acting(&self, who: usize) -> Option<Role> {
        if who == ROOT {
            Some(Role::Owner)
        } else {
            self.role(who)
        }
    }
    fn member(&self, who: usize) -> bool {
        self.roles.contains_key(&who)
    }
    /// Whether `who` was a member when the event at `seq` happened (the
    /// event that adds or removes them counts either way).
    fn member_at(&self, who: usize, seq: i64) -> bool {
        let changes = self.history.get(&who).map(Vec::as_slice).unwrap_or(&[]);
        if changes.iter().any(|(s, _)| *s == seq) {
            return true;
        }
        changes
            .iter()
            .rev()
            .find(|(s, _)| *s < seq)
            .is_some_and(|(_, member)| *member)
    }
    fn joined(&mut self, who: usize, role: Role, seq: i64) {
        self.roles.insert(who, role);
        self.history.entry(who).or_default().push((seq, true));
    }
    fn left(&mut self, who: usize, seq: i64) {
        self.roles.remove(&who);
        self.history.entry(who).or_default().push((seq, false));
    }
    fn message(&self, pick: usize) -> &Message {
        &self.messages[pick % self.messages.len()]
    }
    /// A message may be acted on: 404 when it is deleted.
    fn live(&self, pick: usize) -> Result<&Message, u16> {
        let m = self.message(pick);
        if m.deleted { Err(404) } else { Ok(m) }
    }
}

/// `Ok(())`: allowed (2xx); `Err(status)`: the refusal PROTOCOL.md gives.
type Expected = Result<(), u16>;

fn member_only(model: &Model, who: usize) -> Expected {
    if model.member(who) { Ok(()) } else { Err(403) }
}

/// The model's answer to `op` by `who` (not the expired token).
fn expected(model: &Model, who: usize, op: Op) -> Expected {
    let group_role = || model.acting(who).ok_or(403u16);
    match op {
        Op::GetConversation
        | Op::ListMessages
        | Op::Search
        | Op::Send
        | Op::Read
        | Op::Mute
        | Op::WsSend
        | Op::WsTyping
        | Op::WsRead
        | Op::WsResume => member_only(model, who),
        Op::SearchEverywhere => Ok(()),
        Op::Receipts(m) | Op::React(m) => {
            member_only(model, who)?;
            model.live(m).map(|_| ())
        }
        Op::Presence => {
            // Of `mem`: themself, a global admin, or anyone sharing a
            // conversation (`own` always does: the direct conversation).
            let shares = who == OWN || (model.member(who) && model.member(MEM));
            if who == MEM || who == ROOT || shares {
                Ok(())
            } else {
                Err(403)
            }
        }
        Op::Rename => group_role()?.manages().then_some(()).ok_or(403),
        Op::AddMember(t, r) => {
            let caller = group_role()?;
            let new = Role::parse(ROLES[r]);
            if !caller.manages() || (new == Role::Owner && caller != Role::Owner) {
                return Err(403);
            }
            if model.member(TARGETS[t]) {
                return Err(409);
            }
            Ok(())
        }
        Op::RemoveMember(t) => {
            let caller = group_role()?;
            let target = TARGETS[t];
            let Some(target_role) = model.role(target) else {
                return Err(404);
            };
            if target == who {
                return Ok(());
            }
            if !caller.manages() || (target_role == Role::Owner && caller != Role::Owner) {
                return Err(403);
            }
            Ok(())
        }
        Op::ChangeRole(t, _) => {
            if group_role()? != Role::Owner {
                return Err(403);
            }
            if !model.member(TARGETS[t]) {
                return Err(404);
            }
            Ok(())
        }
        Op::Edit(m) => {
            member_only(model, who)?;
            let m = model.live(m)?;
            if m.author == who { Ok(()) } else { Err(403) }
        }
        Op::Delete(m) => {
            let caller = group_role()?;
            let m = model.live(m)?;
            if m.author == who || caller.manages() {
                Ok(())
            } else {
                Err(403)
            }
        }
        Op::Pin(m) => {
            let caller = group_role()?;
            model.live(m)?;
            caller.manages().then_some(()).ok_or(403)
        }
        // The direct conversation of `own` and `mem`: either may pin; its
        // membership and name do not change (409); others are refused.
        Op::PinDirect => {
            if [OWN, MEM, ROOT].contains(&who) {
                Ok(())
            } else {
                Err(403)
            }
        }
        Op::RenameDirect | Op::AddToDirect => {
            if [OWN, MEM, ROOT].contains(&who) {
                Err(409)
            } else {
                Err(403)
            }
        }
    }
}

/// One person's ways in: REST and a live socket.
struct Person {
    api: Api,
    ws: Ws,
    /// Event frames of the group seen on the live socket.
    events: Vec<Value>,
}

impl Person {
    /// Sends `frame`, then a ping; the frames up to the pong (events of
    /// `cid` kept aside).
    async fn frame(&mut self, frame: Value, cid: &str) -> Vec<Value> {
        self.ws.send(frame).await;
        self.ws.send(json!({"type": "ping"})).await;
        let (_, before) = self.ws.until("pong").await;
        let (events, rest): (Vec<Value>, Vec<Value>) = before
            .into_iter()
            .partition(|f| f["type"] == "event" && f["conversation_id"] == cid);
        self.events.extend(events);
        rest
    }
}

fn outcome(status: u16) -> Expected {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(status)
    }
}

/// The outcome of a frame: an `error` frame's status, else allowed.
fn frame_outcome(frames: &[Value]) -> (Expected, Value) {
    match frames.iter().find(|f| f["type"] == "error") {
        Some(e) => {
            let status = match e["code"].as_str().unwrap() {
                "forbidden" => 403,
                "not_found" => 404,
                "unauthorized" => 401,
                _ => 400,
            };
            (Err(status), e.clone())
        }
        None => (Ok(()), json!(frames)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_by_every_role_gets_what_protocol_md_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Logging everything it would log in production and more: no token
    // may show up in it.
    let unlimited = ["--rate", "10000", "--rate-burst", "10000"];
    let cf = Chatflow::start_logging(&data, &unlimited, "debug").await;
    let secret = std::fs::read(data.join("dev-secret")).unwrap();
    let tokens: Vec<String> = NAMES
        .iter()
        .map(|n| {
            let roles: &[&str] = if *n == "root" { &["admin"] } else { &[] };
            signed_token(&secret, n, 3600, roles)
        })
        .chain([signed_token(&secret, "own", -3600, &[])])
        .collect();
    let steps: usize = std::env::var("AUTHZ_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160);
    let seed = std::env::var("AUTHZ_SEED").unwrap_or_else(|_| "17".into());
    println!("AUTHZ_SEED={seed} AUTHZ_STEPS={steps}");

    // The group: own (owner), adm (admin), mem; a message by each. The
    // direct conversation of own and mem, with one message.
    let owner = Api::new(&cf, &tokens[OWN]);
    let cid = owner.create_group(&["adm", "mem"]).await;
    let g = |p: &str| format!("/v1/conversations/{cid}{p}");
    let (s, b) = owner
        .call(
            "PUT",
            &g("/members/adm/role"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, direct) = owner
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["mem"]}),
        )
        .await;
    assert_eq!(s, 201, "{direct}");
    let did = direct["conversation_id"].as_str().unwrap().to_owned();
    let direct_seq = common::post(&owner, &did, "d0", json!({"body": MARKER})).await;

    let mut model = Model {
        roles: HashMap::from([(OWN, Role::Owner), (ADM, Role::Admin), (MEM, Role::Member)]),
        history: HashMap::from([
            (OWN, vec![(0, true)]),
            (ADM, vec![(0, true)]),
            (MEM, vec![(0, true)]),
        ]),
        messages: Vec::new(),
        last_seq: 0,
    };
    for who in [OWN, ADM, MEM] {
        let api = Api::new(&cf, &tokens[who]);
        let seq = common::post(&api, &cid, &format!("seed{who}"), json!({"body": MARKER})).await;
        model.messages.push(Message {
            seq,
            author: who,
            deleted: false,
        });
        model.last_seq = seq;
    }
    let mut people = Vec::new();
    for token in tokens.iter().take(NAMES.len()) {
        let mut ws = Ws::connect(&cf, token, "phone").await;
        ws.live().await;
        people.push(Person {
            api: Api::new(&cf, token),
            ws,
            events: Vec::new(),
        });
    }
    // An expired token opens no socket.
    let url = format!(
        "ws://{}/v1/ws?device_id=x&token={}",
        cf.http, tokens[EXPIRED]
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("an expired token opened a socket: {other:?}"),
    }
    let expired = Api::new(&cf, &tokens[EXPIRED]);

    let mut runner = seeded_runner("AUTHZ_SEED", 17);
    let steps_strategy = (0..6usize, op());
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for step in 0..steps {
        let (who, op) = draw(&mut runner, &steps_strategy);
        let want = if who == EXPIRED {
            Err(401)
        } else {
            expected(&model, who, op)
        };
        let context = format!(
            "step {step}: {op:?} by {} (roles {:?})",
            NAMES.get(who).unwrap_or(&"expired token"),
            model.roles
        );
        let api = if who == EXPIRED {
            &expired
        } else {
            &people[who].api
        };
        let (got, body) = match op {
            Op::WsSend | Op::WsTyping | Op::WsRead | Op::WsResume if who == EXPIRED => {
                // Covered above: no socket at all.
                continue;
            }
            Op::WsSend => {
                let id = format!("ws{step}");
                let frames = people[who]
                    .frame(
                        json!({"type": "send", "conversation_id": cid,
                               "client_msg_id": id, "body": MARKER}),
                        &cid,
                    )
                    .await;
                if let Some(ack) = frames.iter().find(|f| f["type"] == "ack") {
                    let seq = ack["seq"].as_i64().unwrap();
                    model.messages.push(Message {
                        seq,
                        author: who,
                        deleted: false,
                    });
                    model.last_seq = model.last_seq.max(seq);
                }
                frame_outcome(&frames)
            }
            Op::WsTyping => {
                let f = json!({"type": "typing", "conversation_id": cid});
                frame_outcome(&people[who].frame(f, &cid).await)
            }
            Op::WsRead => {
                let f = json!({"type": "read", "conversation_id": cid, "seq": model.last_seq});
                frame_outcome(&people[who].frame(f, &cid).await)
            }
            Op::WsResume => {
                // A fresh socket that asks for the whole group: a
                // non-member gets a refusal and none of its events.
                let mut ws = Ws::connect(&cf, &tokens[who], "tablet").await;
                ws.send(json!({"type": "resume", "cursors": {cid.clone(): -1}}))
                    .await;
                let (_, before) = ws.until("resumed").await;
                let events = before
                    .iter()
                    .filter(|f| f["type"] == "event" && f["conversation_id"] == cid)
                    .count();
                let (result, body) = frame_outcome(&before);
                if result.is_err() {
                    assert_eq!(events, 0, "{context}: a refused resume sent events");
                } else {
                    assert!(events > 0, "{context}: a member's resume sent nothing");
                }
                (result, body)
            }
            _ => {
                let id = format!("rest{step}");
                let (status, body) = rest(api, op, &cid, &did, direct_seq, &model, id).await;
                (outcome(status), body)
            }
        };
        assert_eq!(got, want, "{context}: answered {body}");
        if got.is_err() {
            assert!(
                !body.to_string().contains(MARKER),
                "{context}: a refusal carries content: {body}"
            );
        }
        if let Op::SearchEverywhere = op
            && got.is_ok()
            && !model.member(who)
        {
            let hits = body["hits"].as_array().unwrap();
            assert!(
                hits.iter().all(|h| h["conversation_id"] != cid),
                "{context}: search shows a non-member the group: {body}"
            );
        }
        if got.is_ok() {
            apply(&mut model, who, op, &body);
        }
        *tally
            .entry(match got {
                Ok(()) => "allowed".to_owned(),
                Err(s) => s.to_string(),
            })
            .or_default() += 1;
    }

    // Every group event a socket got, it got while its user was a member.
    for (who, person) in people.iter_mut().enumerate() {
        person.frame(json!({"type": "ping"}), &cid).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        person.frame(json!({"type": "ping"}), &cid).await;
        for e in &person.events {
            let seq = e["seq"].as_i64().unwrap();
            assert!(
                model.member_at(who, seq),
                "{} got the group's event at seq {seq} while not a member: {e}",
                NAMES[who]
            );
        }
    }
    assert!(people[ROOT].events.is_empty());
    let log = cf.log();
    assert!(log.len() > 1000, "the debug log is nearly empty");
    for (who, token) in tokens.iter().enumerate() {
        // The signature part is what would let a reader use it.
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "token {who} is in the log");
    }
    println!("authz: {steps} steps, answers {tally:?}");
}

/// Runs a REST operation; its status and body.
async fn rest(
    api: &Api,
    op: Op,
    cid: &str,
    did: &str,
    direct_seq: i64,
    model: &Model,
    client_msg_id: String,
) -> (u16, Value) {
    let g = |p: &str| format!("/v1/conversations/{cid}{p}");
    let seq = |m: usize| model.message(m).seq;
    match op {
        Op::GetConversation => api.get(&g("")).await,
        Op::ListMessages => api.get(&g("/messages")).await,
        Op::Receipts(m) => api.get(&g(&format!("/messages/{}/receipts", seq(m)))).await,
        Op::Search => {
            api.get(&format!("/v1/search?q=secret&conversation_id={cid}"))
                .await
        }
        Op::SearchEverywhere => api.get("/v1/search?q=secret").await,
        Op::Presence => api.get("/v1/users/mem/presence").await,
        Op::Rename => {
            api.call("PATCH", &g(""), Some(json!({"name": "renamed"})))
                .await
        }
        Op::AddMember(t, r) => {
            api.post(
                &g("/members"),
                json!({"user_id": NAMES[TARGETS[t]], "role": ROLES[r]}),
            )
            .await
        }
        Op::RemoveMember(t) => {
            api.call(
                "DELETE",
                &g(&format!("/members/{}", NAMES[TARGETS[t]])),
                None,
            )
            .await
        }
        Op::ChangeRole(t, r) => {
            api.call(
                "PUT",
                &g(&format!("/members/{}/role", NAMES[TARGETS[t]])),
                Some(json!({"role": ROLES[r]})),
            )
            .await
        }
        Op::Send => {
            let body = json!({"client_msg_id": client_msg_id, "body": MARKER});
            api.post(&g("/messages"), body).await
        }
        Op::Edit(m) => {
            api.call(
                "PATCH",
                &g(&format!("/messages/{}", seq(m))),
                Some(json!({"body": format!("{MARKER} edited")})),
            )
            .await
        }
        Op::Delete(m) => {
            api.call("DELETE", &g(&format!("/messages/{}", seq(m))), None)
                .await
        }
        Op::React(m) => {
            api.call(
                "PUT",
                &g(&format!("/messages/{}/reactions/👍", seq(m))),
                None,
            )
            .await
        }
        Op::Pin(m) => {
            api.call("PUT", &g(&format!("/messages/{}/pin", seq(m))), None)
                .await
        }
        Op::Read => api.post(&g("/read"), json!({"seq": model.last_seq})).await,
        Op::Mute => {
            api.call("PUT", &g("/mute"), Some(json!({"muted": true})))
                .await
        }
        Op::PinDirect => {
            api.call(
                "PUT",
                &format!("/v1/conversations/{did}/messages/{direct_seq}/pin"),
                None,
            )
            .await
        }
        Op::RenameDirect => {
            api.call(
                "PATCH",
                &format!("/v1/conversations/{did}"),
                Some(json!({"name": "x"})),
            )
            .await
        }
        Op::AddToDirect => {
            api.post(
                &format!("/v1/conversations/{did}/members"),
                json!({"user_id": "out"}),
            )
            .await
        }
        Op::WsSend | Op::WsTyping | Op::WsRead | Op::WsResume => unreachable!(),
    }
}

/// Moves the model on after an allowed operation.
fn apply(model: &mut Model, who: usize, op: Op, body: &Value) {
    let event_seq = body["event_seq"].as_i64().or_else(|| body["seq"].as_i64());
    if let Some(seq) = event_seq {
        model.last_seq = model.last_seq.max(seq);
    }
    match op {
        Op::AddMember(t, r) => {
            model.joined(TARGETS[t], Role::parse(ROLES[r]), event_seq.unwrap());
        }
        Op::RemoveMember(t) => model.left(TARGETS[t], event_seq.unwrap()),
        Op::ChangeRole(t, r) => {
            model.roles.insert(TARGETS[t], Role::parse(ROLES[r]));
        }
        Op::Send => model.messages.push(Message {
            seq: event_seq.unwrap(),
            author: who,
            deleted: false,
        }),
        Op::Delete(m) => {
            let n = model.messages.len();
            model.messages[m % n].deleted = true;
        }
        _ => {}
    }
}
