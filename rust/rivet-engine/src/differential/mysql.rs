//! MySQL and MariaDB: values written by `mysql_common` in the binary protocol, under
//! column definitions built from its constants, mapped by `map_column` and read from
//! binary rows as a scan reads them; and text result sets, read by `query`.

use std::sync::Arc;

use arrow_schema::{DataType, TimeUnit};
use chrono::{Datelike, NaiveDate, TimeDelta};
use mysql_common::collations::CollationId;
use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::io::{BufMutExt, ParseBuf};
use mysql_common::packets::{Column, NullBitmap};
use mysql_common::proto::{Binary, MySerialize, Text};
use mysql_common::row::RowDeserializer;
use mysql_common::value::{ServerSide, Value};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Cell, Refusal, assert_outcome, config, drain, json, unscaled};
use crate::batch::{BatchLimits, flush, make_room};
use crate::fuzz::text_result_rows;
use crate::metadata::{ArrowKind, arrow_schema};
use crate::mysql::decode::MyBatchBuilder;
use crate::mysql::types::{MyColumn, MyKind, code, map_column};
use crate::mysql::wire::ColumnDef;
use crate::stream::{BatchStream, EndOfData};

/// A column type as a server describes it in a result set.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MyType {
    /// TINYINT [UNSIGNED]
    TinyInt(bool),
    /// TINYINT(1), BOOL
    Boolean,
    SmallInt(bool),
    MediumInt(bool),
    Int(bool),
    BigInt(bool),
    Year,
    Float,
    Double,
    /// DECIMAL(p, s) [UNSIGNED], read as declared or as a `columns:` decimal(P, S).
    Decimal {
        p: u8,
        s: u8,
        unsigned: bool,
        read_as: Option<(u8, i8)>,
    },
    Date,
    /// DATETIME(fsp)
    DateTime(u8),
    /// TIMESTAMP(fsp)
    Timestamp(u8),
    /// TIME(fsp)
    Time(u8),
    Char,
    Varchar,
    Text,
    Json,
    Enum,
    Set,
    Binary,
    Varbinary,
    Blob,
    /// BIT(n)
    Bit(u8),
}

impl MyType {
    /// The column definition a server sends for this type (MySQL 8 and MariaDB agree
    /// on every field rivet reads).
    fn column(self) -> Column {
        use ColumnType::*;
        let num = |unsigned: bool| {
            if unsigned {
                ColumnFlags::NUM_FLAG | ColumnFlags::UNSIGNED_FLAG
            } else {
                ColumnFlags::NUM_FLAG
            }
        };
        let binary = ColumnFlags::BINARY_FLAG;
        let blob = ColumnFlags::BLOB_FLAG;
        let none = ColumnFlags::empty();
        // The display length of fractional seconds: a point and the digits.
        let fsp = |f: u8| if f > 0 { u32::from(f) + 1 } else { 0 };
        let (ty, flags, length, decimals, text) = match self {
            MyType::TinyInt(u) => (MYSQL_TYPE_TINY, num(u), if u { 3 } else { 4 }, 0, false),
            MyType::Boolean => (MYSQL_TYPE_TINY, num(false), 1, 0, false),
            MyType::SmallInt(u) => (MYSQL_TYPE_SHORT, num(u), if u { 5 } else { 6 }, 0, false),
            MyType::MediumInt(u) => (MYSQL_TYPE_INT24, num(u), if u { 8 } else { 9 }, 0, false),
            MyType::Int(u) => (MYSQL_TYPE_LONG, num(u), if u { 10 } else { 11 }, 0, false),
            MyType::BigInt(u) => (MYSQL_TYPE_LONGLONG, num(u), 20, 0, false),
            MyType::Year => (
                MYSQL_TYPE_YEAR,
                num(true) | ColumnFlags::ZEROFILL_FLAG,
                4,
                0,
                false,
            ),
            MyType::Float => (MYSQL_TYPE_FLOAT, num(false), 12, 31, false),
            MyType::Double => (MYSQL_TYPE_DOUBLE, num(false), 22, 31, false),
            // The display length counts the digits, the point and the sign.
            MyType::Decimal { p, s, unsigned, .. } => (
                MYSQL_TYPE_NEWDECIMAL,
                num(unsigned),
                u32::from(p) + u32::from(s > 0) + u32::from(!unsigned),
                s,
                false,
            ),
            MyType::Date => (MYSQL_TYPE_DATE, binary, 10, 0, false),
            MyType::DateTime(f) => (MYSQL_TYPE_DATETIME, binary, 19 + fsp(f), f, false),
            MyType::Timestamp(f) => (MYSQL_TYPE_TIMESTAMP, binary, 19 + fsp(f), f, false),
            MyType::Time(f) => (MYSQL_TYPE_TIME, binary, 10 + fsp(f), f, false),
            MyType::Char => (MYSQL_TYPE_STRING, none, 40, 0, true),
            MyType::Varchar => (MYSQL_TYPE_VAR_STRING, none, 1020, 0, true),
            MyType::Text => (MYSQL_TYPE_BLOB, blob, 262_140, 0, true),
            MyType::Json => (MYSQL_TYPE_JSON, blob | binary, u32::MAX, 0, false),
            MyType::Enum => (MYSQL_TYPE_STRING, ColumnFlags::ENUM_FLAG, 4, 0, true),
            MyType::Set => (MYSQL_TYPE_STRING, ColumnFlags::SET_FLAG, 12, 0, true),
            MyType::Binary => (MYSQL_TYPE_STRING, binary, 16, 0, false),
            MyType::Varbinary => (MYSQL_TYPE_VAR_STRING, binary, 64, 0, false),
            MyType::Blob => (MYSQL_TYPE_BLOB, blob | binary, 65_535, 0, false),
            MyType::Bit(n) => (MYSQL_TYPE_BIT, num(true), u32::from(n), 0, false),
        };
        let charset = if text {
            CollationId::UTF8MB4_GENERAL_CI
        } else {
            CollationId::BINARY
        };
        Column::new(ty)
            .with_flags(flags)
            .with_column_length(length)
            .with_decimals(decimals)
            .with_character_set(charset as u16)
    }

