//! Mapping PostgreSQL result columns to exact Arrow types, or refusing them.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};

use crate::error::UnsupportedColumn;
use crate::metadata::ArrowKind;
use crate::pg::catalog::{TypeInfo, TypeKind};

/// Built-in type OIDs (fixed across PostgreSQL versions).
pub mod oid {
    #![allow(missing_docs)]
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// How a PostgreSQL column is decoded; each maps to exactly one Arrow type.
#[derive(Debug, Clone, PartialEq)]
pub enum PgKind {
    /// bool
    Bool,
    /// int2
    Int2,
    /// int4
    Int4,
    /// int8
    Int8,
    /// oid (unsigned 32-bit, widened to int64)
    Oid,
    /// float4
    Float4,
    /// float8
    Float8,
    /// numeric with a known precision and scale (as exported; scale >= 0)
    Numeric {
        /// Arrow decimal precision.
        precision: u8,
        /// Arrow decimal scale.
        scale: i8,
    },
    /// Anything whose binary form is UTF-8 text: text, varchar, bpchar, name, citext, enum, json.
    Text,
    /// jsonb (a version byte, then text)
    Jsonb,
    /// bytea
    Bytea,
    /// date
    Date,
    /// time without time zone
    Time,
    /// timestamp without time zone
    Timestamp,
    /// timestamp with time zone (stored as UTC)
    Timestamptz,
    /// interval, as a struct of months, days and microseconds
    Interval,
    /// uuid, as its canonical lowercase text
    Uuid,
    /// one-dimensional array
    List(Box<PgKind>),
}

/// The decimal width at which Arrow needs 256-bit storage.
pub const DECIMAL128_MAX_PRECISION: u8 = 38;
/// The widest decimal Arrow can hold.
pub const DECIMAL256_MAX_PRECISION: u8 = 76;

impl ArrowKind for PgKind {
    fn data_type(&self) -> DataType {
        match self {
            PgKind::Bool => DataType::Boolean,
            PgKind::Int2 => DataType::Int16,
            PgKind::Int4 => DataType::Int32,
            PgKind::Int8 | PgKind::Oid => DataType::Int64,
            PgKind::Float4 => DataType::Float32,
            PgKind::Float8 => DataType::Float64,
            PgKind::Numeric { precision, scale } if *precision <= DECIMAL128_MAX_PRECISION => {
                DataType::Decimal128(*precision, *scale)
            }
            PgKind::Numeric { precision, scale } => DataType::Decimal256(*precision, *scale),
            PgKind::Text | PgKind::Jsonb | PgKind::Uuid => DataType::Utf8,
            PgKind::Bytea => DataType::Binary,
            PgKind::Date => DataType::Date32,
            PgKind::Time => DataType::Time64(TimeUnit::Microsecond),
            PgKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgKind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgKind::Interval => DataType::Struct(interval_fields()),
            PgKind::List(inner) => {
                DataType::List(Arc::new(Field::new("item", inner.data_type(), true)))
            }
        }
    }
}

/// The struct an interval becomes: exact, and storable in Parquet.
pub fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("microseconds", DataType::Int64, false),
    ])
}

/// A mapped column: how to decode it and what logical meaning it carries.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The decoder.
    pub kind: PgKind,
    /// json, uuid, enum or interval (of the element, for arrays).
    pub logical: Option<&'static str>,
}

/// Precision and scale packed in a numeric typmod, or `None` when unconstrained.
pub fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    // Since PostgreSQL 15 the scale is an 11-bit signed field.
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

/// The exact Arrow decimal for numeric(p,s): a negative scale becomes scale 0 with
/// the extra integer digits, a scale above the precision widens the precision.
pub fn decimal_for(precision: i32, scale: i32) -> Option<PgKind> {
    let (p, s) = if scale < 0 {
        (precision - scale, 0)
    } else {
        (precision.max(scale), scale)
    };
    if p < 1 || p > i32::from(DECIMAL256_MAX_PRECISION) {
        return None;
    }
    Some(PgKind::Numeric {
        precision: p as u8,
        scale: s as i8,
    })
}

