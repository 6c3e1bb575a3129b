//! Every version of every compiled-in schema and the ids the built-in
//! registry gives them. A record on the log names its writer's schema by
//! id; the codec decodes any version listed here into the current one.

use std::sync::OnceLock;

/// The kinds of record chatflow puts on its topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaId {
    ChatEvent,
    DevicePresence,
    Typing,
    Delivery,
}

/// One version of a record's schema, as compiled in; two are the same
/// version when they have the same id.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    pub schema: SchemaId,
    /// The registry's version number under the record's subject: 1, 2, …
    pub number: u32,
    /// The built-in registry's id: never changed, never reused.
    pub id: u32,
    /// The schema text, exactly as in `schemas/avro`.
    pub text: &'static str,
}

/// Oldest first. A new version is appended with the next id, its
/// predecessor's text moves to `schemas/avro/history`, and the
/// `versions_are_backward_transitive` test must still pass.
pub const VERSIONS: [Version; 6] = [
    Version {
        schema: SchemaId::ChatEvent,
        number: 1,
        id: 1,
        text: include_str!("../avro/history/chat_event.v1.avsc"),
    },
    Version {
        schema: SchemaId::DevicePresence,
        number: 1,
        id: 2,
        text: include_str!("../avro/device_presence.avsc"),
    },
    Version {
        schema: SchemaId::Typing,
        number: 1,
        id: 3,
        text: include_str!("../avro/typing.avsc"),
    },
    Version {
        schema: SchemaId::Delivery,
        number: 1,
        id: 4,
        text: include_str!("../avro/delivery.avsc"),
    },
    Version {
        schema: SchemaId::ChatEvent,
        number: 2,
        id: 5,
        text: include_str!("../avro/history/chat_event.v2.avsc"),
    },
    Version {
        schema: SchemaId::ChatEvent,
        number: 3,
        id: 6,
        text: include_str!("../avro/chat_event.avsc"),
    },
];

/// By id, which names one version for good: comparing the derived way
/// compared the schema texts byte by byte, on every encode and decode.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Version {}

impl Version {
    /// The compiled-in version with this built-in registry id.
    pub fn by_id(id: u32) -> Option<Version> {
        VERSIONS.into_iter().find(|v| v.id == id)
    }

    /// Whether records are written with this version today.
    pub fn is_current(self) -> bool {
        self == self.schema.current()
    }

    pub(crate) fn index(self) -> usize {
        VERSIONS.iter().position(|v| *v == self).unwrap_or(0)
    }
}

impl SchemaId {
    pub const ALL: [SchemaId; 4] = [
        SchemaId::ChatEvent,
        SchemaId::DevicePresence,
        SchemaId::Typing,
        SchemaId::Delivery,
    ];

    /// Every version of this record's schema, oldest first.
    pub fn versions(self) -> impl Iterator<Item = Version> {
        VERSIONS.into_iter().filter(move |v| v.schema == self)
    }

    /// The version records are written with.
    pub fn current(self) -> Version {
        // Every record kind has at least one version in VERSIONS.
        #[allow(clippy::expect_used)]
        self.versions().last().expect("every record has a version")
    }

    /// The built-in registry id of the current version.
    pub fn id(self) -> u32 {
        self.current().id
    }

    /// The record kind behind a built-in registry id (any version).
    pub fn from_id(id: u32) -> Option<SchemaId> {
        Version::by_id(id).map(|v| v.schema)
    }

    /// The current schema text.
    pub fn text(self) -> &'static str {
        self.current().text
    }

    /// The registry subject of this record: `<topic>-value` (Confluent's
    /// topic-name strategy); every node's inbox shares `chat.inbox-value`.
    pub fn subject(self) -> &'static str {
        match self {
            SchemaId::ChatEvent => "chat.events-value",
            SchemaId::DevicePresence => "chat.presence-value",
            SchemaId::Typing => "chat.signals-value",
            SchemaId::Delivery => "chat.inbox-value",
        }
    }

    /// The registry subject under the topic-name strategy (`<topic>-value`)
    /// for fixed topics; inbox topics are per node, so their subject is
    /// matched by prefix in the registry.
    pub fn topic(self) -> &'static str {
        match self {
            SchemaId::ChatEvent => "chat.events",
            SchemaId::DevicePresence => "chat.presence",
            SchemaId::Typing => "chat.signals",
            SchemaId::Delivery => "chat.inbox.",
        }
    }
}

/// The ids an external schema registry gave chatflow's schemas, set once
/// at start (`--schema-registry`); without it the compiled-in ids are used,
/// which are also what chatflow's built-in registry serves.
static REGISTRY_IDS: OnceLock<RegistryIds> = OnceLock::new();

/// The registry id of each compiled-in version (0: that registry does not
/// hold it, so no record names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryIds([u32; VERSIONS.len()]);

impl RegistryIds {
    pub fn compiled() -> Self {
        RegistryIds(VERSIONS.map(|v| v.id))
    }

    /// With `id` for the current version of `schema`.
    pub fn with(self, schema: SchemaId, id: u32) -> Self {
        self.with_version(schema.current(), id)
    }

    pub fn with_version(mut self, version: Version, id: u32) -> Self {
        self.0[version.index()] = id;
        self
    }

    /// The id records of `schema` are written with.
    pub fn get(&self, schema: SchemaId) -> u32 {
        self.0[schema.current().index()]
    }

    /// The id records written with `version` carry.
    pub fn version_id(&self, version: Version) -> u32 {
        self.0[version.index()]
    }

    /// The compiled-in version a registry id stands for.
    pub fn version_of(&self, id: u32) -> Option<Version> {
        let at = self.0.iter().position(|&i| i == id && id != 0)?;
        Some(VERSIONS[at])
    }

    /// The record kind a registry id stands for.
    pub fn schema_of(&self, id: u32) -> Option<SchemaId> {
        self.version_of(id).map(|v| v.schema)
    }

    /// Makes every [`Codec`](crate::Codec) made from now on use these ids;
    /// false if ids were set already.
    pub fn install(self) -> bool {
        REGISTRY_IDS.set(self).is_ok()
    }

    /// The installed ids, or the compiled-in ones.
    pub fn installed() -> Self {
        REGISTRY_IDS.get().copied().unwrap_or_else(Self::compiled)
    }
}
