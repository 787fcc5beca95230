//! PostgreSQL: every type rivet reads, written in its binary form by `postgres-types`
//! (`rust_decimal` for numeric, `pg_interval` for interval), mapped by `map_column` and
//! read from a binary COPY stream, as a COPY scan reads it.

use std::error::Error as StdError;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use bytes::BytesMut;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use pg_interval::Interval;
use postgres_protocol::types::{ArrayDimension, array_to_sql, time_to_sql};
use postgres_types::{Date, IsNull, Kind, Timestamp, ToSql, Type, to_sql_checked};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{Cell, OVERFLOW, Refusal, assert_outcome, config, drain, json, unscaled};
use crate::batch::BatchLimits;
use crate::metadata::{ArrowKind, arrow_schema};
use crate::pg::batch::{PgBatchBuilder, PgColumn};
use crate::pg::catalog::{TypeInfo, TypeKind};
use crate::pg::tuple::CopyDecoder;
use crate::pg::types::{PgKind, map_column};
use crate::stream::{BatchStream, EndOfData};

/// A base type rivet reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Base {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// numeric(precision, scale) as declared: since PostgreSQL 15 the scale may be
    /// negative, or above the precision.
    Numeric(i32, i32),
    Text,
    Varchar,
    Bpchar,
    Name,
    Citext,
    Json,
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
}

/// An extension type's OID differs between databases; rivet knows citext by name.
const CITEXT_OID: u32 = 16_390;

impl Base {
    /// The type, for the encoder.
    fn ty(self) -> Type {
        match self {
            Base::Bool => Type::BOOL,
            Base::Int2 => Type::INT2,
            Base::Int4 => Type::INT4,
            Base::Int8 => Type::INT8,
            Base::Oid => Type::OID,
            Base::Float4 => Type::FLOAT4,
            Base::Float8 => Type::FLOAT8,
            Base::Numeric(..) => Type::NUMERIC,
            Base::Text => Type::TEXT,
            Base::Varchar => Type::VARCHAR,
            Base::Bpchar => Type::BPCHAR,
            Base::Name => Type::NAME,
            Base::Citext => Type::new("citext".into(), CITEXT_OID, Kind::Simple, "public".into()),
            Base::Json => Type::JSON,
            Base::Jsonb => Type::JSONB,
            Base::Bytea => Type::BYTEA,
            Base::Date => Type::DATE,
            Base::Time => Type::TIME,
            Base::Timestamp => Type::TIMESTAMP,
            Base::Timestamptz => Type::TIMESTAMPTZ,
            Base::Interval => Type::INTERVAL,
            Base::Uuid => Type::UUID,
        }
    }

    /// The typmod a result column of this type carries.
    fn typmod(self) -> i32 {
        match self {
            // PostgreSQL's packing: precision in the high half, an 11-bit scale, plus 4.
            Base::Numeric(p, s) => ((p << 16) | (s & 0x7ff)) + 4,
            _ => -1,
        }
    }
}

/// A column: a base type, or a one-dimensional array of it.
#[derive(Debug, Clone)]
struct Col {
    base: Base,
    array: bool,
    /// Whether some of its values have no Arrow equivalent.
    refusals: bool,
}

impl Col {
    fn ty(&self) -> Type {
        let base = self.base.ty();
        if self.array {
            let name = format!("_{}", base.name());
            Type::new(
                name,
                base.oid() + 100_000,
                Kind::Array(base),
                "pg_catalog".into(),
            )
        } else {
            base
        }
    }

    /// The Arrow type the README's table gives for the column.
    fn arrow_type(&self) -> DataType {
        let us = TimeUnit::Microsecond;
        let t = match self.base {
            Base::Bool => DataType::Boolean,
            Base::Int2 => DataType::Int16,
            Base::Int4 => DataType::Int32,
            Base::Int8 | Base::Oid => DataType::Int64,
            Base::Float4 => DataType::Float32,
            Base::Float8 => DataType::Float64,
            Base::Numeric(p, s) => {
                let (p, s) = arrow_decimal(p, s);
                let (p, s) = (
                    u8::try_from(p).expect("<= 76"),
                    i8::try_from(s).expect("<= 76"),
                );
                if p <= 38 {
                    DataType::Decimal128(p, s)
                } else {
                    DataType::Decimal256(p, s)
                }
            }
            Base::Text
            | Base::Varchar
            | Base::Bpchar
            | Base::Name
            | Base::Citext
            | Base::Json
            | Base::Jsonb
            | Base::Uuid => DataType::Utf8,
            Base::Bytea => DataType::Binary,
            Base::Date => DataType::Date32,
            Base::Time => DataType::Time64(us),
            Base::Timestamp => DataType::Timestamp(us, None),
            Base::Timestamptz => DataType::Timestamp(us, Some("UTC".into())),
            Base::Interval => DataType::Struct(Fields::from(vec![
                Field::new("months", DataType::Int32, false),
                Field::new("days", DataType::Int32, false),
                Field::new("microseconds", DataType::Int64, false),
            ])),
        };
        if self.array {
            DataType::List(Arc::new(Field::new("item", t, true)))
        } else {
            t
        }
    }

