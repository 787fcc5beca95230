//! Meta columns: the export time and a hash of each row's values.
//!
//! The row hash is xxh3-64 (seed 0) over a canonical encoding of the row's values
//! in column order, so the same row hashes alike across runs, readers and output
//! formats. A value's encoding depends on what it means, not on how wide its Arrow
//! type is: every integer is an `i128`, every float an `f64`, a decimal its
//! unscaled value with trailing zeros removed, a timestamp the instant it names.
//!
//! | value | bytes |
//! |---|---|
//! | NULL | `00` |
//! | boolean | `b`, one byte 0 or 1 |
//! | integer | `i`, i128 little-endian |
//! | float | `f`, f64 bits little-endian (`-0.0` as `0.0`, one NaN) |
//! | decimal | `d`, unscaled i256 little-endian, scale as i8 (smallest scale ≥ 0 that is exact) |
//! | text | `s`, byte length u64 LE, UTF-8 bytes |
//! | binary | `x`, byte length u64 LE, bytes |
//! | date | `D`, days since 1970-01-01 as i64 |
//! | time of day | `t`, nanoseconds since midnight as i64 |
//! | timestamp | `T`, seconds since the epoch i64 (floor), nanoseconds u32 (time zone ignored: an instant) |
//! | duration | `u`, seconds i64 (floor), nanoseconds u32 |
//! | interval | `I`, months i32, days i32, nanoseconds i64 |
//! | list | `l`, element count u64, each element encoded |
//! | struct | `S`, each field encoded |
//!
//! A dictionary-encoded value is encoded as the value it refers to.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalYearMonthType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// Name of the column that holds the export run's time.
pub const EXPORTED_AT: &str = "_rivet_exported_at";
/// Name of the column that holds each row's hash.
pub const ROW_HASH: &str = "_rivet_row_hash";

const NULL: u8 = 0;
const NANOS: i64 = 1_000_000_000;

/// Appends one row's value at an index to the encoding buffer.
type Encoder<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

