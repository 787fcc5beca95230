//! MySQL/MariaDB column definitions mapped to exact Arrow types, or refused.

use arrow_schema::{DataType, TimeUnit};

use crate::error::UnsupportedColumn;
use crate::metadata::{ArrowKind, Column};
use crate::mysql::wire::ColumnDef;

/// Field type codes of the protocol and the binary log.
pub mod code {
    #![allow(missing_docs)]
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    // Only in the binary log: the temporal types with fractional seconds.
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

const UNSIGNED: u16 = 32;
const ENUM_FLAG: u16 = 256;
const SET_FLAG: u16 = 2048;
const BINARY_CHARSET: u16 = 63;

/// How a MySQL column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MyKind {
    /// TINYINT(1) / BOOL and BIT(1): 0 or 1.
    Bool,
    /// Signed integers of 1, 2, 4 or 8 bytes on the wire.
    Int8,
    /// SMALLINT, YEAR.
    Int16,
    /// MEDIUMINT, INT.
    Int32,
    /// BIGINT.
    Int64,
    /// TINYINT UNSIGNED.
    UInt8,
    /// SMALLINT UNSIGNED.
    UInt16,
    /// MEDIUMINT / INT UNSIGNED.
    UInt32,
    /// BIGINT UNSIGNED.
    UInt64,
    /// FLOAT.
    Float32,
    /// DOUBLE.
    Float64,
    /// DECIMAL(p,s), sent as text.
    Decimal(u8, i8),
    /// Text in utf8mb4 (CHAR, VARCHAR, TEXT, ENUM, SET, JSON).
    Text,
    /// Bytes (BINARY, VARBINARY, BLOB).
    Binary,
    /// DATE.
    Date,
    /// DATETIME (no time zone).
    DateTime,
    /// TIMESTAMP (read in UTC).
    Timestamp,
    /// TIME: a signed duration, may exceed 24 hours.
    Time,
    /// BIT(n > 1), as an unsigned integer.
    Bits,
}

impl ArrowKind for MyKind {
    fn data_type(&self) -> DataType {
        match *self {
            MyKind::Bool => DataType::Boolean,
            MyKind::Int8 => DataType::Int8,
            MyKind::Int16 => DataType::Int16,
            MyKind::Int32 => DataType::Int32,
            MyKind::Int64 => DataType::Int64,
            MyKind::UInt8 => DataType::UInt8,
            MyKind::UInt16 => DataType::UInt16,
            MyKind::UInt32 => DataType::UInt32,
            MyKind::UInt64 | MyKind::Bits => DataType::UInt64,
            MyKind::Float32 => DataType::Float32,
            MyKind::Float64 => DataType::Float64,
            MyKind::Decimal(p, s) if p <= 38 => DataType::Decimal128(p, s),
            MyKind::Decimal(p, s) => DataType::Decimal256(p, s),
            MyKind::Text => DataType::Utf8,
            MyKind::Binary => DataType::Binary,
            MyKind::Date => DataType::Date32,
            MyKind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            MyKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            MyKind::Time => DataType::Duration(TimeUnit::Microsecond),
        }
    }
}

/// A result column mapped to Arrow.
pub type MyColumn = Column<MyKind>;