    /// The column as the catalog describes it, mapped as a scan maps it.
    fn mapped(&self, name: &str) -> PgColumn {
        let base = self.base.ty();
        let element = TypeInfo {
            oid: base.oid(),
            name: base.name().into(),
            kind: TypeKind::Base,
        };
        let info = if self.array {
            TypeInfo {
                oid: base.oid() + 100_000,
                name: format!("_{}", base.name()),
                kind: TypeKind::Array(Box::new(element)),
            }
        } else {
            element
        };
        let mapped = map_column(name, &info, self.base.typmod(), None)
            .unwrap_or_else(|u| panic!("{self:?} is refused: {}", u.hint));
        PgColumn {
            name: name.into(),
            kind: mapped.kind,
            source_type: info.name,
            logical: mapped.logical,
        }
    }
}

/// A value, in the Rust type its encoder takes.
#[derive(Debug, Clone)]
enum Val {
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Oid(u32),
    Float4(f32),
    Float8(f64),
    /// A numeric, and whether the column's declared numeric(p, s) holds it (a server
    /// sends nothing else for such a column; other values come through an override).
    Numeric(Decimal, bool),
    /// NaN or ±Infinity, which `rust_decimal` cannot hold.
    NumericSpecial(&'static [u8]),
    /// A numeric as PostgreSQL sent it, and its text: wider than `rust_decimal` holds.
    NumericSent(Vec<u8>, &'static str),
    Text(String),
    Json(serde_json::Value),
    Bytea(Vec<u8>),
    Date(Date<NaiveDate>),
    Time(NaiveTime),
    /// `24:00:00`, a valid time that chrono cannot hold.
    Midnight24,
    Timestamp(Timestamp<NaiveDateTime>),
    Timestamptz(Timestamp<DateTime<Utc>>),
    Interval(Interval),
    Uuid(Uuid),
    Array(Vec<Option<Val>>),
    /// An empty array as the server sends it: no dimensions (the encoder gives one of
    /// length 0).
    EmptyArray,
}

/// NaN, Infinity and -Infinity as PostgreSQL 15 sends them (`numeric_send`).
const NUMERIC_SPECIALS: [&[u8]; 3] = [
    &[0, 0, 0, 0, 0xc0, 0, 0, 0],
    &[0, 0, 0, 0, 0xd0, 0, 0, 0x20],
    &[0, 0, 0, 0, 0xf0, 0, 0, 0x20],
];

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Each value goes through its own type's checked encoder, which also checks
        // that it is the encoder for `ty`.
        match self {
            Val::Bool(v) => v.to_sql_checked(ty, out),
            Val::Int2(v) => v.to_sql_checked(ty, out),
            Val::Int4(v) => v.to_sql_checked(ty, out),
            Val::Int8(v) => v.to_sql_checked(ty, out),
            Val::Oid(v) => v.to_sql_checked(ty, out),
            Val::Float4(v) => v.to_sql_checked(ty, out),
            Val::Float8(v) => v.to_sql_checked(ty, out),
            Val::Numeric(v, _) => v.to_sql_checked(ty, out),
            Val::NumericSpecial(raw) => {
                out.extend_from_slice(raw);
                Ok(IsNull::No)
            }
            Val::NumericSent(raw, _) => {
                out.extend_from_slice(raw);
                Ok(IsNull::No)
            }
            Val::Text(v) => v.as_str().to_sql_checked(ty, out),
            Val::Json(v) => v.to_sql_checked(ty, out),
            Val::Bytea(v) => v.to_sql_checked(ty, out),
            Val::Date(v) => v.to_sql_checked(ty, out),
            Val::Time(v) => v.to_sql_checked(ty, out),
            Val::Midnight24 => {
                time_to_sql(86_400_000_000, out);
                Ok(IsNull::No)
            }
            Val::Timestamp(v) => v.to_sql_checked(ty, out),
            Val::Timestamptz(v) => v.to_sql_checked(ty, out),
            Val::Interval(v) => v.to_sql_checked(ty, out),
            Val::Uuid(v) => v.to_sql_checked(ty, out),
            Val::Array(v) => v.to_sql_checked(ty, out),
            Val::EmptyArray => {
                let Kind::Array(element) = ty.kind() else {
                    return Err("an empty array needs an array type".into());
                };
                let no_items = std::iter::empty::<Val>();
                array_to_sql(
                    std::iter::empty::<ArrayDimension>(),
                    element.oid(),
                    no_items,
                    |_, _| Ok(postgres_protocol::IsNull::No),
                    out,
                )?;
                Ok(IsNull::No)
            }
        }
    }

