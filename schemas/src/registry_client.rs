//! Schema ids from a Confluent Schema Registry: at start, each compiled-in
//! version is posted under its subject (see [`crate::SchemaId::subject`]); the
//! registry answers with its id, registering the schema if it is new and
//! compatible. Records are then framed with those ids.

use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::{RegistryIds, VERSIONS};

/// A schema the registry did not take (unreachable, or incompatible with
/// what the subject already holds).
#[derive(Debug, thiserror::Error)]
#[error("registering {subject} at {url}: {source}")]
pub struct RegistryError {
    pub subject: &'static str,
    pub url: String,
    pub source: SRCError,
}

/// The registry's id for every compiled-in version, oldest first (so that
/// a registry enforcing compatibility sees them in the order they shipped
/// and records written with an earlier version still decode).
pub async fn resolve(url: &str) -> Result<RegistryIds, RegistryError> {
    let settings = SrSettings::new(url.trim_end_matches('/').to_owned());
    let mut ids = RegistryIds::compiled();
    for version in VERSIONS {
        let subject = version.schema.subject();
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, version.text.to_owned());
        let registered = post_schema(&settings, subject.to_owned(), supplied)
            .await
            .map_err(|source| RegistryError {
                subject,
                url: url.to_owned(),
                source,
            })?;
        ids = ids.with_version(version, registered.id);
    }
    Ok(ids)
}
