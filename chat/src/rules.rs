//! Who may do what, as plain functions of the facts they need. The gateway
//! gathers the facts (membership, roles, the message) and maps [`Denied`]
//! to its API error in one place.

use crate::{Kind, Role};

/// Why an action is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The conversation's state does not allow it (409).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: &'static str,
    },
    /// The request names something that cannot be (400).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: &'static str,
    },
}

fn conflict(code: &'static str, message: &'static str) -> Denied {
    Denied::Conflict { code, message }
}

/// The most members a group holds.
pub const MAX_MEMBERS: usize = 10_000;
/// The most different reactions one message holds.
pub const MAX_REACTIONS: usize = 50;
/// The most messages pinned in one conversation.
pub const MAX_PINS: usize = 50;

/// The role a caller acts with in a conversation: a global admin acts as an
/// owner anywhere; anyone else needs to be a member.
pub fn acting_role(member: Option<Role>, global_admin: bool) -> Option<Role> {
    if global_admin {
        Some(Role::Owner)
    } else {
        member
    }
}

/// Membership and roles change only in groups.
pub fn group_only(kind: Kind) -> Result<(), Denied> {
    match kind {
        Kind::Group => Ok(()),
        Kind::Direct => Err(conflict(
            "direct_conversation",
            "a direct conversation keeps its two members and has no name",
        )),
    }
}

/// Owners and admins add members; only an owner adds an owner.
pub fn add_member(caller: Role, new: Role) -> Result<(), Denied> {
    if !caller.manages() {
        return Err(Denied::Forbidden("only an owner or admin can add members"));
    }
    if new == Role::Owner && caller != Role::Owner {
        return Err(Denied::Forbidden("only an owner can add an owner"));
    }
    Ok(())
}

/// Someone joins only once.
pub fn not_yet_member(already_member: bool) -> Result<(), Denied> {
    if already_member {
        Err(conflict("already_member", "already a member"))
    } else {
        Ok(())
    }
}

/// A group holds at most [`MAX_MEMBERS`].
pub fn room_for_one_more(members: usize) -> Result<(), Denied> {
    if members >= MAX_MEMBERS {
        Err(conflict("too_many_members", "the group is full"))
    } else {
        Ok(())
    }
}

/// Only owners change roles.
pub fn change_role(caller: Role) -> Result<(), Denied> {
    if caller == Role::Owner {
        Ok(())
    } else {
        Err(Denied::Forbidden("only an owner can change roles"))
    }
}

/// The change takes an owner's ownership away: see [`keep_an_owner`].
pub fn demotes_owner(target: Role, new: Role) -> bool {
    target == Role::Owner && new != Role::Owner
}

/// A group keeps at least one owner.
pub fn keep_an_owner(owners: usize) -> Result<(), Denied> {
    if owners <= 1 {
        Err(conflict(
            "last_owner",
            "a group keeps at least one owner: make someone else owner first",
        ))
    } else {
        Ok(())
    }
}

/// Anyone may leave; owners and admins remove others, but only an owner
/// removes an owner.
pub fn remove_member(caller: Role, leaving: bool, target: Role) -> Result<(), Denied> {
    if leaving {
        return Ok(());
    }
    if !caller.manages() {
        return Err(Denied::Forbidden(
            "only an owner or admin can remove other members",
        ));
    }
    if target == Role::Owner && caller != Role::Owner {
        return Err(Denied::Forbidden("only an owner can remove an owner"));
    }
    Ok(())
}

/// Who becomes owner when the last owner leaves: the longest-standing admin,
/// else the longest-standing member. `members` are `(user, role, joined
/// seq)`; `None` when nobody else is left.
pub fn heir<'a>(
    members: impl IntoIterator<Item = (&'a str, Role, i64)>,
    leaving: &str,
) -> Option<&'a str> {
    members
        .into_iter()
        .filter(|(user, _, _)| *user != leaving)
        .min_by_key(|(_, role, joined)| (*role != Role::Admin, *joined))
        .map(|(user, _, _)| user)
}

/// Owners and admins rename and describe a group.
pub fn update_conversation(caller: Role) -> Result<(), Denied> {
    if caller.manages() {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "only an owner or admin can change the group",
        ))
    }
}

/// Only the author edits a message.
pub fn edit_message(caller: &str, author: &str) -> Result<(), Denied> {
    if caller == author {
        Ok(())
    } else {
        Err(Denied::Forbidden("only the author can edit a message"))
    }
}

