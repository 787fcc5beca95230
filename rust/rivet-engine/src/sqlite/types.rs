//! SQLite declared types (or `columns:` overrides) mapped to exact Arrow types.
//!
//! SQLite stores any value in any column, so the declared type is a promise
//! the reader checks value by value.

use arrow_schema::{DataType, TimeUnit};

use crate::metadata::ArrowKind;

/// How a SQLite column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteKind {
    /// INTEGER affinity.
    Int64,
    /// REAL affinity.
    Float64,
    /// TEXT affinity.
    Text,
    /// BLOB.
    Binary,
    /// BOOLEAN: integers 0 and 1.
    Bool,
    /// DATE: `YYYY-MM-DD` text.
    Date,
    /// DATETIME / TIMESTAMP: ISO-8601 text without offset.
    Timestamp,
    /// DECIMAL(p,s) / NUMERIC(p,s).
    Decimal(u8, i8),
}

impl ArrowKind for SqliteKind {
    fn data_type(&self) -> DataType {
        match *self {
            SqliteKind::Int64 => DataType::Int64,
            SqliteKind::Float64 => DataType::Float64,
            SqliteKind::Text => DataType::Utf8,
            SqliteKind::Binary => DataType::Binary,
            SqliteKind::Bool => DataType::Boolean,
            SqliteKind::Date => DataType::Date32,
            SqliteKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqliteKind::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }
}

fn decimal_args(decl: &str) -> Option<(u8, i8)> {
    let inner = decl.split_once('(')?.1.split_once(')')?.0;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    let p: u8 = p.trim().parse().ok()?;
    let s: i8 = s.trim().parse().ok()?;
    (1..=38).contains(&p).then_some(())?;
    (0..=p as i8).contains(&s).then_some((p, s))
}

/// Map a declared type (SQLite's affinity rules, made strict), or `None` if it has no exact mapping.
pub fn kind_from_decl(decl: &str) -> Option<SqliteKind> {
    let upper = decl.trim().to_ascii_uppercase();
    let has = |s: &str| upper.contains(s);
    if has("BOOL") {
        Some(SqliteKind::Bool)
    } else if has("INT") {
        Some(SqliteKind::Int64)
    } else if has("CHAR")
        || has("CLOB")
        || has("TEXT")
        || upper == "STRING"
        || upper == "JSON"
        || upper == "UUID"
    {
        Some(SqliteKind::Text)
    } else if has("BLOB") || upper == "BINARY" || upper == "BYTEA" || upper == "VARBINARY" {
        Some(SqliteKind::Binary)
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Some(SqliteKind::Float64)
    } else if has("DATETIME") || has("TIMESTAMP") {
        Some(SqliteKind::Timestamp)
    } else if upper == "DATE" {
        Some(SqliteKind::Date)
    } else if has("DEC") || has("NUMERIC") {
        decimal_args(&upper).map(|(p, s)| SqliteKind::Decimal(p, s))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinities() {
        assert_eq!(kind_from_decl("INTEGER"), Some(SqliteKind::Int64));
        assert_eq!(kind_from_decl("bigint"), Some(SqliteKind::Int64));
        assert_eq!(kind_from_decl("VARCHAR(20)"), Some(SqliteKind::Text));
        assert_eq!(
            kind_from_decl("double precision"),
            Some(SqliteKind::Float64)
        );
        assert_eq!(kind_from_decl("BOOLEAN"), Some(SqliteKind::Bool));
        assert_eq!(kind_from_decl("DATE"), Some(SqliteKind::Date));
        assert_eq!(kind_from_decl("DATETIME"), Some(SqliteKind::Timestamp));
        assert_eq!(
            kind_from_decl("DECIMAL(10,2)"),
            Some(SqliteKind::Decimal(10, 2))
        );
        assert_eq!(kind_from_decl("NUMERIC"), None);
        assert_eq!(kind_from_decl(""), None);
    }
}
