//! Field metadata keys that every exported column carries.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// The column's type as the source database names it, e.g. `numeric(15,2)`.
pub const SOURCE_TYPE: &str = "rivet.source_type";
/// A logical meaning the Arrow type alone does not carry: json, uuid, enum, interval.
pub const LOGICAL_TYPE: &str = "rivet.logical_type";

/// Metadata map for one field.
pub fn field_metadata(source_type: &str, logical: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::from([(SOURCE_TYPE.to_string(), source_type.to_string())]);
    if let Some(l) = logical {
        m.insert(LOGICAL_TYPE.to_string(), l.to_string());
    }
    m
}

/// A source type's Arrow type.
pub trait ArrowKind {
    /// The Arrow type values of this kind become.
    fn data_type(&self) -> DataType;
}

/// A result column mapped to Arrow: its name, the decoder its kind selects, and the type
/// as the source names it.
#[derive(Debug, Clone)]
pub struct Column<K> {
    /// Name in the result.
    pub name: String,
    /// Decoder.
    pub kind: K,
    /// Source type text, e.g. `numeric(15,2)` or `int unsigned`.
    pub source_type: String,
    /// Logical meaning the Arrow type alone does not carry (json, uuid, enum, interval).
    pub logical: Option<&'static str>,
}

impl<K: ArrowKind> Column<K> {
    /// The nullable Arrow field, carrying the source type (and logical meaning) as metadata.
    pub fn field(&self) -> Field {
        Field::new(&self.name, self.kind.data_type(), true)
            .with_metadata(field_metadata(&self.source_type, self.logical))
    }
}

/// The Arrow schema of mapped columns; every field carries its source type.
pub fn arrow_schema<K: ArrowKind>(columns: &[Column<K>]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(Column::field).collect::<Vec<_>>(),
    ))
}