fn type_name(c: &ColumnDef) -> String {
    if let Some(named @ ("json" | "uuid")) = c.extended.as_deref() {
        return named.into();
    }
    let numeric = matches!(
        c.type_code,
        code::TINY
            | code::SHORT
            | code::INT24
            | code::LONG
            | code::LONGLONG
            | code::FLOAT
            | code::DOUBLE
            | code::DECIMAL
            | code::NEWDECIMAL
    );
    let unsigned = if numeric && c.flags & UNSIGNED != 0 {
        " unsigned"
    } else {
        ""
    };
    let base = match c.type_code {
        code::TINY if c.length == 1 => "tinyint(1)".to_string(),
        code::TINY => "tinyint".into(),
        code::SHORT => "smallint".into(),
        code::INT24 => "mediumint".into(),
        code::LONG => "int".into(),
        code::LONGLONG => "bigint".into(),
        code::FLOAT => "float".into(),
        code::DOUBLE => "double".into(),
        code::DECIMAL | code::NEWDECIMAL => {
            let (p, s) = decimal_shape(c);
            format!("decimal({p},{s})")
        }
        code::DATE | code::NEWDATE => "date".into(),
        code::DATETIME => datetime_name("datetime", c.decimals),
        code::TIMESTAMP => datetime_name("timestamp", c.decimals),
        code::TIME => datetime_name("time", c.decimals),
        code::YEAR => "year".into(),
        code::BIT => format!("bit({})", c.length),
        code::JSON => "json".into(),
        code::GEOMETRY => "geometry".into(),
        code::NULL => "null".into(),
        _ if c.flags & ENUM_FLAG != 0 => "enum".into(),
        _ if c.flags & SET_FLAG != 0 => "set".into(),
        code::TINY_BLOB | code::MEDIUM_BLOB | code::LONG_BLOB | code::BLOB => {
            if c.charset == BINARY_CHARSET {
                "blob"
            } else {
                "text"
            }
            .into()
        }
        code::STRING => if c.charset == BINARY_CHARSET {
            "binary"
        } else {
            "char"
        }
        .into(),
        _ => if c.charset == BINARY_CHARSET {
            "varbinary"
        } else {
            "varchar"
        }
        .into(),
    };
    format!("{base}{unsigned}")
}

fn datetime_name(base: &str, decimals: u8) -> String {
    if decimals > 0 && decimals <= 6 {
        format!("{base}({decimals})")
    } else {
        base.into()
    }
}

/// DECIMAL precision and scale from the wire: the display length counts the sign and the point.
pub fn decimal_shape(c: &ColumnDef) -> (u32, u32) {
    let scale = u32::from(c.decimals);
    let signed = u32::from(c.flags & UNSIGNED == 0);
    let point = u32::from(scale > 0);
    (c.length.saturating_sub(signed + point), scale)
}