    // The variants check their types themselves.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn encode(value: &Val, ty: &Type) -> Vec<u8> {
    let mut out = BytesMut::new();
    match value.to_sql_checked(ty, &mut out) {
        Ok(IsNull::No) => out.to_vec(),
        Ok(IsNull::Yes) => panic!("{value:?} as {ty}: written as NULL"),
        Err(e) => panic!("{value:?} as {ty}: {e}"),
    }
}

// ---------------------------------------------------------------------------------
// What rivet must make of each value
// ---------------------------------------------------------------------------------

/// Values without an Arrow equivalent.
const NOT_FINITE: Refusal = &["cannot be stored in a decimal column"];
const INFINITY: Refusal = &["infinity"];

fn epoch_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")
}

/// A `rust_decimal` as the unscaled integer of decimal(precision, scale).
fn decimal_cell(d: &Decimal, precision: u8, scale: i8) -> Result<Cell, Refusal> {
    let m = d.mantissa();
    let digits = m.unsigned_abs().to_string();
    let frac_len = usize::try_from(d.scale()).expect("a small scale");
    let digits = format!("{digits:0>width$}", width = frac_len + 1);
    let (int, frac) = digits.split_at(digits.len() - frac_len);
    unscaled(m < 0, int, frac, precision, scale).map(Cell::Decimal)
}

/// The cell rivet must make of `value` in a column of `kind`, or how it must refuse it.
fn expect(value: &Val, kind: &PgKind) -> Result<Cell, Refusal> {
    Ok(match value {
        Val::Bool(v) => Cell::Bool(*v),
        Val::Int2(v) => Cell::Int((*v).into()),
        Val::Int4(v) => Cell::Int((*v).into()),
        Val::Int8(v) => Cell::Int((*v).into()),
        Val::Oid(v) => Cell::Int((*v).into()),
        Val::Float4(v) => Cell::Float(v.to_bits().into()),
        Val::Float8(v) => Cell::Float(v.to_bits()),
        Val::Numeric(d, _) => match kind {
            PgKind::Numeric { precision, scale } => decimal_cell(d, *precision, *scale)?,
            other => panic!("a numeric in a {other:?} column"),
        },
        Val::NumericSpecial(_) => return Err(NOT_FINITE),
        Val::NumericSent(_, text) => match kind {
            PgKind::Numeric { precision, scale } => {
                let (negative, t) = text.strip_prefix('-').map_or((false, *text), |t| (true, t));
                let (int, frac) = t.split_once('.').unwrap_or((t, ""));
                Cell::Decimal(unscaled(negative, int, frac, *precision, *scale)?)
            }
            other => panic!("a numeric in a {other:?} column"),
        },
        Val::Text(v) => Cell::Text(v.clone()),
        Val::Json(v) => Cell::Text(serde_json::to_string(v).expect("JSON text")),
        Val::Bytea(v) => Cell::Bytes(v.clone()),
        Val::Date(Date::Value(d)) => {
            Cell::Int(d.signed_duration_since(epoch_day()).num_days().into())
        }
        Val::Time(t) => Cell::Int(
            t.signed_duration_since(NaiveTime::MIN)
                .num_microseconds()
                .expect("within a day")
                .into(),
        ),
        Val::Midnight24 => Cell::Int(86_400_000_000),
        Val::Timestamp(Timestamp::Value(t)) => Cell::Int(t.and_utc().timestamp_micros().into()),
        Val::Timestamptz(Timestamp::Value(t)) => Cell::Int(t.timestamp_micros().into()),
        Val::Date(_) | Val::Timestamp(_) | Val::Timestamptz(_) => return Err(INFINITY),
        Val::Interval(i) => Cell::Interval {
            months: i.months,
            days: i.days,
            micros: i.microseconds,
        },
        Val::Uuid(u) => Cell::Text(u.hyphenated().to_string()),
        Val::Array(items) => {
            let PgKind::List(inner) = kind else {
                panic!("an array in a {kind:?} column")
            };
            let cells: Result<Vec<Cell>, _> = items
                .iter()
                .map(|item| item.as_ref().map_or(Ok(Cell::Null), |v| expect(v, inner)))
                .collect();
            Cell::List(cells?)
        }
        Val::EmptyArray => Cell::List(Vec::new()),
    })
}

