use std::fmt;

/// What a conversation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Exactly two members, for good; no name.
    Direct,
    /// Members with roles, a name and a description.
    Group,
}

impl Kind {
    /// The kind as events and the API spell it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "direct" => Some(Kind::Direct),
            "group" => Some(Kind::Group),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Group => "group",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's role in a group, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    /// The role as events and the API spell it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// A role read back from the store: what this build does not know
    /// counts as the least.
    pub fn stored(text: &str) -> Role {
        Role::parse(text).unwrap_or(Role::Member)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins manage members and the group.
    pub fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_roles_read_back_what_they_write() {
        for kind in [Kind::Direct, Kind::Group] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Kind::parse("channel"), None);
        assert_eq!(Role::parse("Owner"), None, "spelled exactly");
        assert_eq!(Role::stored("moderator"), Role::Member);
    }
}