/// The hash of every row of `batch` (as `i64`, the bits of the unsigned hash).
pub fn row_hashes(batch: &RecordBatch) -> Result<Int64Array> {
    let encoders = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(column, field)| {
            encoder(column.as_ref()).map_err(|m| {
                Error::Config(format!(
                    "meta_columns.row_hash: column {}: {m}",
                    field.name()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut buf = Vec::with_capacity(256);
    let hashes = (0..batch.num_rows()).map(|row| {
        buf.clear();
        for encode in &encoders {
            encode(row, &mut buf);
        }
        i64::from_le_bytes(xxh3_64(&buf).to_le_bytes())
    });
    Ok(Int64Array::from_iter_values(hashes))
}

/// `batch` with the meta columns appended: the export time (microseconds since the
/// epoch, UTC) when given, then the row hash when asked for.
pub fn with_meta_columns(
    batch: &RecordBatch,
    exported_at_us: Option<i64>,
    row_hash: bool,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let hashes = if row_hash {
        Some(row_hashes(batch)?)
    } else {
        None
    };
    if let Some(at) = exported_at_us {
        let values =
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(at, batch.num_rows()))
                .with_timezone("UTC");
        fields.push(Arc::new(Field::new(
            EXPORTED_AT,
            values.data_type().clone(),
            false,
        )));
        columns.push(Arc::new(values));
    }
    if let Some(hashes) = hashes {
        fields.push(Arc::new(Field::new(ROW_HASH, DataType::Int64, false)));
        columns.push(Arc::new(hashes));
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| Error::Internal(format!("adding meta columns failed: {e}")))
}

/// The encoder of one column, NULLs included.
fn encoder(array: &dyn Array) -> std::result::Result<Encoder<'_>, String> {
    let value = value_encoder(array)?;
    Ok(Box::new(move |i, out| {
        if array.is_null(i) {
            out.push(NULL);
        } else {
            value(i, out);
        }
    }))
}

fn value_encoder(array: &dyn Array) -> std::result::Result<Encoder<'_>, String> {
    Ok(match array.data_type() {
        DataType::Null => Box::new(|_, out| out.push(NULL)),
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out| {
                out.push(b'b');
                out.push(u8::from(a.value(i)));
            })
        }
        DataType::Int8 => integer::<Int8Type>(array),
        DataType::Int16 => integer::<Int16Type>(array),
        DataType::Int32 => integer::<Int32Type>(array),
        DataType::Int64 => integer::<Int64Type>(array),
        DataType::UInt8 => integer::<UInt8Type>(array),
        DataType::UInt16 => integer::<UInt16Type>(array),
        DataType::UInt32 => integer::<UInt32Type>(array),
        DataType::UInt64 => integer::<UInt64Type>(array),
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            Box::new(move |i, out| float(a.value(i).to_f64(), out))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            Box::new(move |i, out| float(f64::from(a.value(i)), out))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            Box::new(move |i, out| float(a.value(i), out))
        }
        DataType::Decimal128(_, scale) => {
            let (a, scale) = (array.as_primitive::<Decimal128Type>(), *scale);
            Box::new(move |i, out| decimal(i256::from_i128(a.value(i)), scale, out))
        }
        DataType::Decimal256(_, scale) => {
            let (a, scale) = (array.as_primitive::<Decimal256Type>(), *scale);
            Box::new(move |i, out| decimal(a.value(i), scale, out))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Box::new(move |i, out| bytes(b's', a.value(i).as_bytes(), out))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Box::new(move |i, out| bytes(b's', a.value(i).as_bytes(), out))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            Box::new(move |i, out| bytes(b's', a.value(i).as_bytes(), out))
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            Box::new(move |i, out| bytes(b'x', a.value(i), out))
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            Box::new(move |i, out| bytes(b'x', a.value(i), out))
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            Box::new(move |i, out| bytes(b'x', a.value(i), out))
        }
        DataType::FixedSizeBinary(_) => {
            let a = array.as_fixed_size_binary();
            Box::new(move |i, out| bytes(b'x', a.value(i), out))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            Box::new(move |i, out| tagged(b'D', &i64::from(a.value(i)).to_le_bytes(), out))
        }
        DataType::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            Box::new(move |i, out| {
                tagged(b'D', &a.value(i).div_euclid(86_400_000).to_le_bytes(), out);
            })
        }
        DataType::Time32(TimeUnit::Second) => time::<Time32SecondType>(array, NANOS),
        DataType::Time32(_) => time::<Time32MillisecondType>(array, 1_000_000),
        DataType::Time64(TimeUnit::Microsecond) => time::<Time64MicrosecondType>(array, 1_000),
        DataType::Time64(_) => time::<Time64NanosecondType>(array, 1),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => instant::<TimestampSecondType>(array, b'T', 1),
            TimeUnit::Millisecond => instant::<TimestampMillisecondType>(array, b'T', 1_000),
            TimeUnit::Microsecond => instant::<TimestampMicrosecondType>(array, b'T', 1_000_000),
            TimeUnit::Nanosecond => instant::<TimestampNanosecondType>(array, b'T', NANOS),
        },
        DataType::Duration(unit) => match unit {
            TimeUnit::Second => instant::<DurationSecondType>(array, b'u', 1),
            TimeUnit::Millisecond => instant::<DurationMillisecondType>(array, b'u', 1_000),
            TimeUnit::Microsecond => instant::<DurationMicrosecondType>(array, b'u', 1_000_000),
            TimeUnit::Nanosecond => instant::<DurationNanosecondType>(array, b'u', NANOS),
        },
        DataType::Interval(IntervalUnit::YearMonth) => {
            let a = array.as_primitive::<IntervalYearMonthType>();
            Box::new(move |i, out| interval(a.value(i), 0, 0, out))
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let a = array.as_primitive::<IntervalDayTimeType>();
            Box::new(move |i, out| {
                let v = a.value(i);
                interval(0, v.days, i64::from(v.milliseconds) * 1_000_000, out);
            })
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let a = array.as_primitive::<IntervalMonthDayNanoType>();
            Box::new(move |i, out| {
                let v = a.value(i);
                interval(v.months, v.days, v.nanoseconds, out);
            })
        }
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            let (offsets, items) = (a.value_offsets(), encoder(a.values().as_ref())?);
            list(
                move |i| (offsets[i] as usize, offsets[i + 1] as usize),
                items,
            )
        }
        DataType::LargeList(_) => {
            let a = array.as_list::<i64>();
            let (offsets, items) = (a.value_offsets(), encoder(a.values().as_ref())?);
            list(
                move |i| (offsets[i] as usize, offsets[i + 1] as usize),
                items,
            )
        }
        DataType::FixedSizeList(_, size) => {
            let a = array.as_fixed_size_list();
            let (size, items) = (*size as usize, encoder(a.values().as_ref())?);
            list(move |i| (i * size, (i + 1) * size), items)
        }
        DataType::Struct(_) => {
            let fields = array
                .as_struct()
                .columns()
                .iter()
                .map(|c| encoder(c.as_ref()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Box::new(move |i, out| {
                out.push(b'S');
                for field in &fields {
                    field(i, out);
                }
            })
        }
        DataType::Dictionary(_, _) => {
            let a = array.as_any_dictionary();
            let (keys, values) = (a.normalized_keys(), encoder(a.values().as_ref())?);
            Box::new(move |i, out| values(keys[i], out))
        }
        other => return Err(format!("type {other} has no row-hash encoding")),
    })
}

