//! Differential tests of the value decoders: values made in Rust, written in a server's
//! wire form by an independent encoder, read back by rivet the way a scan reads them,
//! and compared with the originals in an exact form.
//!
//! The fuzz targets prove that a decoder survives any bytes; these prove that it reads
//! valid bytes right. PostgreSQL values are written by `postgres-types` (with chrono,
//! uuid and serde_json), `rust_decimal` and `pg_interval`, and read from a binary COPY
//! stream; MySQL values are written by `mysql_common` and read from binary rows (and
//! text result sets).
//!
//! Each property runs a few hundred cases (a few seconds in all); run more with
//! `PROPTEST_CASES=5000 cargo test -p rivet-engine differential::`. A failure prints
//! the smallest input found: fix the decoder, and keep that input as a test beside it.

mod mysql;
mod pg;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, DurationMicrosecondType, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType, TimestampMicrosecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::error::Result;
use crate::stream::BatchStream;

/// One value in a form that compares exactly: integers (and dates, times, durations as
/// their counts) widened, floats as their bits, decimals as the text of their unscaled
/// integer at the Arrow type's scale.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i128),
    Float(u64),
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Interval { months: i32, days: i32, micros: i64 },
    List(Vec<Cell>),
}

/// Proptest settings: `cases` unless `PROPTEST_CASES` says otherwise; a failure prints
/// its smallest input instead of writing it to a file.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c.max_shrink_iters = 2048;
    c.max_shrink_time = 30_000;
    c
}

/// JSON documents, nested a few levels.
fn json() -> BoxedStrategy<serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Every batch a stream delivers, or its error.
fn drain(mut stream: BatchStream) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    while let Some(batch) = stream.next_blocking()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// Column `col` of `batches`, one cell per row.
fn column_cells(batches: &[RecordBatch], col: usize) -> Vec<Cell> {
    batches
        .iter()
        .flat_map(|b| cells(b.column(col).as_ref()))
        .collect()
}

fn primitive<T: ArrowPrimitiveType>(
    array: &dyn Array,
    cell: impl Fn(T::Native) -> Cell,
) -> Vec<Cell> {
    array
        .as_primitive::<T>()
        .iter()
        .map(|v| v.map_or(Cell::Null, &cell))
        .collect()
}

/// The cells of an array of any type the readers produce.
fn cells(array: &dyn Array) -> Vec<Cell> {
    let int = |v: i128| Cell::Int(v);
    match array.data_type() {
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Cell::Null, Cell::Bool))
            .collect(),
        DataType::Int8 => primitive::<Int8Type>(array, |v| int(v.into())),
        DataType::Int16 => primitive::<Int16Type>(array, |v| int(v.into())),
        DataType::Int32 => primitive::<Int32Type>(array, |v| int(v.into())),
        DataType::Int64 => primitive::<Int64Type>(array, |v| int(v.into())),
        DataType::UInt8 => primitive::<UInt8Type>(array, |v| int(v.into())),
        DataType::UInt16 => primitive::<UInt16Type>(array, |v| int(v.into())),
        DataType::UInt32 => primitive::<UInt32Type>(array, |v| int(v.into())),
        DataType::UInt64 => primitive::<UInt64Type>(array, |v| int(v.into())),
        DataType::Float32 => primitive::<Float32Type>(array, |v| Cell::Float(v.to_bits().into())),
        DataType::Float64 => primitive::<Float64Type>(array, |v| Cell::Float(v.to_bits())),
        DataType::Decimal128(..) => {
            primitive::<Decimal128Type>(array, |v| Cell::Decimal(v.to_string()))
        }
        DataType::Decimal256(..) => {
            primitive::<Decimal256Type>(array, |v| Cell::Decimal(v.to_string()))
        }
        DataType::Date32 => primitive::<Date32Type>(array, |v| int(v.into())),
        DataType::Time64(TimeUnit::Microsecond) => {
            primitive::<Time64MicrosecondType>(array, |v| int(v.into()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            primitive::<TimestampMicrosecondType>(array, |v| int(v.into()))
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            primitive::<DurationMicrosecondType>(array, |v| int(v.into()))
        }
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Cell::Null, |s| Cell::Text(s.into())))
            .collect(),
        DataType::Binary => array
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map_or(Cell::Null, |b| Cell::Bytes(b.into())))
            .collect(),
        DataType::Struct(_) => {
            let s = array.as_struct();
            let months = s.column(0).as_primitive::<Int32Type>();
            let days = s.column(1).as_primitive::<Int32Type>();
            let micros = s.column(2).as_primitive::<Int64Type>();
            (0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Interval {
                            months: months.value(i),
                            days: days.value(i),
                            micros: micros.value(i),
                        }
                    }
                })
                .collect()
        }
        DataType::List(_) => array
            .as_list::<i32>()
            .iter()
            .map(|v| v.map_or(Cell::Null, |items| Cell::List(cells(items.as_ref()))))
            .collect(),
        other => panic!("no cells for {other}"),
    }
}

