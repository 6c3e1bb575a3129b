//! Who must see an event or a signal.

use std::collections::HashSet;

use schemas::Payload;

/// Whose devices an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Nobody's: a user's own stream (device registrations).
    Nobody,
    /// The actor's own devices (a mute is theirs alone).
    Actor,
    /// The conversation's members (see [`Members::apply`]).
    Members,
}

pub fn reach(payload: &Payload) -> Reach {
    match payload {
        Payload::DeviceRegistered(_)
        | Payload::DeviceRemoved(_)
        | Payload::UserErased(_)
        | Payload::ExportRequested(_) => Reach::Nobody,
        Payload::MemberMuted(_) => Reach::Actor,
        _ => Reach::Members,
    }
}

/// A conversation's members as of the events applied so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members(HashSet<String>);

impl Members {
    pub fn new(users: impl IntoIterator<Item = String>) -> Members {
        Members(users.into_iter().collect())
    }

    /// The members a conversation starts with, if `payload` creates it.
    pub fn founded_by(payload: &Payload) -> Option<Members> {
        match payload {
            Payload::ConversationCreated(p) => {
                Some(Members::new(p.members.iter().map(|m| m.user_id.clone())))
            }
            _ => None,
        }
    }

    /// Applies the event and returns who must see it: the members after it,
    /// and a member it removed (who learns of it).
    pub fn apply(&mut self, payload: &Payload) -> Vec<String> {
        let mut removed = None;
        match payload {
            Payload::MemberAdded(p) => {
                self.0.insert(p.user_id.clone());
            }
            Payload::MemberRemoved(p) if self.0.remove(&p.user_id) => {
                removed = Some(p.user_id.clone());
            }
            _ => {}
        }
        let mut audience: Vec<String> = self.0.iter().cloned().collect();
        audience.extend(removed);
        audience
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.contains(user)
    }
}

/// Typing goes to the conversation's other members.
pub fn typing_audience(members: impl IntoIterator<Item = String>, typer: &str) -> Vec<String> {
    members.into_iter().filter(|u| u != typer).collect()
}

#[cfg(test)]
mod tests {
    use schemas::{ConversationCreated, MemberAdded, MemberMuted, MemberRemoved, MemberSpec};

    use super::*;

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_removed_member_learns_of_it_and_then_sees_nothing() {
        let created = Payload::ConversationCreated(ConversationCreated {
            kind: "group".into(),
            name: None,
            description: None,
            members: ["ann", "bob"]
                .map(|u| MemberSpec {
                    user_id: u.into(),
                    role: "member".into(),
                })
                .to_vec(),
        });
        let mut members = Members::founded_by(&created).unwrap();
        assert_eq!(sorted(members.apply(&created)), ["ann", "bob"]);
        let added = Payload::MemberAdded(MemberAdded {
            user_id: "cat".into(),
            role: "member".into(),
        });
        assert_eq!(sorted(members.apply(&added)), ["ann", "bob", "cat"]);
        let removed = Payload::MemberRemoved(MemberRemoved {
            user_id: "bob".into(),
        });
        assert_eq!(sorted(members.apply(&removed)), ["ann", "bob", "cat"]);
        assert!(!members.contains("bob"));
        assert_eq!(sorted(members.apply(&added)), ["ann", "cat"]);
    }

    #[test]
    fn a_mute_reaches_the_actor_and_device_records_nobody() {
        assert_eq!(
            reach(&Payload::MemberMuted(MemberMuted { muted: true })),
            Reach::Actor
        );
        let removed = Payload::MemberRemoved(MemberRemoved {
            user_id: "x".into(),
        });
        assert_eq!(reach(&removed), Reach::Members);
    }

    #[test]
    fn typing_goes_to_the_others() {
        let members = ["ann", "bob", "cat"].map(String::from);
        assert_eq!(typing_audience(members, "bob"), ["ann", "cat"]);
    }
}
