//! Who is in each conversation, as of the event being routed. Kept from the
//! member events the router itself sees; a conversation it has not seen is
//! loaded from the store once the store has applied that event.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chat::audience::{Members, Reach, reach};
use schemas::ChatEvent;
use store::Store;
use streams::StageError;

#[derive(Default)]
pub struct Membership {
    members: HashMap<String, Members>,
}

impl Membership {
    /// Updates the members for `event` (at `seq`) and returns who must see
    /// it (`chat::audience`).
    pub async fn audience(
        &mut self,
        store: &dyn Store,
        seq: i64,
        event: &ChatEvent,
    ) -> Result<Vec<String>, StageError> {
        let cid = &event.conversation_id;
        match reach(&event.payload) {
            Reach::Nobody => return Ok(Vec::new()),
            Reach::Actor => return Ok(vec![event.actor.user_id.clone()]),
            Reach::Members => {}
        }
        if let Some(founders) = Members::founded_by(&event.payload) {
            self.members.insert(cid.clone(), founders);
        }
        let members = match self.members.entry(cid.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(load(store, cid, seq).await?),
        };
        Ok(members.apply(&event.payload))
    }
}

/// The members as of `seq`. The store is only exact about that once it has
/// applied `seq` itself; until then this is a transient failure and the
/// runtime retries the batch.
async fn load(store: &dyn Store, cid: &str, seq: i64) -> Result<Members, StageError> {
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
            Ok(Members::new(members.into_iter().map(|m| m.user_id)))
        }
        _ => Err(StageError(format!(
            "conversation {cid}: store has not applied seq {seq} yet"
        ))),
    }
}
