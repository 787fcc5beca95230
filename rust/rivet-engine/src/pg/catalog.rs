//! Type information from the server's catalog: what each result type OID is
//! (base type, enum, domain, array), and how the server names it.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::pg::wire::{FieldDesc, PgConnection};

/// What a type OID stands for.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// The OID.
    pub oid: u32,
    /// `pg_type.typname`.
    pub name: String,
    /// Its shape.
    pub kind: TypeKind,
}

/// The shape of a type.
#[derive(Debug, Clone)]
pub enum TypeKind {
    /// A base type, decided by its OID (or name, for extension types such as citext).
    Base,
    /// An enum: values travel as their label.
    Enum,
    /// A domain over another type, with the domain's own typmod.
    Domain(Box<TypeInfo>, i32),
    /// An array of the element type.
    Array(Box<TypeInfo>),
    /// Composite, range, pseudo and other types rivet does not export.
    Other,
}

struct Row {
    name: String,
    typtype: String,
    category: String,
    elem: u32,
    base: u32,
    typmod: i32,
}

fn field(row: &[Option<String>], i: usize) -> Result<&str> {
    row.get(i)
        .and_then(|v| v.as_deref())
        .ok_or_else(|| Error::Io("unexpected NULL in the type catalog".into()))
}

fn num<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| Error::Io(format!("unexpected value '{text}' in the type catalog")))
}

/// Look up `oids` and every type they refer to, in one round trip.
pub fn resolve_types(conn: &mut PgConnection, oids: &[u32]) -> Result<HashMap<u32, TypeInfo>> {
    if oids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = oids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "WITH RECURSIVE t(oid) AS ( \
           SELECT unnest('{{{list}}}'::oid[]) \
           UNION \
           SELECT x.ref FROM pg_type p JOIN t ON p.oid = t.oid \
             CROSS JOIN LATERAL (VALUES (p.typelem), (p.typbasetype)) AS x(ref) WHERE x.ref <> 0) \
         SELECT p.oid, p.typname, p.typtype, p.typcategory, p.typelem, p.typbasetype, p.typtypmod \
         FROM pg_type p JOIN t ON p.oid = t.oid"
    );
    let mut rows = HashMap::new();
    for r in conn.query(&sql)? {
        rows.insert(
            num::<u32>(field(&r, 0)?)?,
            Row {
                name: field(&r, 1)?.to_string(),
                typtype: field(&r, 2)?.to_string(),
                category: field(&r, 3)?.to_string(),
                elem: num(field(&r, 4)?)?,
                base: num(field(&r, 5)?)?,
                typmod: num(field(&r, 6)?)?,
            },
        );
    }
    let mut out = HashMap::new();
    for &oid in oids {
        out.insert(oid, build(oid, &rows, 0)?);
    }
    Ok(out)
}

fn build(oid: u32, rows: &HashMap<u32, Row>, depth: usize) -> Result<TypeInfo> {
    let row = rows
        .get(&oid)
        .ok_or_else(|| Error::Io(format!("type OID {oid} is not in pg_type")))?;
    if depth > 16 {
        return Err(Error::Io(format!("type {} nests too deeply", row.name)));
    }
    let kind = match (row.typtype.as_str(), row.category.as_str()) {
        ("e", _) => TypeKind::Enum,
        ("d", _) => TypeKind::Domain(Box::new(build(row.base, rows, depth + 1)?), row.typmod),
        ("b", "A") if row.elem != 0 => TypeKind::Array(Box::new(build(row.elem, rows, depth + 1)?)),
        ("b", _) => TypeKind::Base,
        _ => TypeKind::Other,
    };
    Ok(TypeInfo {
        oid,
        name: row.name.clone(),
        kind,
    })
}

/// The server's own spelling of each field's type, typmod included (`numeric(15,2)`).
pub fn format_types(conn: &mut PgConnection, fields: &[FieldDesc]) -> Result<Vec<String>> {
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let values = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("({i}, {}::oid, {})", f.type_oid, f.typmod))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT format_type(v.oid, NULLIF(v.mod, -1)) FROM (VALUES {values}) AS v(n, oid, mod) ORDER BY v.n"
    );
    conn.query(&sql)?
        .into_iter()
        .map(|r| field(&r, 0).map(str::to_string))
        .collect()
}