    /// The column mapped as a scan maps it; and whether it travels as a BIT string.
    fn mapped(self, name: &str) -> (MyColumn, bool) {
        let c = self.column();
        let def = ColumnDef {
            name: name.into(),
            origin: None,
            charset: c.character_set(),
            length: c.column_length(),
            type_code: c.column_type() as u8,
            flags: c.flags().bits(),
            decimals: c.decimals(),
            extended: None,
        };
        let read_as = match self {
            MyType::Decimal { read_as, .. } => read_as,
            _ => None,
        };
        let column =
            map_column(&def, read_as).unwrap_or_else(|u| panic!("{self:?} is refused: {}", u.hint));
        (column, def.type_code == code::BIT)
    }

    /// The Arrow type the README's table gives for the column.
    fn arrow_type(self) -> DataType {
        let us = TimeUnit::Microsecond;
        match self {
            MyType::Boolean | MyType::Bit(1) => DataType::Boolean,
            MyType::TinyInt(false) => DataType::Int8,
            MyType::TinyInt(true) => DataType::UInt8,
            MyType::SmallInt(false) | MyType::Year => DataType::Int16,
            MyType::SmallInt(true) => DataType::UInt16,
            MyType::MediumInt(false) | MyType::Int(false) => DataType::Int32,
            MyType::MediumInt(true) | MyType::Int(true) => DataType::UInt32,
            MyType::BigInt(false) => DataType::Int64,
            MyType::BigInt(true) | MyType::Bit(_) => DataType::UInt64,
            MyType::Float => DataType::Float32,
            MyType::Double => DataType::Float64,
            MyType::Decimal { p, s, read_as, .. } => {
                let (p, s) = read_as.unwrap_or((p, i8::try_from(s).expect("<= 30")));
                if p <= 38 {
                    DataType::Decimal128(p, s)
                } else {
                    DataType::Decimal256(p, s)
                }
            }
            MyType::Date => DataType::Date32,
            MyType::DateTime(_) => DataType::Timestamp(us, None),
            MyType::Timestamp(_) => DataType::Timestamp(us, Some("UTC".into())),
            MyType::Time(_) => DataType::Duration(us),
            MyType::Char
            | MyType::Varchar
            | MyType::Text
            | MyType::Json
            | MyType::Enum
            | MyType::Set => DataType::Utf8,
            MyType::Binary | MyType::Varbinary | MyType::Blob => DataType::Binary,
        }
    }