/// Whether a value holds only numerics of the column's declared numeric(p, s), so the
/// decimal rivet maps the column to must hold it.
fn declared_numeric(value: &Val) -> bool {
    match value {
        Val::Numeric(_, fits) => *fits,
        Val::Array(items) => items.iter().flatten().all(declared_numeric),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------

fn ints<T: Arbitrary + Clone + std::fmt::Debug + 'static>(edges: Vec<T>) -> BoxedStrategy<T> {
    prop_oneof![3 => any::<T>(), 1 => select(edges)].boxed()
}

/// Decimal digits as text.
fn digits(n: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    vec(0u8..10, n)
        .prop_map(|d| d.iter().map(|d| char::from(b'0' + d)).collect())
        .boxed()
}

/// rust_decimal holds 28 digits for sure (its mantissa is 96 bits).
const DECIMAL_DIGITS: i32 = 28;

/// Values of numeric(p, s), within rust_decimal's digits: up to p - s digits before
/// the point (then -s zeros when the scale is negative), up to s after (the first s - p
/// of them zeros when the scale is above the precision), sometimes written with all s
/// decimals as the server stores them.
fn numeric_fitting(p: i32, s: i32) -> BoxedStrategy<Val> {
    let zeros = (-s).max(0);
    let lead = (s - p).max(0);
    let int_max = (p - s.max(0)).clamp(0, DECIMAL_DIGITS - zeros - lead);
    (0..=int_max)
        .prop_flat_map(move |a| {
            let frac_max = (s.max(0) - lead).clamp(0, DECIMAL_DIGITS - zeros - lead - a);
            (
                any::<bool>(),
                digits(a as usize..=a as usize),
                (0..=frac_max).prop_flat_map(|f| digits(f as usize..=f as usize)),
                any::<bool>(),
            )
        })
        .prop_map(move |(negative, int, frac, full_scale)| {
            let mut frac = format!("{}{frac}", "0".repeat(lead as usize));
            let width = s.max(0) as usize;
            if full_scale && int.len() + width <= DECIMAL_DIGITS as usize {
                frac = format!("{frac:0<width$}");
            }
            let int = if int.is_empty() { "0" } else { &int };
            let int = format!("{int}{}", "0".repeat(zeros as usize));
            let sign = if negative { "-" } else { "" };
            let text = if frac.is_empty() {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac}")
            };
            let d = Decimal::from_str_exact(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            Val::Numeric(d, true)
        })
        .boxed()
}

/// The decimal(precision, scale) rivet maps numeric(p, s) to (as the README says: a
/// negative scale adds integer digits, a scale above the precision widens it).
fn arrow_decimal(p: i32, s: i32) -> (i32, i32) {
    if s < 0 { (p - s, 0) } else { (p.max(s), s) }
}

fn numeric(mantissa: i128, scale: i32) -> Val {
    let scale = u32::try_from(scale).expect("a scale >= 0");
    Val::Numeric(Decimal::from_i128_with_scale(mantissa, scale), false)
}

/// Values of numeric(p, s), and the largest magnitudes its decimal holds.
fn numeric_values(p: i32, s: i32) -> BoxedStrategy<Val> {
    let (pp, ss) = arrow_decimal(p, s);
    if pp > DECIMAL_DIGITS {
        return numeric_fitting(p, s);
    }
    let largest = 10i128.pow(pp as u32) - 1;
    prop_oneof![
        8 => numeric_fitting(p, s),
        1 => any::<bool>().prop_map(move |neg| numeric(if neg { -largest } else { largest }, ss)),
    ]
    .boxed()
}

/// Values just outside the decimal rivet maps numeric(p, s) to, where rust_decimal
/// holds them: one nonzero digit past the scale, or one integer digit too many.
fn numeric_near_misses(p: i32, s: i32) -> Vec<BoxedStrategy<Val>> {
    let (pp, ss) = arrow_decimal(p, s);
    let signed = |m: i128, neg: bool| if neg { -m } else { m };
    let mut misses = Vec::new();
    if ss < DECIMAL_DIGITS {
        // A digit (often a 1, the smallest remainder) 1 to 4 places past the scale, so
        // it ends a base-10000 group of the wire form, or sits alone in one.
        let excess = (1..=(DECIMAL_DIGITS - ss).min(4))
            .prop_flat_map(move |j| {
                let k_max = 10i128.pow(pp.min(DECIMAL_DIGITS - j) as u32);
                (
                    any::<bool>(),
                    0..k_max,
                    prop_oneof![Just(1i128), 1i128..10],
                    Just(j),
                )
            })
            .prop_map(move |(neg, k, d, j)| {
                numeric(signed(k * 10i128.pow(j as u32) + d, neg), ss + j)
            });
        misses.push(excess.boxed());
    }
    let int = pp - ss + 1;
    if int <= DECIMAL_DIGITS {
        let f_max = ss.min(DECIMAL_DIGITS - int);
        let over = (any::<bool>(), 0..=f_max)
            .prop_flat_map(|(neg, f)| (Just(neg), Just(f), 0..10i128.pow(f as u32)))
            .prop_map(move |(neg, f, frac)| {
                numeric(signed(10i128.pow((pp - ss + f) as u32) + frac, neg), f)
            });
        misses.push(over.boxed());
    }
    misses
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![any::<String>(), "\\PC{0,300}"].boxed()
}

fn date() -> BoxedStrategy<Val> {
    let min = NaiveDate::MIN.num_days_from_ce();
    let max = NaiveDate::MAX.num_days_from_ce();
    let day = |d: i32| NaiveDate::from_num_days_from_ce_opt(d).expect("within chrono's range");
    let epoch = epoch_day().num_days_from_ce();
    prop_oneof![
        8 => (min..=max).prop_map(day),
        2 => select(vec![min, max, epoch - 1, epoch, epoch + 10_957, epoch + 10_956]).prop_map(day),
    ]
    .prop_map(|d| Val::Date(Date::Value(d)))
    .boxed()
}

/// Microseconds since 1970 that chrono can hold.
fn micros() -> BoxedStrategy<i64> {
    let min = NaiveDateTime::MIN.and_utc().timestamp_micros();
    let max = NaiveDateTime::MAX.and_utc().timestamp_micros();
    let y2000 = 946_684_800_000_000;
    prop_oneof![
        4 => min..=max,
        2 => -5_000_000_000_000_000i64..5_000_000_000_000_000,
        1 => select(vec![min, max, 0, -1, 1, y2000, y2000 - 1, y2000 + 1]),
    ]
    .boxed()
}

/// Times of day, and 24:00:00.
fn time_of_day() -> BoxedStrategy<Val> {
    let us = prop_oneof![4 => 0i64..86_400_000_000, 1 => select(vec![0, 1, 86_399_999_999])];
    let time = us.prop_map(|us| {
        let secs = u32::try_from(us / 1_000_000).expect("seconds of a day");
        let nanos = u32::try_from(us % 1_000_000).expect("micros") * 1000;
        Val::Time(NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).expect("a time"))
    });
    prop_oneof![10 => time, 1 => Just(Val::Midnight24)].boxed()
}