/// Parts of the messages rivet may give when it must refuse a value (any one of them
/// when more than one reason applies).
type Refusal = &'static [&'static str];

/// A decimal with nonzero digits past the scale.
const EXCESS_SCALE: Refusal = &["more fractional digits than the column's scale"];
/// A decimal with more digits than the precision.
const OVERFLOW: Refusal = &["does not fit the column's decimal precision"];
/// Both: which one a decoder finds first is its own business.
const EXCESS_OR_OVERFLOW: Refusal = &[EXCESS_SCALE[0], OVERFLOW[0]];

/// The decimal `[-]int.frac` (digit strings, either may be empty) as the unscaled
/// integer of a decimal(precision, scale), worked out on its digits; or the refusal a
/// value that does not fit must get (it is never rounded).
fn unscaled(
    negative: bool,
    int: &str,
    frac: &str,
    precision: u8,
    scale: i8,
) -> std::result::Result<String, Refusal> {
    let scale = usize::try_from(scale).expect("readers use scales >= 0");
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    let excess = dropped.bytes().any(|d| d != b'0');
    let digits = format!("{int}{kept:0<scale$}");
    let digits = digits.trim_start_matches('0');
    let overflow = digits.len() > usize::from(precision);
    match (excess, overflow) {
        (true, true) => Err(EXCESS_OR_OVERFLOW),
        (true, false) => Err(EXCESS_SCALE),
        (false, true) => Err(OVERFLOW),
        (false, false) if digits.is_empty() => Ok("0".into()),
        (false, false) if negative => Ok(format!("-{digits}")),
        (false, false) => Ok(digits.into()),
    }
}

/// Whether `message` is one that `refusal` allows.
fn refused_with(message: &str, refusal: Refusal) -> bool {
    refusal.iter().any(|part| message.contains(part))
}

/// A decode's outcome against what was expected: with no value to refuse, every column's
/// cells; else the refusal, named after the column of the first value refused.
/// `describe(i)` says what column `i` is, for a failure message.
fn assert_outcome(
    outcome: Result<Vec<RecordBatch>>,
    expected: &[Vec<Cell>],
    first_error: Option<(String, Refusal)>,
    describe: impl Fn(usize) -> String,
) {
    match (first_error, outcome) {
        (None, Ok(batches)) => {
            for (i, want) in expected.iter().enumerate() {
                assert_eq!(
                    &column_cells(&batches, i),
                    want,
                    "column {i} ({})",
                    describe(i)
                );
            }
        }
        (Some((column, refusal)), Err(crate::error::Error::Decode { column: c, message })) => {
            assert_eq!(c, column, "{message}");
            assert!(
                refused_with(&message, refusal),
                "expected {refusal:?} in: {message}"
            );
        }
        (want, got) => panic!("expected {want:?}, got {got:?}"),
    }
}

#[test]
fn unscaled_works_on_digits() {
    assert_eq!(unscaled(false, "12", "5", 5, 2), Ok("1250".into()));
    assert_eq!(unscaled(true, "", "050", 3, 2), Ok("-5".into()));
    assert_eq!(unscaled(true, "000", "", 1, 0), Ok("0".into()));
    assert_eq!(unscaled(false, "1", "25", 5, 1), Err(EXCESS_SCALE));
    assert_eq!(unscaled(false, "1", "20", 5, 1), Ok("12".into()));
    assert_eq!(unscaled(false, "100", "", 2, 0), Err(OVERFLOW));
    assert_eq!(unscaled(false, "100", "5", 2, 0), Err(EXCESS_OR_OVERFLOW));
}
