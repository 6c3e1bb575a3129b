//! Avro schema resolution from an earlier version of a schema (the writer's)
//! to the current one (the reader's), by the rules of the Avro
//! specification: record fields match by name and a field the writer lacks
//! takes the reader's default; a union branch matches by name (named types)
//! or by kind.
//!
//! apache-avro resolves a union value by trying the reader's branches until
//! one accepts it, which picks the wrong branch when two records have the
//! same shape (`MessageDeleted {seq}` and `ReadUpTo {seq}`): this resolver
//! follows the branch the writer chose.

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, RecordField, ResolvedSchema, UnionSchema};
use apache_avro::types::Value;

use crate::CodecError;

/// Resolves values written with one schema into another, both parsed once
/// for the life of the process.
pub(crate) struct Resolver {
    writer: &'static Schema,
    writer_names: NamesRef<'static>,
    reader: &'static Schema,
    reader_names: NamesRef<'static>,
}

fn mismatch(what: &str, value: &Value) -> CodecError {
    CodecError::Avro(format!("resolving: expected {what}, got {value:?}"))
}

impl Resolver {
    pub fn new(writer: &'static Schema, reader: &'static Schema) -> Result<Self, CodecError> {
        Ok(Resolver {
            writer,
            writer_names: ResolvedSchema::try_from(writer)?.get_names().clone(),
            reader,
            reader_names: ResolvedSchema::try_from(reader)?.get_names().clone(),
        })
    }

    /// `value`, as decoded with the writer's schema, in the reader's schema.
    pub fn resolve(&self, value: Value) -> Result<Value, CodecError> {
        self.value(value, self.writer, self.reader)
    }

    fn writer_def(&self, schema: &'static Schema) -> &'static Schema {
        named(schema, &self.writer_names)
    }

    fn reader_def(&self, schema: &'static Schema) -> &'static Schema {
        named(schema, &self.reader_names)
    }

    fn value(
        &self,
        value: Value,
        writer: &'static Schema,
        reader: &'static Schema,
    ) -> Result<Value, CodecError> {
        let (writer, reader) = (self.writer_def(writer), self.reader_def(reader));
        match (writer, reader) {
            (Schema::Union(w), _) => {
                let Value::Union(index, inner) = value else {
                    return Err(mismatch("a union", &value));
                };
                let chosen = w
                    .variants()
                    .get(index as usize)
                    .ok_or(CodecError::UnknownBranch(index as usize))?;
                self.value(*inner, chosen, reader)
            }
            (_, Schema::Union(r)) => {
                let (index, branch) = self.branch(writer, r)?;
                let inner = self.value(value, writer, branch)?;
                Ok(Value::Union(index as u32, Box::new(inner)))
            }
            (Schema::Record(w), Schema::Record(r)) => {
                let Value::Record(fields) = value else {
                    return Err(mismatch("a record", &value));
                };
                // Decoded with the writer's schema: its fields in its order.
                let mut fields: Vec<Option<Value>> =
                    fields.into_iter().map(|(_, v)| Some(v)).collect();
                let mut out = Vec::with_capacity(r.fields.len());
                for field in &r.fields {
                    let written = w
                        .lookup
                        .get(&field.name)
                        .and_then(|&i| Some((i, fields.get_mut(i)?.take()?)));
                    let v = match written {
                        Some((i, v)) => self.value(v, &w.fields[i].schema, &field.schema)?,
                        None => self.default(field)?,
                    };
                    out.push((field.name.clone(), v));
                }
                Ok(Value::Record(out))
            }
            (Schema::Array(w), Schema::Array(r)) => match value {
                Value::Array(items) => Ok(Value::Array(
                    items
                        .into_iter()
                        .map(|v| self.value(v, &w.items, &r.items))
                        .collect::<Result<_, _>>()?,
                )),
                other => Err(mismatch("an array", &other)),
            },
            (Schema::Map(w), Schema::Map(r)) => match value {
                Value::Map(items) => Ok(Value::Map(
                    items
                        .into_iter()
                        .map(|(k, v)| Ok((k, self.value(v, &w.types, &r.types)?)))
                        .collect::<Result<_, CodecError>>()?,
                )),
                other => Err(mismatch("a map", &other)),
            },
            // The same primitive: nothing to do; otherwise a promotion
            // (int to long, …), an enum or a fixed, which apache-avro
            // resolves by the specification.
            _ if std::mem::discriminant(writer) == std::mem::discriminant(reader)
                && writer.name().is_none() =>
            {
                Ok(value)
            }
            _ => Ok(value.resolve_with_names(reader, &self.reader_names)?),
        }
    }

    /// The reader's branch for a value the writer wrote with `writer`: the
    /// one of the same name, or for unnamed types of the same kind.
    fn branch(
        &self,
        writer: &'static Schema,
        reader: &'static UnionSchema,
    ) -> Result<(usize, &'static Schema), CodecError> {
        reader
            .variants()
            .iter()
            .enumerate()
            .find(|(_, branch)| {
                let branch = self.reader_def(branch);
                match (writer.name(), branch.name()) {
                    (Some(w), Some(r)) => w.name() == r.name(),
                    (None, None) => {
                        std::mem::discriminant(writer) == std::mem::discriminant(branch)
                    }
                    _ => false,
                }
            })
            .ok_or_else(|| {
                CodecError::Avro(format!(
                    "resolving: the reader's union has no branch for {:?}",
                    writer.name().map_or("an unnamed type", |n| n.name())
                ))
            })
    }

    /// A field the writer did not have: the reader's default (for a union,
    /// a value of its first branch).
    fn default(&self, field: &'static RecordField) -> Result<Value, CodecError> {
        let json = field.default.clone().ok_or_else(|| {
            CodecError::Avro(format!(
                "resolving: field {} is not written and has no default",
                field.name
            ))
        })?;
        let value = Value::try_from(json)?;
        match self.reader_def(&field.schema) {
            Schema::Union(u) => {
                let first = u.variants().first().ok_or_else(|| {
                    CodecError::Avro(format!("resolving: field {} is an empty union", field.name))
                })?;
                let inner = value.resolve_with_names(first, &self.reader_names)?;
                Ok(Value::Union(0, Box::new(inner)))
            }
            schema => Ok(value.resolve_with_names(schema, &self.reader_names)?),
        }
    }
}

/// A named reference's definition; any other schema as it is.
fn named(schema: &'static Schema, names: &NamesRef<'static>) -> &'static Schema {
    match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        other => other,
    }
}