const F32_EDGES: [f32; 7] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -0.0,
    f32::MIN_POSITIVE,
    f32::MAX,
    1e-45,
];

const F64_EDGES: [f64; 7] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    f64::MIN_POSITIVE,
    f64::MAX,
    5e-324,
];

fn instant(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("within chrono's range")
}

fn values(base: Base) -> BoxedStrategy<Val> {
    match base {
        Base::Bool => any::<bool>().prop_map(Val::Bool).boxed(),
        Base::Int2 => ints(vec![i16::MIN, -1, 0, 1, i16::MAX])
            .prop_map(Val::Int2)
            .boxed(),
        Base::Int4 => ints(vec![i32::MIN, -1, 0, 1, i32::MAX])
            .prop_map(Val::Int4)
            .boxed(),
        Base::Int8 => ints(vec![i64::MIN, -1, 0, 1, i64::MAX])
            .prop_map(Val::Int8)
            .boxed(),
        Base::Oid => ints(vec![0, 1, u32::MAX]).prop_map(Val::Oid).boxed(),
        Base::Float4 => prop_oneof![3 => any::<f32>(), 1 => select(F32_EDGES.to_vec())]
            .prop_map(Val::Float4)
            .boxed(),
        Base::Float8 => prop_oneof![3 => any::<f64>(), 1 => select(F64_EDGES.to_vec())]
            .prop_map(Val::Float8)
            .boxed(),
        Base::Numeric(p, s) => numeric_values(p, s),
        Base::Text | Base::Varchar | Base::Bpchar | Base::Name | Base::Citext => {
            text().prop_map(Val::Text).boxed()
        }
        Base::Json | Base::Jsonb => json().prop_map(Val::Json).boxed(),
        Base::Bytea => vec(any::<u8>(), 0..64).prop_map(Val::Bytea).boxed(),
        Base::Date => date(),
        Base::Time => time_of_day(),
        Base::Timestamp => micros()
            .prop_map(|us| Val::Timestamp(Timestamp::Value(instant(us).naive_utc())))
            .boxed(),
        Base::Timestamptz => micros()
            .prop_map(|us| Val::Timestamptz(Timestamp::Value(instant(us))))
            .boxed(),
        Base::Interval => (
            ints(vec![i32::MIN, -1, 0, 1, i32::MAX]),
            ints(vec![i32::MIN, -1, 0, 1, i32::MAX]),
            ints(vec![i64::MIN, -1, 0, 1, i64::MAX]),
        )
            .prop_map(|(months, days, us)| Val::Interval(Interval::new(months, days, us)))
            .boxed(),
        Base::Uuid => any::<[u8; 16]>()
            .prop_map(|b| Val::Uuid(Uuid::from_bytes(b)))
            .boxed(),
    }
}