    /// The bytes the server sends an integer in: the low bytes of the 8 that
    /// `mysql_common` writes (it writes parameters, always 8 bytes wide).
    fn width(self) -> Option<usize> {
        match self {
            MyType::TinyInt(_) | MyType::Boolean => Some(1),
            MyType::SmallInt(_) | MyType::Year => Some(2),
            MyType::MediumInt(_) | MyType::Int(_) => Some(4),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------
// Rows in the binary protocol
// ---------------------------------------------------------------------------------

/// A binary result row: the 0x00 header, the NULL bitmap, the values.
fn binary_row(types: &[MyType], values: &[Value]) -> Vec<u8> {
    let mut bitmap = NullBitmap::<ServerSide>::new(values.len());
    let mut data = Vec::new();
    for (i, (ty, value)) in types.iter().zip(values).enumerate() {
        if *value == Value::NULL {
            bitmap.set(i, true);
            continue;
        }
        let mut bytes = Vec::new();
        value.serialize(&mut bytes);
        if let Some(width) = ty.width() {
            let (_, dropped) = bytes.split_at(width);
            let fill = if bytes[width - 1] & 0x80 != 0 && matches!(value, Value::Int(_)) {
                0xff
            } else {
                0
            };
            assert!(
                dropped.iter().all(|b| *b == fill),
                "{value:?} is wider than {ty:?}"
            );
            bytes.truncate(width);
        }
        data.extend(bytes);
    }
    let mut row = vec![0];
    row.extend_from_slice(bitmap.as_ref());
    row.extend(data);
    row
}

/// Whether two values are the same: integers by their value (`mysql_common` reads an
/// unsigned column's values that fit an i64 as `Int`), floats by their bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::UInt(y)) | (Value::UInt(y), Value::Int(x)) => {
            u64::try_from(*x) == Ok(*y)
        }
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// `mysql_common`'s own reading of a row must give back its values: the row is what
/// a server sends, not only what rivet expects.
fn check_row_bytes(types: &[MyType], values: &[Value], row: &[u8]) {
    let columns: Arc<[Column]> = types.iter().map(|t| t.column()).collect();
    let mut buf = ParseBuf(row);
    let parsed: RowDeserializer<ServerSide, Binary> =
        buf.parse(columns).expect("mysql_common reads the row");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    let parsed = parsed.into_inner().unwrap();
    for (i, (want, got)) in values.iter().zip(&parsed).enumerate() {
        assert!(
            same(want, got),
            "column {i} ({:?}): {want:?} read back as {got:?}",
            types[i]
        );
    }
}

// ---------------------------------------------------------------------------------
// What rivet must make of each value
// ---------------------------------------------------------------------------------

const NOT_BOOLEAN: Refusal = &["is not a boolean"];
const NO_CALENDAR_DATE: Refusal = &["zero or partial date"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("text columns get UTF-8")
}

/// The cell rivet must make of `value` in a column of `ty` read as `kind`, or how it
/// must refuse it.
fn expect(value: &Value, ty: MyType, kind: MyKind) -> Result<Cell, Refusal> {
    Ok(match (ty, value) {
        (_, Value::NULL) => Cell::Null,
        (MyType::Boolean, Value::Int(v)) => match v {
            0 => Cell::Bool(false),
            1 => Cell::Bool(true),
            _ => return Err(NOT_BOOLEAN),
        },
        (MyType::Bit(1), Value::Bytes(b)) => match b.as_slice() {
            [0] => Cell::Bool(false),
            [1] => Cell::Bool(true),
            _ => return Err(NOT_BOOLEAN),
        },
        (MyType::Bit(_), Value::Bytes(b)) => {
            let mut be = [0u8; 8];
            be[8 - b.len()..].copy_from_slice(b);
            Cell::Int(u64::from_be_bytes(be).into())
        }
        (_, Value::Int(v)) => Cell::Int((*v).into()),
        (_, Value::UInt(v)) => Cell::Int((*v).into()),
        (_, Value::Float(v)) => Cell::Float(v.to_bits().into()),
        (_, Value::Double(v)) => Cell::Float(v.to_bits()),
        (MyType::Decimal { .. }, Value::Bytes(b)) => {
            let MyKind::Decimal(precision, scale) = kind else {
                panic!("a DECIMAL read as {kind:?}")
            };
            let t = text(b);
            let (negative, t) = t
                .strip_prefix('-')
                .map_or((false, t.as_str()), |r| (true, r));
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            Cell::Decimal(unscaled(negative, int, frac, precision, scale)?)
        }
        (_, Value::Date(y, m, d, h, mi, s, us)) => {
            let date = NaiveDate::from_ymd_opt((*y).into(), (*m).into(), (*d).into())
                .ok_or(NO_CALENDAR_DATE)?;
            let days = date
                .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"))
                .num_days();
            if kind == MyKind::Date {
                Cell::Int(days.into())
            } else {
                let at = date
                    .and_hms_micro_opt((*h).into(), (*mi).into(), (*s).into(), *us)
                    .expect("a time of day");
                Cell::Int(at.and_utc().timestamp_micros().into())
            }
        }
        (_, Value::Time(negative, d, h, m, s, us)) => {
            let t = TimeDelta::days((*d).into())
                + TimeDelta::hours((*h).into())
                + TimeDelta::minutes((*m).into())
                + TimeDelta::seconds((*s).into())
                + TimeDelta::microseconds((*us).into());
            let t = if *negative { -t } else { t };
            Cell::Int(t.num_microseconds().expect("a short time").into())
        }
        (MyType::Binary | MyType::Varbinary | MyType::Blob, Value::Bytes(b)) => {
            Cell::Bytes(b.clone())
        }
        (_, Value::Bytes(b)) => Cell::Text(text(b)),
    })
}

// ---------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------

fn int(min: i64, max: i64) -> BoxedStrategy<Value> {
    prop_oneof![3 => min..=max, 1 => select(vec![min, -1, 0, 1, max])]
        .prop_map(Value::Int)
        .boxed()
}

fn uint(max: u64) -> BoxedStrategy<Value> {
    prop_oneof![3 => 0..=max, 1 => select(vec![0, 1, max])]
        .prop_map(Value::UInt)
        .boxed()
}

fn digits(n: u8) -> BoxedStrategy<String> {
    vec(0u8..10, usize::from(n))
        .prop_map(|d| d.iter().map(|d| char::from(b'0' + d)).collect())
        .boxed()
}

/// Decimal text as the server prints DECIMAL(p, s): the `int` digits (a 0 when there
/// are none), and unless s is 0 a point and exactly s decimals (`frac`, then zeros); a
/// sign only when negative.
fn decimal_str(negative: bool, int: &str, frac: &str, s: u8) -> Value {
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = format!("{frac:0<width$}", width = usize::from(s));
    let zero = int == "0" && frac.bytes().all(|d| d == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    let text = if s > 0 {
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}{int}")
    };
    Value::Bytes(text.into_bytes())
}

/// Values of DECIMAL(p, s): up to p - s integer digits, sometimes the largest
/// magnitude (all nines).
fn decimal_text(p: u8, s: u8, unsigned: bool) -> BoxedStrategy<Value> {
    let int_len = prop_oneof![6 => 0..=p - s, 1 => Just(p - s)];
    (any::<bool>(), int_len, prop::bool::weighted(0.1))
        .prop_flat_map(move |(negative, a, nines)| {
            (
                Just(negative && !unsigned),
                digits(a),
                digits(s),
                Just(nines),
            )
        })
        .prop_map(move |(negative, int, frac, nines)| {
            if nines {
                let nines = |n: u8| "9".repeat(usize::from(n));
                decimal_str(negative, &nines(p - s), &nines(s), s)
            } else {
                decimal_str(negative, &int, &frac, s)
            }
        })
        .boxed()
}

fn days_from_ce(y: i32, m: u32, d: u32) -> i32 {
    NaiveDate::from_ymd_opt(y, m, d)
        .expect("a date")
        .num_days_from_ce()
}

/// Dates from 0000-01-01 to 9999-12-31, what DATE and DATETIME hold.
fn calendar_date() -> BoxedStrategy<NaiveDate> {
    let (min, max) = (days_from_ce(0, 1, 1), days_from_ce(9999, 12, 31));
    let edges = vec![
        min,
        max,
        days_from_ce(1970, 1, 1),
        days_from_ce(1969, 12, 31),
        days_from_ce(2000, 2, 29),
        days_from_ce(1000, 1, 1),
    ];
    prop_oneof![6 => min..=max, 1 => select(edges)]
        .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("a date"))
        .boxed()
}

fn ymd(d: NaiveDate) -> (u16, u8, u8) {
    let narrow = |v: u32| u8::try_from(v).expect("a month or a day");
    (
        u16::try_from(d.year()).expect("a year of 0 to 9999"),
        narrow(d.month()),
        narrow(d.day()),
    )
}

/// Microseconds of `fsp` digits.
fn fraction(fsp: u8) -> BoxedStrategy<u32> {
    let step = 10u32.pow(u32::from(6 - fsp));
    (0..10u32.pow(u32::from(fsp)))
        .prop_map(move |k| k * step)
        .boxed()
}

fn datetime(fsp: u8) -> BoxedStrategy<Value> {
    let time = prop_oneof![
        3 => (0u8..24, 0u8..60, 0u8..60, fraction(fsp)),
        1 => Just((0, 0, 0, 0)),
        1 => Just((23, 59, 59, 1_000_000 - 10u32.pow(u32::from(6 - fsp)))),
    ];
    (calendar_date(), time)
        .prop_map(|(date, (h, mi, s, us))| {
            let (y, m, d) = ymd(date);
            Value::Date(y, m, d, h, mi, s, us)
        })
        .boxed()
}

/// TIME(fsp): -838:59:59 to 838:59:59 (MariaDB allows a fraction at the ends too).
fn time(fsp: u8) -> BoxedStrategy<Value> {
    let parts = prop_oneof![
        6 => (0u32..=34, 0u8..24, 0u8..60, 0u8..60, fraction(fsp)),
        1 => Just((34, 22, 59, 59, 0)),
    ];
    (any::<bool>(), parts)
        .prop_map(|(negative, (d, h, m, s, us))| {
            // 34 days and 22 hours is 838 hours.
            let h = if d == 34 { h.min(22) } else { h };
            // A server sends no negative zero.
            let negative = negative && (d, h, m, s, us) != (0, 0, 0, 0, 0);
            Value::Time(negative, d, h, m, s, us)
        })
        .boxed()
}

fn utf8() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => "\\PC{0,40}",
        // Longer than 250 bytes: a 3-byte length.
        1 => "\\PC{240,300}",
    ]
    .prop_map(String::into_bytes)
    .boxed()
}