/// Map one column; `decimal` is a `columns:` decimal(p,s) override for it.
pub fn map_column(c: &ColumnDef, decimal: Option<(u8, i8)>) -> Result<MyColumn, UnsupportedColumn> {
    let unsigned = c.flags & UNSIGNED != 0;
    let refuse = |hint: String| UnsupportedColumn {
        column: c.name.clone(),
        source_type: type_name(c),
        hint,
    };
    let cast_hint = || {
        format!(
            "cast it in SQL (CAST(`{}` AS CHAR)) or set columns: {{{}: text}}",
            c.name, c.name
        )
    };
    let mut logical = None;
    let kind = match c.type_code {
        code::TINY if c.length == 1 && !unsigned => MyKind::Bool,
        code::TINY => {
            if unsigned {
                MyKind::UInt8
            } else {
                MyKind::Int8
            }
        }
        code::SHORT => {
            if unsigned {
                MyKind::UInt16
            } else {
                MyKind::Int16
            }
        }
        code::YEAR => MyKind::Int16,
        code::INT24 | code::LONG => {
            if unsigned {
                MyKind::UInt32
            } else {
                MyKind::Int32
            }
        }
        code::LONGLONG => {
            if unsigned {
                MyKind::UInt64
            } else {
                MyKind::Int64
            }
        }
        code::FLOAT => MyKind::Float32,
        code::DOUBLE => MyKind::Float64,
        code::DECIMAL | code::NEWDECIMAL => {
            let (p, s) = match decimal {
                Some((p, s)) => (u32::from(p), s.max(0) as u32),
                None => decimal_shape(c),
            };
            if p == 0 || p > 76 || s > p {
                return Err(refuse(format!(
                    "decimal({p},{s}) is out of range; set columns: {{{}: \"decimal(P,S)\"}}",
                    c.name
                )));
            }
            MyKind::Decimal(p as u8, s as i8)
        }
        code::DATE | code::NEWDATE => MyKind::Date,
        code::DATETIME => MyKind::DateTime,
        code::TIMESTAMP => MyKind::Timestamp,
        code::TIME => MyKind::Time,
        code::BIT if c.length == 1 => MyKind::Bool,
        code::BIT => MyKind::Bits,
        code::JSON => {
            logical = Some("json");
            MyKind::Text
        }
        code::GEOMETRY => {
            return Err(refuse(format!(
                "cast it in SQL (ST_AsText(`{}`) or ST_AsBinary(`{}`)) or set columns: {{{}: text}} (WKT)",
                c.name, c.name, c.name
            )));
        }
        code::NULL => {
            return Err(refuse(format!(
                "the column has no type (a NULL literal); {}",
                cast_hint()
            )));
        }
        code::ENUM | code::SET => {
            logical = Some("enum");
            MyKind::Text
        }
        code::STRING
        | code::VAR_STRING
        | code::VARCHAR
        | code::TINY_BLOB
        | code::MEDIUM_BLOB
        | code::LONG_BLOB
        | code::BLOB => {
            if c.flags & (ENUM_FLAG | SET_FLAG) != 0 {
                logical = Some("enum");
                MyKind::Text
            } else if let Some(named @ ("json" | "uuid")) = c.extended.as_deref() {
                // MariaDB's JSON is a LONGTEXT and its UUID a CHAR(36): the extended type info says which.
                logical = Some(if named == "json" { "json" } else { "uuid" });
                MyKind::Text
            } else if c.charset == BINARY_CHARSET {
                MyKind::Binary
            } else {
                MyKind::Text
            }
        }
        _ => return Err(refuse(cast_hint())),
    };
    if decimal.is_some() && !matches!(c.type_code, code::DECIMAL | code::NEWDECIMAL) {
        return Err(refuse(
            "a decimal(p,s) override applies only to DECIMAL columns".into(),
        ));
    }
    Ok(MyColumn {
        name: c.name.clone(),
        kind,
        source_type: type_name(c),
        logical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(type_code: u8, length: u32, flags: u16, decimals: u8, charset: u16) -> ColumnDef {
        ColumnDef {
            origin: None,
            name: "c".into(),
            charset,
            length,
            type_code,
            flags,
            decimals,
            extended: None,
        }
    }

    #[test]
    fn mariadbs_extended_type_info_names_json_and_uuid() {
        let mut json = col(code::BLOB, 4_294_967_295, 0, 0, 45);
        json.extended = Some("json".into());
        let mapped = map_column(&json, None).unwrap();
        assert_eq!((mapped.kind, mapped.logical), (MyKind::Text, Some("json")));
        assert_eq!(mapped.source_type, "json");
        let mut uuid = col(code::STRING, 144, 0, 0, 45);
        uuid.extended = Some("uuid".into());
        let mapped = map_column(&uuid, None).unwrap();
        assert_eq!((mapped.kind, mapped.logical), (MyKind::Text, Some("uuid")));
        let mut other = col(code::STRING, 156, 0, 0, 45);
        other.extended = Some("inet6".into());
        assert_eq!(map_column(&other, None).unwrap().logical, None);
    }

    #[test]
    fn shapes() {
        assert_eq!(
            map_column(&col(code::NEWDECIMAL, 17, 0, 2, 63), None)
                .unwrap()
                .kind,
            MyKind::Decimal(15, 2)
        );
        assert_eq!(
            map_column(&col(code::NEWDECIMAL, 66, 32, 30, 63), None)
                .unwrap()
                .kind,
            MyKind::Decimal(65, 30)
        );
        assert_eq!(
            map_column(&col(code::NEWDECIMAL, 11, 0, 0, 63), None)
                .unwrap()
                .kind,
            MyKind::Decimal(10, 0)
        );
        assert_eq!(
            map_column(&col(code::TINY, 1, 0, 0, 63), None)
                .unwrap()
                .kind,
            MyKind::Bool
        );
        assert_eq!(
            map_column(&col(code::LONGLONG, 20, 32, 0, 63), None)
                .unwrap()
                .kind,
            MyKind::UInt64
        );
        assert_eq!(
            map_column(&col(code::BLOB, 65535, 16 | 128, 0, 63), None)
                .unwrap()
                .kind,
            MyKind::Binary
        );
        assert_eq!(
            map_column(&col(code::BLOB, 65535, 16, 0, 45), None)
                .unwrap()
                .kind,
            MyKind::Text
        );
        assert!(
            map_column(&col(code::GEOMETRY, 0, 0, 0, 63), None)
                .unwrap_err()
                .hint
                .contains("ST_AsText")
        );
    }
}