/// Values of a type that have no Arrow equivalent, or none in the column's decimal:
/// rivet must refuse them, naming the column.
fn refused(base: Base) -> Option<BoxedStrategy<Val>> {
    let any_decimal = (
        -(Decimal::MAX.mantissa())..=Decimal::MAX.mantissa(),
        0u32..=28,
    )
        .prop_map(|(m, scale)| Val::Numeric(Decimal::from_i128_with_scale(m, scale), false));
    Some(match base {
        Base::Numeric(p, s) => {
            let mut all = numeric_near_misses(p, s);
            all.push(any_decimal.boxed());
            all.push(
                select(NUMERIC_SPECIALS.to_vec())
                    .prop_map(Val::NumericSpecial)
                    .boxed(),
            );
            proptest::strategy::Union::new(all).boxed()
        }
        Base::Date => select(vec![Date::PosInfinity, Date::NegInfinity])
            .prop_map(Val::Date)
            .boxed(),
        Base::Timestamp => select(vec![Timestamp::PosInfinity, Timestamp::NegInfinity])
            .prop_map(Val::Timestamp)
            .boxed(),
        Base::Timestamptz => select(vec![Timestamp::PosInfinity, Timestamp::NegInfinity])
            .prop_map(Val::Timestamptz)
            .boxed(),
        _ => return None,
    })
}

fn column_values(col: &Col) -> BoxedStrategy<Val> {
    let scalar = match refused(col.base) {
        Some(refused) if col.refusals => prop_oneof![4 => values(col.base), 1 => refused].boxed(),
        _ => values(col.base),
    };
    if col.array {
        prop_oneof![
            8 => vec(option::weighted(0.8, scalar), 0..5).prop_map(Val::Array),
            1 => Just(Val::EmptyArray),
        ]
        .boxed()
    } else {
        scalar
    }
}

/// numeric(p, s) that rivet maps to a decimal (76 digits at most).
fn numeric_base() -> BoxedStrategy<Base> {
    (1i32..=76)
        .prop_flat_map(|p| (Just(p), (p - 76).max(-3)..=(p + 2).min(76)))
        .prop_map(|(p, s)| Base::Numeric(p, s))
        .boxed()
}

fn base() -> BoxedStrategy<Base> {
    prop_oneof![
        5 => select(vec![
            Base::Bool,
            Base::Int2,
            Base::Int4,
            Base::Int8,
            Base::Oid,
            Base::Float4,
            Base::Float8,
            Base::Text,
            Base::Varchar,
            Base::Bpchar,
            Base::Name,
            Base::Citext,
            Base::Json,
            Base::Jsonb,
            Base::Bytea,
            Base::Date,
            Base::Time,
            Base::Timestamp,
            Base::Timestamptz,
            Base::Interval,
            Base::Uuid,
        ]),
        2 => numeric_base(),
    ]
    .boxed()
}

type Table = (Vec<Col>, Vec<Vec<Option<Val>>>);

