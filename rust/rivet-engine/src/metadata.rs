//! Field metadata keys that every exported column carries.

use std::collections::HashMap;

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
