//! Schema ids from a Confluent Schema Registry: at start, each compiled-in
//! schema is posted under its subject (see [`SchemaId::subject`]); the
//! registry answers with its id, registering the schema if it is new and
//! compatible. Records are then framed with those ids.

use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::{RegistryIds, SchemaId};

/// The registry's id for every compiled-in schema.
pub async fn resolve(url: &str) -> Result<RegistryIds, String> {
    let settings = SrSettings::new(url.trim_end_matches('/').to_owned());
    let mut ids = RegistryIds::compiled();
    for schema in SchemaId::ALL {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.text().to_owned());
        let registered = post_schema(&settings, schema.subject().to_owned(), supplied)
            .await
            .map_err(|e| format!("registering {} at {url}: {e}", schema.subject()))?;
        ids = ids.with(schema, registered.id);
    }
    Ok(ids)
}