fn values(ty: MyType) -> BoxedStrategy<Value> {
    match ty {
        MyType::TinyInt(false) => int(i8::MIN.into(), i8::MAX.into()),
        MyType::TinyInt(true) => uint(u8::MAX.into()),
        MyType::Boolean => select(vec![0, 1]).prop_map(Value::Int).boxed(),
        MyType::SmallInt(false) => int(i16::MIN.into(), i16::MAX.into()),
        MyType::SmallInt(true) => uint(u16::MAX.into()),
        MyType::MediumInt(false) => int(-(1 << 23), (1 << 23) - 1),
        MyType::MediumInt(true) => uint((1 << 24) - 1),
        MyType::Int(false) => int(i32::MIN.into(), i32::MAX.into()),
        MyType::Int(true) => uint(u32::MAX.into()),
        MyType::BigInt(false) => int(i64::MIN, i64::MAX),
        MyType::BigInt(true) => uint(u64::MAX),
        MyType::Year => prop_oneof![1 => Just(0u64), 8 => 1901u64..=2155]
            .prop_map(Value::UInt)
            .boxed(),
        // A server sends no NaN or infinity, but a decoder passes any bits through.
        MyType::Float => prop_oneof![
            4 => any::<f32>(),
            1 => select(vec![-0.0, f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45, f32::NAN]),
        ]
        .prop_map(Value::Float)
        .boxed(),
        MyType::Double => prop_oneof![
            4 => any::<f64>(),
            1 => select(vec![-0.0, f64::MIN_POSITIVE, f64::MAX, f64::MIN, 5e-324, f64::NAN]),
        ]
        .prop_map(Value::Double)
        .boxed(),
        MyType::Decimal { p, s, unsigned, .. } => decimal_text(p, s, unsigned),
        MyType::Date => calendar_date()
            .prop_map(|date| {
                let (y, m, d) = ymd(date);
                Value::Date(y, m, d, 0, 0, 0, 0)
            })
            .boxed(),
        MyType::DateTime(fsp) | MyType::Timestamp(fsp) => datetime(fsp),
        MyType::Time(fsp) => time(fsp),
        MyType::Char | MyType::Varchar | MyType::Text => utf8().prop_map(Value::Bytes).boxed(),
        MyType::Json => json()
            .prop_map(|j| Value::Bytes(j.to_string().into_bytes()))
            .boxed(),
        MyType::Enum => select(vec!["small", "medium", "large", ""])
            .prop_map(|label| Value::Bytes(label.into()))
            .boxed(),
        MyType::Set => proptest::sample::subsequence(vec!["a", "b", "c d"], 0..=3)
            .prop_map(|members| Value::Bytes(members.join(",").into_bytes()))
            .boxed(),
        MyType::Binary | MyType::Varbinary | MyType::Blob => {
            prop_oneof![6 => vec(any::<u8>(), 0..40), 1 => vec(any::<u8>(), 240..300)]
                .prop_map(Value::Bytes)
                .boxed()
        }
        MyType::Bit(n) => any::<u64>()
            .prop_map(move |v| {
                let v = if n == 64 { v } else { v & ((1 << n) - 1) };
                let len = usize::from(n.div_ceil(8));
                Value::Bytes(v.to_be_bytes()[8 - len..].to_vec())
            })
            .boxed(),
    }
}