/// Columns, and rows of values for them (`None` is NULL).
fn table() -> BoxedStrategy<Table> {
    let col = (
        base(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(base, array, refusals)| Col {
            base,
            array,
            refusals,
        });
    vec(col, 1..=3)
        .prop_flat_map(|cols| {
            let row: Vec<_> = cols
                .iter()
                .map(|c| option::weighted(0.9, column_values(c)))
                .collect();
            (Just(cols), vec(row, 0..12))
        })
        .boxed()
}

/// One column whose values end with one rivet must refuse (inside an array, for array
/// columns), sometimes followed by more rows.
fn refusing_table() -> BoxedStrategy<Table> {
    let base = prop_oneof![
        4 => numeric_base(),
        1 => select(vec![Base::Date, Base::Timestamp, Base::Timestamptz]),
    ];
    (base, prop::bool::weighted(0.25))
        .prop_flat_map(|(base, array)| {
            let col = Col {
                base,
                array,
                refusals: false,
            };
            let refused = refused(base).expect("a type with refused values");
            let before = vec(option::weighted(0.9, column_values(&col)), 0..4);
            let after = vec(option::weighted(0.9, column_values(&col)), 0..3);
            (Just(col), before, refused, after)
        })
        .prop_map(|(col, before, refused, after)| {
            let refused = if col.array {
                Val::Array(vec![None, Some(refused)])
            } else {
                refused
            };
            let values = before.into_iter().chain([Some(refused)]).chain(after);
            (vec![col], values.map(|v| vec![v]).collect())
        })
        .boxed()
}

// ---------------------------------------------------------------------------------
// Reading them back
// ---------------------------------------------------------------------------------

/// A binary COPY stream of `rows`: signature, flags, no extension, tuples, trailer.
fn copy_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend(0i32.to_be_bytes());
    data.extend(0i32.to_be_bytes());
    for row in rows {
        data.extend(i16::try_from(row.len()).expect("few columns").to_be_bytes());
        for value in row {
            match value {
                None => data.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    data.extend(i32::try_from(v.len()).expect("small").to_be_bytes());
                    data.extend_from_slice(v);
                }
            }
        }
    }
    data.extend((-1i16).to_be_bytes());
    data
}

/// Decode a COPY stream cut into CopyData messages at `cuts`, as a COPY scan does:
/// on a reader thread, in batches of at most 3 rows.
fn decode(
    columns: Vec<PgColumn>,
    data: Vec<u8>,
    cuts: &[Index],
    rows: usize,
) -> crate::error::Result<Vec<arrow_array::RecordBatch>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    at.extend([0, data.len()]);
    at.sort_unstable();
    let stream = BatchStream::spawn(arrow_schema(&columns), 4, move |sink| {
        let limits = BatchLimits::new(3, 1 << 20)?;
        let mut builder = PgBatchBuilder::new(columns, 4);
        let mut decoder = CopyDecoder::default();
        for w in at.windows(2) {
            decoder.feed(&data[w[0]..w[1]], &mut builder, &limits, sink)?;
        }
        decoder.finish(&mut builder, sink)?;
        Ok(EndOfData {
            server_rows: rows as u64,
            expected_rows: None,
        })
    });
    drain(stream)
}

/// Encode `rows`, decode them with rivet, and compare: every cell when all values have
/// an Arrow equivalent, else the error of the first one that has none.
fn check((cols, rows): &Table, cuts: &[Index]) {
    let columns: Vec<PgColumn> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| c.mapped(&format!("c{i}")))
        .collect();
    for (col, column) in cols.iter().zip(&columns) {
        assert_eq!(column.kind.data_type(), col.arrow_type(), "{col:?}");
    }
    let types: Vec<Type> = cols.iter().map(Col::ty).collect();
    let mut expected = vec![Vec::new(); cols.len()];
    let mut first_error = None;
    let mut encoded = Vec::new();
    for row in rows {
        let mut values = Vec::new();
        for (i, value) in row.iter().enumerate() {
            values.push(value.as_ref().map(|v| encode(v, &types[i])));
            let cell = match value {
                None => Ok(Cell::Null),
                Some(v) => expect(v, &columns[i].kind),
            };
            if let Some(v) = value {
                assert!(
                    cell.is_ok() || !declared_numeric(v),
                    "{v:?} is a value of {:?} but cannot be read as {:?}",
                    cols[i].base,
                    columns[i].kind
                );
            }
            match cell {
                Ok(cell) => expected[i].push(cell),
                Err(refusal) => {
                    first_error.get_or_insert((columns[i].name.clone(), refusal));
                }
            }
        }
        encoded.push(values);
    }
    let outcome = decode(columns.clone(), copy_stream(&encoded), cuts, rows.len());
    assert_outcome(outcome, &expected, first_error, |i| {
        format!("{:?} read as {:?}", cols[i], columns[i].kind)
    });
}