fn tagged(tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(payload);
}

fn bytes(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(value);
}

fn integer<T>(array: &dyn Array) -> Encoder<'_>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| tagged(b'i', &a.value(i).into().to_le_bytes(), out))
}

fn float(value: f64, out: &mut Vec<u8>) {
    let canonical = if value.is_nan() {
        f64::NAN
    } else if value == 0.0 {
        0.0
    } else {
        value
    };
    tagged(b'f', &canonical.to_bits().to_le_bytes(), out);
}

fn decimal(mut unscaled: i256, mut scale: i8, out: &mut Vec<u8>) {
    let ten = i256::from_i128(10);
    while scale > 0 && unscaled.wrapping_rem(ten) == i256::ZERO {
        unscaled = unscaled.wrapping_div(ten);
        scale -= 1;
    }
    out.push(b'd');
    out.extend_from_slice(&unscaled.to_le_bytes());
    out.extend_from_slice(&scale.to_le_bytes());
}

/// Time of day in `T`'s unit, as nanoseconds (`nanos_per_unit` each).
fn time<T>(array: &dyn Array, nanos_per_unit: i64) -> Encoder<'_>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| {
        let nanos: i64 = a.value(i).into().saturating_mul(nanos_per_unit);
        tagged(b't', &nanos.to_le_bytes(), out);
    })
}

/// A point or span of time in `T`'s unit (`per_second` of them a second) as seconds and nanoseconds.
fn instant<T>(array: &dyn Array, tag: u8, per_second: i64) -> Encoder<'_>
where
    T: ArrowPrimitiveType<Native = i64>,
{
    let a = array.as_primitive::<T>();
    let nanos_per_unit = NANOS / per_second;
    Box::new(move |i, out| {
        let v = a.value(i);
        let nanos = (v.rem_euclid(per_second) * nanos_per_unit) as u32;
        out.push(tag);
        out.extend_from_slice(&v.div_euclid(per_second).to_le_bytes());
        out.extend_from_slice(&nanos.to_le_bytes());
    })
}

fn interval(months: i32, days: i32, nanos: i64, out: &mut Vec<u8>) {
    out.push(b'I');
    out.extend_from_slice(&months.to_le_bytes());
    out.extend_from_slice(&days.to_le_bytes());
    out.extend_from_slice(&nanos.to_le_bytes());
}