/// Values a server may send that have no Arrow equivalent: rivet must refuse them,
/// naming the column.
fn refused(ty: MyType) -> Option<BoxedStrategy<Value>> {
    // Zero and partial dates, and invalid ones (ALLOW_INVALID_DATES).
    let no_date = prop_oneof![
        Just((0u16, 0u8, 0u8)),
        (0u16..=9999, Just(0u8), 0u8..=31),
        (0u16..=9999, 1u8..=12, Just(0u8)),
        (0u16..=9999, Just(2u8), 30u8..=31),
        (0u16..=9999, select(vec![4u8, 6, 9, 11]), Just(31u8)),
    ];
    Some(match ty {
        MyType::Boolean => prop_oneof![2i64..=127, -128i64..=-1]
            .prop_map(Value::Int)
            .boxed(),
        MyType::Date => no_date
            .prop_map(|(y, m, d)| Value::Date(y, m, d, 0, 0, 0, 0))
            .boxed(),
        MyType::DateTime(_) | MyType::Timestamp(_) => (no_date, 0u8..24)
            .prop_map(|((y, m, d), h)| Value::Date(y, m, d, h, 0, 0, 0))
            .boxed(),
        _ => return None,
    })
}

fn column_values(ty: MyType, refusals: bool) -> BoxedStrategy<Value> {
    match refused(ty) {
        Some(refused) if refusals => prop_oneof![4 => values(ty), 1 => refused].boxed(),
        _ => values(ty),
    }
}

