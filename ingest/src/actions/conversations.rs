//! Creating conversations: a group with its creator as owner, or the one
//! direct conversation of a pair (its id is stable, so creating it again
//! returns it).

use chat::{Kind, Role, rules};
use schemas::{Actor, ConversationCreated, MemberSpec, Payload};

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

impl Gateway {
    /// Creates a conversation; a direct one has a stable id per pair, so
    /// creating it again returns the existing one.
    pub async fn create_conversation(
        &self,
        creator: &str,
        device_id: &str,
        kind: &str,
        name: Option<String>,
        members: Vec<String>,
    ) -> Result<(String, bool, Vec<MemberSpec>, i64), ApiError> {
        for m in &members {
            validate::named_id("members", m)?;
        }
        if let Some(n) = &name
            && n.len() > 200
        {
            return Err(ApiError::invalid("invalid_name", "name is over 200 bytes"));
        }
        let mut others: Vec<String> = members.into_iter().filter(|m| m != creator).collect();
        others.sort();
        others.dedup();
        let kind = Kind::parse(kind)
            .ok_or_else(|| ApiError::invalid("invalid_kind", "kind is \"direct\" or \"group\""))?;
        let (conversation_id, specs) = match kind {
            Kind::Direct => {
                let [other] = others.as_slice() else {
                    return Err(ApiError::invalid(
                        "invalid_members",
                        "a direct conversation has exactly one other member",
                    ));
                };
                let (a, b) = if creator < other.as_str() {
                    (creator, other.as_str())
                } else {
                    (other.as_str(), creator)
                };
                let id = format!("dm{}:{a}:{b}", a.len());
                let specs = vec![
                    MemberSpec {
                        user_id: creator.to_owned(),
                        role: Role::Member.as_str().into(),
                    },
                    MemberSpec {
                        user_id: other.clone(),
                        role: Role::Member.as_str().into(),
                    },
                ];
                (id, specs)
            }
            Kind::Group => {
                if others.len() > rules::MAX_MEMBERS {
                    return Err(ApiError::invalid(
                        "invalid_members",
                        "at most 10000 members",
                    ));
                }
                let mut specs = vec![MemberSpec {
                    user_id: creator.to_owned(),
                    role: Role::Owner.as_str().into(),
                }];
                specs.extend(others.into_iter().map(|u| MemberSpec {
                    user_id: u,
                    role: Role::Member.as_str().into(),
                }));
                (format!("g:{}", ulid::Ulid::new()), specs)
            }
        };
        if kind == Kind::Direct {
            self.read_your_writes(&conversation_id, true).await?;
            if let Some(existing) = self.store.conversation(&conversation_id).await? {
                return Ok((conversation_id, false, specs, existing.last_seq));
            }
        }
        let payload = Payload::ConversationCreated(ConversationCreated {
            kind: kind.as_str().to_owned(),
            name,
            description: None,
            members: specs.clone(),
        });
        let actor = Actor {
            user_id: creator.to_owned(),
            device_id: device_id.to_owned(),
        };
        let (seq, _) = self.publish(&conversation_id, actor, payload).await?;
        Ok((conversation_id, true, specs, seq))
    }
}