fn cast_hint(column: &str) -> String {
    format!("cast it in SQL (\"{column}\"::text) or set columns: {{{column}: text}}")
}

/// Map one column. `decimal_override` is a `columns:` entry `decimal(p,s)` for it.
pub fn map_column(
    column: &str,
    ty: &TypeInfo,
    typmod: i32,
    decimal_override: Option<(u8, i8)>,
) -> Result<Mapped, UnsupportedColumn> {
    let unsupported = |hint: String| UnsupportedColumn {
        column: column.to_string(),
        source_type: ty.name.clone(),
        hint,
    };
    if let Some((p, s)) = decimal_override {
        return match base_type(ty).oid {
            oid::NUMERIC => Ok(Mapped {
                kind: PgKind::Numeric {
                    precision: p,
                    scale: s,
                },
                logical: None,
            }),
            _ => Err(unsupported(format!(
                "a decimal({p},{s}) override applies only to numeric columns"
            ))),
        };
    }
    if let TypeKind::Array(element) = &ty.kind {
        if matches!(element.kind, TypeKind::Array(_)) {
            return Err(unsupported(cast_hint(column)));
        }
        // An array column's typmod is its elements' (numeric(10,2)[] carries numeric(10,2)).
        let inner = map_scalar(column, element, typmod).map_err(|mut u| {
            u.source_type = format!("{}[]", element.name);
            if base_type(element).oid == oid::NUMERIC {
                u.hint = format!(
                    "arrays of unconstrained numeric have no declared scale; {}",
                    cast_hint(column)
                );
            }
            u
        })?;
        return Ok(Mapped {
            kind: PgKind::List(Box::new(inner.kind)),
            logical: inner.logical,
        });
    }
    map_scalar(column, ty, typmod)
}

fn base_type(ty: &TypeInfo) -> &TypeInfo {
    match &ty.kind {
        TypeKind::Domain(base, _) => base_type(base),
        _ => ty,
    }
}