fn my_type() -> BoxedStrategy<MyType> {
    use MyType::*;
    let read_as = (1u8..=76).prop_flat_map(|p| (Just(p), 0..=p.min(76) as i8));
    let decimal = (1u8..=65)
        .prop_flat_map(move |p| {
            (
                Just(p),
                0..=p.min(30),
                any::<bool>(),
                option::weighted(0.2, read_as.clone()),
            )
        })
        .prop_map(|(p, s, unsigned, read_as)| Decimal {
            p,
            s,
            unsigned,
            read_as,
        });
    prop_oneof![
        8 => select(vec![
            TinyInt(false), TinyInt(true), Boolean, SmallInt(false), SmallInt(true),
            MediumInt(false), MediumInt(true), Int(false), Int(true), BigInt(false),
            BigInt(true), Year, Float, Double, Date, Char, Varchar, Text, Json, Enum, Set,
            Binary, Varbinary, Blob,
        ]),
        3 => (0u8..=6).prop_flat_map(|f| select(vec![DateTime(f), Timestamp(f), Time(f)])),
        1 => (1u8..=64).prop_map(Bit),
        3 => decimal,
    ]
    .boxed()
}

/// Columns (a type, and whether some values have no Arrow equivalent), and rows.
type Table = (Vec<(MyType, bool)>, Vec<Vec<Value>>);

