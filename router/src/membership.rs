//! Who is in each conversation, as of the event being routed. Kept from the
//! member events the router itself sees; a conversation it has not seen is
//! loaded from the store once the store has applied that event.

use std::collections::{HashMap, HashSet};

use schemas::{ChatEvent, Payload};
use store::Store;
use streams::StageError;

#[derive(Default)]
pub struct Membership {
    members: HashMap<String, HashSet<String>>,
}

impl Membership {
    /// Updates the members for `event` (at `seq`) and returns who must see it:
    /// the members after the event, plus a member it removed.
    pub async fn audience(
        &mut self,
        store: &dyn Store,
        seq: i64,
        event: &ChatEvent,
    ) -> Result<Vec<String>, StageError> {
        let cid = &event.conversation_id;
        match &event.payload {
            // A user's own stream: nothing to route.
            Payload::DeviceRegistered(_) | Payload::DeviceRemoved(_) => return Ok(Vec::new()),
            // Only the user's own devices learn of a mute.
            Payload::MemberMuted(_) => return Ok(vec![event.actor.user_id.clone()]),
            _ => {}
        }
        if let Payload::ConversationCreated(p) = &event.payload {
            let members = p.members.iter().map(|m| m.user_id.clone()).collect();
            self.members.insert(cid.clone(), members);
        }
        if !self.members.contains_key(cid) {
            let loaded = load(store, cid, seq).await?;
            self.members.insert(cid.clone(), loaded);
        }
        let mut extra = None;
        if let Some(members) = self.members.get_mut(cid) {
            match &event.payload {
                Payload::MemberAdded(p) => {
                    members.insert(p.user_id.clone());
                }
                Payload::MemberRemoved(p) if members.remove(&p.user_id) => {
                    extra = Some(p.user_id.clone());
                }
                _ => {}
            }
        }
        let mut audience: Vec<String> = self
            .members
            .get(cid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        audience.extend(extra);
        Ok(audience)
    }
}

/// The members as of `seq`. The store is only exact about that once it has
/// applied `seq` itself; until then this is a transient failure and the
/// runtime retries the batch.
async fn load(store: &dyn Store, cid: &str, seq: i64) -> Result<HashSet<String>, StageError> {
    let conversation = store
        .conversation(cid)
        .await
        .map_err(|e| StageError(e.to_string()))?;
    match conversation {
        Some(c) if c.last_seq >= seq => {
            let members = store
                .members(cid)
                .await
                .map_err(|e| StageError(e.to_string()))?;
            Ok(members.into_iter().map(|m| m.user_id).collect())
        }
        _ => Err(StageError(format!(
            "conversation {cid}: store has not applied seq {seq} yet"
        ))),
    }
}