/// The author, an owner or admin of the conversation, or a global admin
/// deletes a message.
pub fn delete_message(
    caller: &str,
    author: &str,
    role: Role,
    global_admin: bool,
) -> Result<(), Denied> {
    if caller == author || role.manages() || global_admin {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "only the author or an owner or admin can delete a message",
        ))
    }
}

/// Whether a reaction changes anything (`false`: already so, nothing to
/// do); a message holds at most [`MAX_REACTIONS`] different emoji.
pub fn react(add: bool, has_it: bool, distinct: usize, emoji_known: bool) -> Result<bool, Denied> {
    if has_it == add {
        return Ok(false);
    }
    if add && !emoji_known && distinct >= MAX_REACTIONS {
        return Err(conflict(
            "too_many_reactions",
            "a message holds at most 50 different reactions",
        ));
    }
    Ok(true)
}

/// Pins (or unpins) a message for the whole conversation: either member of
/// a direct conversation, an owner or admin of a group, or a global admin.
/// Ok(false): it already is so (no event). A conversation holds at most
/// [`MAX_PINS`] pinned messages.
pub fn pin(
    kind: Kind,
    role: Role,
    global_admin: bool,
    pin: bool,
    is_pinned: bool,
    pinned: usize,
) -> Result<bool, Denied> {
    if kind == Kind::Group && !role.manages() && !global_admin {
        return Err(Denied::Forbidden(
            "only an owner or admin can pin messages in a group",
        ));
    }
    if pin == is_pinned {
        return Ok(false);
    }
    if pin && pinned >= MAX_PINS {
        return Err(conflict(
            "too_many_pins",
            "a conversation holds at most 50 pinned messages",
        ));
    }
    Ok(true)
}

/// A receipt names an event of the conversation: `0..=last_seq`.
pub fn receipt_seq(seq: i64, last_seq: i64) -> Result<(), Denied> {
    if (0..=last_seq).contains(&seq) {
        Ok(())
    } else {
        Err(Denied::Invalid {
            code: "invalid_seq",
            message: "seq is not an event of this conversation",
        })
    }
}

/// A read receipt only moves forward; `false`: nothing to record.
pub fn read_moves_forward(seq: i64, last_read: i64) -> bool {
    seq > last_read
}