fn table() -> BoxedStrategy<Table> {
    vec((my_type(), prop::bool::weighted(0.2)), 1..=4)
        .prop_flat_map(|cols| {
            let row: Vec<_> = cols
                .iter()
                .map(|(ty, refusals)| {
                    option::weighted(0.9, column_values(*ty, *refusals))
                        .prop_map(|v| v.unwrap_or(Value::NULL))
                })
                .collect();
            (Just(cols), vec(row, 0..12))
        })
        .boxed()
}

/// A DECIMAL(p, s) read as a narrower decimal(k + t, t) (a `columns:` override), values
/// that fit it, and one just outside it: a nonzero digit (often a 1) past its scale, or
/// an integer digit too many.
fn narrowed_decimal() -> BoxedStrategy<(MyType, Vec<Value>, Value)> {
    (2u8..=65)
        .prop_flat_map(|p| (Just(p), 1..=(p - 1).min(30)))
        .prop_flat_map(|(p, s)| (Just(p), Just(s), 0..s, 1..=p - s))
        .prop_flat_map(|(p, s, t, k)| {
            let fitting = (any::<bool>(), (0..=k).prop_flat_map(digits), digits(t))
                .prop_map(move |(neg, int, frac)| decimal_str(neg, &int, &frac, s));
            let past_scale = (
                any::<bool>(),
                (0..=k).prop_flat_map(digits),
                digits(t),
                0..s - t,
                prop_oneof![Just(1u8), 1u8..10],
            )
                .prop_map(move |(neg, int, frac, zeros, d)| {
                    let frac = format!("{frac}{}{d}", "0".repeat(usize::from(zeros)));
                    decimal_str(neg, &int, &frac, s)
                });
            // 10^k: k + 1 integer digits, which DECIMAL(p, s) holds when k < p - s.
            let too_wide = (any::<bool>(), digits(t)).prop_map(move |(neg, frac)| {
                let int = format!("1{}", "0".repeat(usize::from(k)));
                decimal_str(neg, &int, &frac, s)
            });
            let miss = if k < p - s {
                prop_oneof![past_scale, too_wide].boxed()
            } else {
                past_scale.boxed()
            };
            let ty = MyType::Decimal {
                p,
                s,
                unsigned: false,
                read_as: Some((k + t, i8::try_from(t).expect("a scale"))),
            };
            (Just(ty), vec(fitting, 0..4), miss)
        })
        .boxed()
}

/// One column whose values end with one rivet must refuse, sometimes followed by more.
fn refusing_table() -> BoxedStrategy<Table> {
    let other = select(vec![
        MyType::Boolean,
        MyType::Date,
        MyType::DateTime(0),
        MyType::Timestamp(6),
    ])
    .prop_flat_map(|ty| {
        let refused = refused(ty).expect("a type with refused values");
        (Just(ty), vec(values(ty), 0..4), refused)
    });
    prop_oneof![3 => narrowed_decimal(), 1 => other]
        .prop_flat_map(|(ty, before, refused)| {
            (
                Just(ty),
                Just(before),
                Just(refused),
                vec(column_values(ty, false), 0..3),
            )
        })
        .prop_map(|(ty, before, refused, after)| {
            let values = before.into_iter().chain([refused]).chain(after);
            (vec![(ty, true)], values.map(|v| vec![v]).collect())
        })
        .boxed()
}

// ---------------------------------------------------------------------------------
// Reading them back
// ---------------------------------------------------------------------------------

/// Decode binary rows as a scan does: on a reader thread, in batches of at most 3 rows.
fn decode(
    columns: Vec<MyColumn>,
    bits: Vec<bool>,
    rows: Vec<Vec<u8>>,
) -> crate::error::Result<Vec<arrow_array::RecordBatch>> {
    let schema = arrow_schema(&columns);
    let stream = BatchStream::spawn(Arc::clone(&schema), 4, move |sink| {
        let limits = BatchLimits::new(3, 1 << 20)?;
        let mut builder = MyBatchBuilder::new(schema, columns, bits, 4);
        for row in &rows {
            make_room(&mut builder, row.len(), &limits, sink)?;
            builder.append_row(row)?;
        }
        flush(&mut builder, sink)?;
        Ok(EndOfData {
            server_rows: rows.len() as u64,
            expected_rows: None,
        })
    });
    drain(stream)
}