fn map_scalar(column: &str, ty: &TypeInfo, typmod: i32) -> Result<Mapped, UnsupportedColumn> {
    let plain = |kind| {
        Ok(Mapped {
            kind,
            logical: None,
        })
    };
    let tagged = |kind, logical| {
        Ok(Mapped {
            kind,
            logical: Some(logical),
        })
    };
    match &ty.kind {
        TypeKind::Enum => return tagged(PgKind::Text, "enum"),
        TypeKind::Domain(base, domain_typmod) => {
            return map_scalar(
                column,
                base,
                if typmod >= 0 { typmod } else { *domain_typmod },
            );
        }
        TypeKind::Base => {}
        TypeKind::Array(_) | TypeKind::Other => {
            return Err(UnsupportedColumn {
                column: column.to_string(),
                source_type: ty.name.clone(),
                hint: cast_hint(column),
            });
        }
    }
    match ty.oid {
        oid::BOOL => plain(PgKind::Bool),
        oid::INT2 => plain(PgKind::Int2),
        oid::INT4 => plain(PgKind::Int4),
        oid::INT8 => plain(PgKind::Int8),
        oid::OID => plain(PgKind::Oid),
        oid::FLOAT4 => plain(PgKind::Float4),
        oid::FLOAT8 => plain(PgKind::Float8),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => plain(PgKind::Text),
        oid::JSON => tagged(PgKind::Text, "json"),
        oid::JSONB => tagged(PgKind::Jsonb, "json"),
        oid::BYTEA => plain(PgKind::Bytea),
        oid::DATE => plain(PgKind::Date),
        oid::TIME => plain(PgKind::Time),
        oid::TIMESTAMP => plain(PgKind::Timestamp),
        oid::TIMESTAMPTZ => plain(PgKind::Timestamptz),
        oid::INTERVAL => tagged(PgKind::Interval, "interval"),
        oid::UUID => tagged(PgKind::Uuid, "uuid"),
        oid::NUMERIC => match numeric_typmod(typmod) {
            Some((p, s)) => match decimal_for(p, s) {
                Some(kind) => plain(kind),
                None => Err(UnsupportedColumn {
                    column: column.to_string(),
                    source_type: format!("numeric({p},{s})"),
                    hint: format!("wider than 76 digits; {}", cast_hint(column)),
                }),
            },
            None => Err(UnsupportedColumn {
                column: column.to_string(),
                source_type: "numeric".into(),
                hint: format!(
                    "unconstrained numeric has no declared precision and scale; set \
                     columns: {{{column}: \"decimal(P,S)\"}} wide enough for the data \
                     (a value that does not fit fails the export, it is never rounded), \
                     or columns: {{{column}: text}}"
                ),
            }),
        },
        _ if ty.name == "citext" => plain(PgKind::Text),
        _ => Err(UnsupportedColumn {
            column: column.to_string(),
            source_type: ty.name.clone(),
            hint: cast_hint(column),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn numeric_typmod_round_trips() {
        assert_eq!(numeric_typmod(typmod(15, 2)), Some((15, 2)));
        assert_eq!(numeric_typmod(typmod(5, -2)), Some((5, -2)));
        assert_eq!(numeric_typmod(-1), None);
    }

    #[test]
    fn decimal_widths() {
        assert_eq!(
            decimal_for(15, 2),
            Some(PgKind::Numeric {
                precision: 15,
                scale: 2
            })
        );
        assert_eq!(
            decimal_for(5, -2),
            Some(PgKind::Numeric {
                precision: 7,
                scale: 0
            })
        );
        assert_eq!(
            decimal_for(2, 3),
            Some(PgKind::Numeric {
                precision: 3,
                scale: 3
            })
        );
        assert_eq!(decimal_for(1000, 0), None);
        assert_eq!(
            PgKind::Numeric {
                precision: 39,
                scale: 0
            }
            .data_type(),
            DataType::Decimal256(39, 0)
        );
    }

    fn base(oid: u32, name: &str) -> TypeInfo {
        TypeInfo {
            oid,
            name: name.into(),
            kind: TypeKind::Base,
        }
    }

    #[test]
    fn unconstrained_numeric_is_refused_with_a_hint() {
        let numeric = base(oid::NUMERIC, "numeric");
        let err = map_column("amount", &numeric, -1, None).expect_err("refused");
        assert!(err.hint.contains("decimal(P,S)"), "{}", err.hint);
        let ok = map_column("amount", &numeric, -1, Some((20, 4))).expect("override");
        assert_eq!(
            ok.kind,
            PgKind::Numeric {
                precision: 20,
                scale: 4
            }
        );
    }

    #[test]
    fn unsupported_types_name_a_cast() {
        let err = map_column("addr", &base(869, "inet"), -1, None).expect_err("refused");
        assert_eq!(err.source_type, "inet");
        assert!(err.hint.contains("\"addr\"::text"));
        let int4s = TypeInfo {
            oid: 1007,
            name: "_int4".into(),
            kind: TypeKind::Array(Box::new(base(oid::INT4, "int4"))),
        };
        let arr = map_column("xs", &int4s, -1, None).expect("array");
        assert_eq!(arr.kind, PgKind::List(Box::new(PgKind::Int4)));
    }

    #[test]
    fn domains_use_their_base_and_typmod() {
        let money2 = TypeInfo {
            oid: 90000,
            name: "money2".into(),
            kind: TypeKind::Domain(Box::new(base(oid::NUMERIC, "numeric")), typmod(10, 2)),
        };
        let m = map_column("m", &money2, -1, None).expect("domain");
        assert_eq!(
            m.kind,
            PgKind::Numeric {
                precision: 10,
                scale: 2
            }
        );
    }
}