fn list<'a>(bounds: impl Fn(usize) -> (usize, usize) + 'a, items: Encoder<'a>) -> Encoder<'a> {
    Box::new(move |i, out| {
        let (start, end) = bounds(i);
        out.push(b'l');
        out.extend_from_slice(&((end - start) as u64).to_le_bytes());
        for item in start..end {
            items(item, out);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Decimal128Array, Float32Array, Float64Array, Int32Array, LargeStringArray, StringArray,
        TimestampMillisecondArray,
    };

    fn one_column(array: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("c", array)]).expect("batch")
    }

    fn hashes(array: ArrayRef) -> Vec<i64> {
        row_hashes(&one_column(array))
            .expect("hash")
            .values()
            .to_vec()
    }

    #[test]
    fn a_value_hashes_alike_whatever_the_width_of_its_type() {
        assert_eq!(
            hashes(Arc::new(Int32Array::from(vec![7, -1]))),
            hashes(Arc::new(Int64Array::from(vec![7, -1])))
        );
        assert_eq!(
            hashes(Arc::new(StringArray::from(vec!["é", ""]))),
            hashes(Arc::new(LargeStringArray::from(vec!["é", ""])))
        );
        assert_eq!(
            hashes(Arc::new(Float32Array::from(vec![1.5]))),
            hashes(Arc::new(Float64Array::from(vec![1.5])))
        );
        let cents = Decimal128Array::from(vec![150])
            .with_precision_and_scale(10, 2)
            .expect("decimal");
        let tenths = Decimal128Array::from(vec![15])
            .with_precision_and_scale(38, 1)
            .expect("decimal");
        assert_eq!(hashes(Arc::new(cents)), hashes(Arc::new(tenths)));
        let ms = TimestampMillisecondArray::from(vec![-1_500]).with_timezone("UTC");
        let us = TimestampMicrosecondArray::from(vec![-1_500_000]);
        assert_eq!(hashes(Arc::new(ms)), hashes(Arc::new(us)));
    }

    #[test]
    fn null_empty_and_values_in_other_columns_are_told_apart() {
        let texts = hashes(Arc::new(StringArray::from(vec![None, Some(""), Some("0")])));
        assert_ne!(texts[0], texts[1]);
        assert_ne!(texts[1], texts[2]);
        // ("ab", "c") and ("a", "bc") must differ: every text carries its length.
        let split = |a: &str, b: &str| {
            let batch = RecordBatch::try_from_iter([
                ("x", Arc::new(StringArray::from(vec![a])) as ArrayRef),
                ("y", Arc::new(StringArray::from(vec![b])) as ArrayRef),
            ])
            .expect("batch");
            row_hashes(&batch).expect("hash").value(0)
        };
        assert_ne!(split("ab", "c"), split("a", "bc"));
        assert_ne!(
            hashes(Arc::new(Int64Array::from(vec![1]))),
            hashes(Arc::new(StringArray::from(vec!["1"])))
        );
    }

    #[test]
    fn the_encoding_is_stable() {
        // Known answer: a change here changes every published hash, so it must be deliberate.
        let mut expected = Vec::new();
        expected.push(b'i');
        expected.extend_from_slice(&42i128.to_le_bytes());
        expected.push(NULL);
        expected.push(b's');
        expected.extend_from_slice(&2u64.to_le_bytes());
        expected.extend_from_slice(b"hi");
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int32Array::from(vec![42])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef,
            ),
            ("c", Arc::new(StringArray::from(vec!["hi"])) as ArrayRef),
        ])
        .expect("batch");
        let want = i64::from_le_bytes(xxh3_64(&expected).to_le_bytes());
        assert_eq!(row_hashes(&batch).expect("hash").value(0), want);
    }

    #[test]
    fn meta_columns_are_appended_in_order() {
        let batch = one_column(Arc::new(Int32Array::from(vec![1, 2])));
        let out = with_meta_columns(&batch, Some(1_700_000_000_000_000), true).expect("meta");
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["c", EXPORTED_AT, ROW_HASH]);
        assert_eq!(out.num_rows(), 2);
        assert_eq!(
            out.column(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }
}