/// A user's presence is theirs, a global admin's, and of those who share a
/// conversation with them.
pub fn see_presence(
    caller: &str,
    user: &str,
    global_admin: bool,
    share_a_conversation: bool,
) -> Result<(), Denied> {
    if caller == user || global_admin || share_a_conversation {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "you share no conversation with this user",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Member, Owner};

    fn forbidden<T: std::fmt::Debug>(r: Result<T, Denied>) -> bool {
        matches!(r, Err(Denied::Forbidden(_)))
    }

    fn conflict_code<T: std::fmt::Debug>(r: Result<T, Denied>) -> Option<&'static str> {
        match r {
            Err(Denied::Conflict { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn a_global_admin_acts_as_an_owner_and_others_need_to_be_members() {
        assert_eq!(acting_role(None, true), Some(Owner));
        assert_eq!(acting_role(Some(Member), true), Some(Owner));
        assert_eq!(acting_role(Some(Admin), false), Some(Admin));
        assert_eq!(acting_role(None, false), None);
    }

    #[test]
    fn members_and_names_change_only_in_groups() {
        assert!(group_only(Kind::Group).is_ok());
        assert_eq!(
            conflict_code(group_only(Kind::Direct)),
            Some("direct_conversation")
        );
    }

    #[test]
    fn owners_and_admins_add_members_and_only_owners_add_owners() {
        assert!(add_member(Owner, Owner).is_ok());
        assert!(add_member(Admin, Admin).is_ok());
        assert!(forbidden(add_member(Admin, Owner)));
        assert!(forbidden(add_member(Member, Member)));
        assert!(not_yet_member(false).is_ok());
        assert_eq!(conflict_code(not_yet_member(true)), Some("already_member"));
        assert!(room_for_one_more(3).is_ok());
        assert_eq!(
            conflict_code(room_for_one_more(MAX_MEMBERS)),
            Some("too_many_members")
        );
    }

    #[test]
    fn only_owners_change_roles_and_a_group_keeps_an_owner() {
        assert!(change_role(Owner).is_ok());
        assert!(forbidden(change_role(Admin)));
        assert!(!demotes_owner(Member, Admin));
        assert!(demotes_owner(Owner, Admin));
        assert!(!demotes_owner(Owner, Owner));
        assert_eq!(conflict_code(keep_an_owner(1)), Some("last_owner"));
        assert!(keep_an_owner(2).is_ok());
    }

    #[test]
    fn anyone_leaves_and_only_managers_remove_others() {
        assert!(remove_member(Member, true, Owner).is_ok(), "leaving");
        assert!(forbidden(remove_member(Member, false, Member)));
        assert!(remove_member(Admin, false, Member).is_ok());
        assert!(forbidden(remove_member(Admin, false, Owner)));
        assert!(remove_member(Owner, false, Owner).is_ok());
    }

    #[test]
    fn the_last_owner_s_heir_is_the_longest_admin_then_the_longest_member() {
        let members = [
            ("ann", Owner, 0),
            ("bob", Member, 1),
            ("cat", Admin, 5),
            ("dan", Admin, 3),
        ];
        assert_eq!(heir(members, "ann"), Some("dan"));
        assert_eq!(
            heir(
                [("ann", Owner, 0), ("bob", Member, 4), ("cy", Member, 2)],
                "ann"
            ),
            Some("cy")
        );
        assert_eq!(heir([("ann", Owner, 0)], "ann"), None);
    }

    #[test]
    fn owners_and_admins_rename_a_group() {
        assert!(update_conversation(Owner).is_ok());
        assert!(update_conversation(Admin).is_ok());
        assert!(forbidden(update_conversation(Member)));
    }

    #[test]
    fn only_the_author_edits() {
        assert!(edit_message("ann", "ann").is_ok());
        assert!(forbidden(edit_message("bob", "ann")));
    }

    #[test]
    fn the_author_managers_and_global_admins_delete() {
        assert!(delete_message("ann", "ann", Member, false).is_ok());
        assert!(delete_message("bob", "ann", Admin, false).is_ok());
        assert!(delete_message("bob", "ann", Member, true).is_ok());
        assert!(forbidden(delete_message("bob", "ann", Member, false)));
    }

    #[test]
    fn a_reaction_changes_something_or_nothing_and_emoji_are_bounded() {
        assert_eq!(react(true, false, 0, false), Ok(true));
        assert_eq!(react(true, true, 1, true), Ok(false), "already there");
        assert_eq!(
            react(false, false, 0, false),
            Ok(false),
            "nothing to remove"
        );
        assert_eq!(
            conflict_code(react(true, false, MAX_REACTIONS, false)),
            Some("too_many_reactions")
        );
        assert_eq!(
            react(true, false, MAX_REACTIONS, true),
            Ok(true),
            "a known emoji"
        );
    }

    #[test]
    fn pins_are_for_managers_of_groups_and_anyone_in_a_direct_chat() {
        use Kind::{Direct, Group};
        assert_eq!(pin(Direct, Role::Member, false, true, false, 0), Ok(true));
        assert_eq!(pin(Group, Role::Admin, false, true, false, 0), Ok(true));
        assert_eq!(pin(Group, Role::Member, true, false, true, 1), Ok(true));
        assert!(matches!(
            pin(Group, Role::Member, false, true, false, 0),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(pin(Group, Role::Owner, false, true, true, 1), Ok(false));
        assert_eq!(
            conflict_code(pin(Direct, Role::Member, false, true, false, MAX_PINS)),
            Some("too_many_pins")
        );
        assert_eq!(
            pin(Direct, Role::Member, false, false, true, MAX_PINS),
            Ok(true)
        );
    }

    #[test]
    fn receipts_name_an_event_and_reads_only_move_forward() {
        assert!(receipt_seq(0, 5).is_ok());
        assert!(receipt_seq(5, 5).is_ok());
        assert!(matches!(
            receipt_seq(6, 5),
            Err(Denied::Invalid {
                code: "invalid_seq",
                ..
            })
        ));
        assert!(receipt_seq(-1, 5).is_err());
        assert!(read_moves_forward(4, 3));
        assert!(!read_moves_forward(3, 3));
    }

    #[test]
    fn presence_is_seen_by_the_user_admins_and_who_shares_a_conversation() {
        assert!(see_presence("ann", "ann", false, false).is_ok());
        assert!(see_presence("bob", "ann", true, false).is_ok());
        assert!(see_presence("bob", "ann", false, true).is_ok());
        assert!(forbidden(see_presence("bob", "ann", false, false)));
    }
}