/// Encode `rows`, decode them with rivet, and compare: every cell when all values have
/// an Arrow equivalent, else the error of the first one that has none.
fn check((cols, rows): &Table) {
    let types: Vec<MyType> = cols.iter().map(|(ty, _)| *ty).collect();
    let (columns, bits): (Vec<MyColumn>, Vec<bool>) = types
        .iter()
        .enumerate()
        .map(|(i, ty)| ty.mapped(&format!("c{i}")))
        .unzip();
    for (ty, column) in types.iter().zip(&columns) {
        assert_eq!(column.kind.data_type(), ty.arrow_type(), "{ty:?}");
    }
    let mut expected = vec![Vec::new(); cols.len()];
    let mut first_error = None;
    let mut payloads = Vec::new();
    for row in rows {
        let payload = binary_row(&types, row);
        check_row_bytes(&types, row, &payload);
        payloads.push(payload);
        for (i, value) in row.iter().enumerate() {
            let cell = expect(value, types[i], columns[i].kind);
            let read_as = matches!(
                types[i],
                MyType::Decimal {
                    read_as: Some(_),
                    ..
                }
            );
            assert!(
                cell.is_ok() || cols[i].1 || read_as,
                "{value:?} is a value of {:?} but cannot be read as {:?}",
                types[i],
                columns[i].kind
            );
            match cell {
                Ok(cell) => expected[i].push(cell),
                Err(refusal) => {
                    first_error.get_or_insert((columns[i].name.clone(), refusal));
                }
            }
        }
    }
    let outcome = decode(columns.clone(), bits, payloads);
    assert_outcome(outcome, &expected, first_error, |i| {
        format!("{:?} read as {:?}", types[i], columns[i].kind)
    });
}

proptest! {
    #![proptest_config(config(512))]

    /// Every type, NULLs among the values, in binary rows cut into batches.
    #[test]
    fn binary_values_decode_exactly(table in table()) {
        check(&table);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// TINYINT(1) values other than 0 and 1, zero and partial dates, and decimals just
    /// past a narrower decimal's scale or precision: an error naming the column, never
    /// a rounded value or a NULL.
    #[test]
    fn values_without_an_arrow_equivalent_are_refused(table in refusing_table()) {
        check(&table);
    }
}

// ---------------------------------------------------------------------------------
// Text result sets
// ---------------------------------------------------------------------------------

/// A text row: each value a length-encoded string, NULL the byte 0xfb.
fn text_row(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut row = Vec::new();
    for value in values {
        match value {
            None => row.push(0xfb),
            Some(bytes) => row.put_lenenc_str(bytes),
        }
    }
    row
}

fn text_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => "\\PC{0,20}".prop_map(String::into_bytes),
        2 => "\\PC{240,300}".prop_map(String::into_bytes),
        // Not UTF-8: `query` reads it lossily.
        1 => vec(any::<u8>(), 0..20),
        // 64 KiB or more: a 4-byte length.
        1 => (65_536usize..65_600).prop_map(|n| vec![b'x'; n]),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(64))]

    /// Text result sets (the planning queries' answers): each value as `query` returns
    /// it, an empty string apart from NULL.
    #[test]
    fn text_rows_read_exactly(
        (columns, rows) in (1usize..=4).prop_flat_map(|n| {
            (Just(n), vec(vec(option::weighted(0.85, text_value()), n), 0..6))
        }),
        deprecate_eof in any::<bool>(),
    ) {
        let packets: Vec<Vec<u8>> = rows.iter().map(|r| text_row(r)).collect();
        let defs: Arc<[Column]> = (0..columns)
            .map(|_| Column::new(ColumnType::MYSQL_TYPE_VAR_STRING))
            .collect();
        for (row, packet) in rows.iter().zip(&packets) {
            let mut buf = ParseBuf(packet);
            let parsed: RowDeserializer<ServerSide, Text> =
                buf.parse(Arc::clone(&defs)).expect("mysql_common reads the row");
            prop_assert!(buf.is_empty());
            let parsed: Vec<Option<Vec<u8>>> = parsed
                .into_inner()
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::Bytes(b) => Some(b),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(&parsed, row);
        }
        let got = text_result_rows(columns, packets, deprecate_eof).expect("the rows");
        let want: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect()
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