proptest! {
    #![proptest_config(config(512))]

    /// Every type, scalar and array, NULLs among the values, in a COPY stream cut
    /// into CopyData messages anywhere.
    #[test]
    fn binary_values_decode_exactly(table in table(), cuts in vec(any::<Index>(), 0..3)) {
        check(&table, &cuts);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// NaN and infinite numerics, infinite dates and timestamps, and numerics just past
    /// the column's scale or precision: an error naming the column, never a rounded
    /// value or a NULL.
    #[test]
    fn values_without_an_arrow_equivalent_are_refused(table in refusing_table()) {
        check(&table, &[]);
    }
}

// ---------------------------------------------------------------------------------
// Cases the generators reach only by chance
// ---------------------------------------------------------------------------------

fn one(col: Col, values: Vec<Option<Val>>) {
    let rows = values.into_iter().map(|v| vec![v]).collect();
    check(&(vec![col], rows), &[]);
}

#[test]
fn numerics_at_the_edges_of_their_precision() {
    let dec = |s: &str| Val::Numeric(Decimal::from_str_exact(s).expect("a decimal"), true);
    let col = |p, s| Col {
        base: Base::Numeric(p, s),
        array: false,
        refusals: false,
    };
    one(
        col(28, 0),
        vec![
            Some(dec("9999999999999999999999999999")),
            Some(dec("-9999999999999999999999999999")),
        ],
    );
    one(
        col(38, 10),
        vec![
            Some(dec("999999999999999999.9999999999")),
            Some(dec("0.0000000001")),
        ],
    );
    // Scaled up past 38 digits: the decimal256 path.
    one(
        col(76, 48),
        vec![Some(dec("7922816251426433759354395033.5"))],
    );
    // Negative scale: numeric(3,-2) holds 12300; a scale above the precision: numeric(2,4)
    // holds 0.0099.
    one(col(3, -2), vec![Some(dec("12300")), Some(dec("-99900"))]);
    one(col(2, 4), vec![Some(dec("0.0099")), Some(dec("-0.0010"))]);
}

/// Wide numerics as PostgreSQL 15 sends them for these columns (`numeric_send`, hex).
const NUMERICS_SENT: [(&str, i32, i32, &str); 12] = [
    (
        "1234567890123456789012345678901234567890.123456789",
        60,
        9,
        "000d00090000000904d2162e23340d801ed204d2162e23340d801ed204d2162e2328",
    ),
    (
        "-9999999999999999999999999999999999999999999999999999999999999999999999999.99",
        76,
        2,
        "00140012400000020009270f270f270f270f270f270f270f270f270f270f270f270f270f270f270f\
         270f270f270f26ac",
    ),
    (
        "0.0000000000000000000000000000000000000000000000000000000000000000000000000001",
        76,
        76,
        "0001ffed0000004c0001",
    ),
    // 2^127, one past i128::MAX.
    (
        "170141183460469231731687303715884105728",
        39,
        0,
        "000a00090000000000aa0583209a01d5090d0c601c871bf620da1660",
    ),
    (
        "-170141183460469231731687303715884105728",
        39,
        0,
        "000a00094000000000aa0583209a01d5090d0c601c871bf620da1660",
    ),
    (
        "99999999999999999999999999999999999999",
        38,
        0,
        "000a0009000000000063270f270f270f270f270f270f270f270f270f",
    ),
    (
        "-0.00000000000000000000000000000000000001",
        38,
        38,
        "0001fff6400000260064",
    ),
    (
        "12345678901234567890123456789.123456789",
        38,
        9,
        "000b000700000009000109291a85007b11d722c509291a8504d2162e2328",
    ),
    (
        "100000000000000000000000000000000000000000000",
        76,
        30,
        "0001000b0000001e0001",
    ),
    ("12300", 3, -2, "0002000100000000000108fc"),
    ("0.0099", 2, 4, "0001ffff000000040063"),
    ("1.5", 10, 2, "000200000000000200011388"),
];

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn numerics_as_postgresql_sends_them() {
    for (text, p, s, hex) in NUMERICS_SENT {
        let col = Col {
            base: Base::Numeric(p, s),
            array: false,
            refusals: false,
        };
        one(col, vec![Some(Val::NumericSent(unhex(hex), text))]);
    }
    // The same values read as narrower decimals (a `columns:` override) are refused.
    for (text, _, _, hex) in NUMERICS_SENT.into_iter().take(8) {
        let col = Col {
            base: Base::Numeric(20, 4),
            array: false,
            refusals: true,
        };
        let value = Val::NumericSent(unhex(hex), text);
        assert!(expect(&value, &col.mapped("c").kind).is_err(), "{text}");
        one(col, vec![Some(value)]);
    }
}

#[test]
fn numeric_that_does_not_fit_is_an_error_not_rounded() {
    let col = Col {
        base: Base::Numeric(5, 2),
        array: false,
        refusals: true,
    };
    let value = Val::Numeric(Decimal::from_str_exact("1234.5").expect("a decimal"), false);
    assert_eq!(
        expect(&value, &col.mapped("c").kind),
        Err(OVERFLOW),
        "the expectation itself"
    );
    one(col, vec![Some(value)]);
}
