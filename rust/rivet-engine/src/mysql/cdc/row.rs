//! A binary-log row image written as the binary protocol's row, so the batch read's own
//! decoders (`MyBatchBuilder`) turn a change into Arrow with the same types and refusals as a
//! read of the table.
//!
//! The log stores some values otherwise than the protocol sends them: MEDIUMINT in 3 bytes,
//! YEAR as an offset, TIMESTAMP as Unix seconds, ENUM and SET as numbers. Each is rewritten
//! in the protocol's form for the column's kind, which comes from the source's description.

use crate::error::{Error, Result};
use crate::mysql::cdc::binlog::{Image, Value};
use crate::mysql::types::{MyColumn, MyKind};

/// The members of an ENUM or SET column (`enum('a','b')` as information_schema writes it), in
/// order; None for another type.
pub fn members(column_type: &str) -> Option<Vec<String>> {
    let lower = column_type.to_ascii_lowercase();
    let list = ["enum(", "set("]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &column_type[p.len()..]))?;
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        match chars.next()? {
            '\'' => {
                let mut member = String::new();
                loop {
                    match chars.next()? {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            member.push('\'');
                        }
                        '\'' => break,
                        '\\' => member.push(chars.next()?),
                        c => member.push(c),
                    }
                }
                out.push(member);
            }
            ',' | ' ' => {}
            ')' => return Some(out),
            _ => return None,
        }
    }
}

fn lenenc(out: &mut Vec<u8>, data: &[u8]) {
    match data.len() {
        n @ 0..=250 => out.push(u8::try_from(n).unwrap_or(0)),
        n @ 251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_le_bytes());
        }
        n @ 0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&u32::try_from(n).unwrap_or(0).to_le_bytes()[..3]);
        }
        n => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
    }
    out.extend_from_slice(data);
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u8::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(0);
    let m = u8::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(0);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[allow(clippy::too_many_arguments)]
fn datetime(out: &mut Vec<u8>, y: u16, m: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) {
    out.push(11);
    out.extend_from_slice(&y.to_le_bytes());
    out.extend_from_slice(&[m, d, h, mi, s]);
    out.extend_from_slice(&us.to_le_bytes());
}

fn refuse(column: &MyColumn, value: &Value<'_>) -> Error {
    Error::decode(
        &column.name,
        format!(
            "the binary log holds {value:?}, which its {} column cannot hold",
            column.source_type
        ),
    )
}

/// Append `value` in the protocol's form for `column`.
fn encode(
    out: &mut Vec<u8>,
    column: &MyColumn,
    members: Option<&[String]>,
    value: &Value<'_>,
) -> Result<()> {
    let int = |bits: u64, width: u8, signed: bool| -> u64 {
        // MEDIUMINT is 3 bytes in the log, 4 on the wire.
        if signed && width == 3 && bits & 0x80_0000 != 0 {
            bits | 0xffff_ffff_ff00_0000
        } else {
            bits
        }
    };
    match (column.kind, value) {
        (MyKind::Bool | MyKind::Int8 | MyKind::UInt8, Value::Int(bits, _)) => {
            out.push(u8::try_from(bits & 0xff).unwrap_or(0));
        }
        (MyKind::Bool, Value::Bit(bits)) => lenenc(out, &[u8::try_from(*bits & 0xff).unwrap_or(0)]),
        (MyKind::Int16 | MyKind::UInt16, Value::Int(bits, _)) => {
            out.extend_from_slice(&(*bits as u16).to_le_bytes());
        }
        (MyKind::Int16, Value::Year(y)) => out.extend_from_slice(&y.to_le_bytes()),
        (MyKind::Int32 | MyKind::UInt32, Value::Int(bits, width)) => {
            let v = int(*bits, *width, column.kind == MyKind::Int32);
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        (MyKind::Int64 | MyKind::UInt64, Value::Int(bits, width)) => {
            out.extend_from_slice(&int(*bits, *width, column.kind == MyKind::Int64).to_le_bytes());
        }
        (MyKind::Float32, Value::Float(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (MyKind::Float64, Value::Double(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (MyKind::Decimal(..), Value::Decimal(text)) => lenenc(out, text.as_bytes()),
        (MyKind::Text | MyKind::Binary, Value::Bytes(b)) => lenenc(out, b),
        (MyKind::Text, Value::Enum(i)) => {
            let label = match (members, usize::from(*i)) {
                (_, 0) => "",
                (Some(m), i) => m.get(i - 1).map_or("", String::as_str),
                (None, _) => return Err(refuse(column, value)),
            };
            lenenc(out, label.as_bytes());
        }
        (MyKind::Text, Value::Set(bits)) => {
            let m = members.ok_or_else(|| refuse(column, value))?;
            let labels: Vec<&str> = m
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < 64 && bits & (1 << i) != 0)
                .map(|(_, s)| s.as_str())
                .collect();
            lenenc(out, labels.join(",").as_bytes());
        }
        (MyKind::Bits | MyKind::UInt64, Value::Bit(bits)) => {
            let bytes = bits.to_be_bytes();
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
            lenenc(out, &bytes[first..]);
        }
        (MyKind::Date, Value::Date(y, m, d)) => {
            out.push(4);
            out.extend_from_slice(&y.to_le_bytes());
            out.extend_from_slice(&[*m, *d]);
        }
        (MyKind::DateTime, Value::DateTime(y, m, d, h, mi, s, us)) => {
            datetime(out, *y, *m, *d, *h, *mi, *s, *us);
        }
        (MyKind::Timestamp, Value::Timestamp(seconds, us)) => {
            let seconds = i64::from(*seconds);
            let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
            let of_day = seconds.rem_euclid(86_400);
            let part = |x: i64| u8::try_from(x).unwrap_or(0);
            datetime(
                out,
                u16::try_from(y).unwrap_or(0),
                m,
                d,
                part(of_day / 3600),
                part(of_day / 60 % 60),
                part(of_day % 60),
                *us,
            );
        }
        (MyKind::Time, Value::Time(negative, h, m, s, us)) => {
            out.push(12);
            out.push(u8::from(*negative));
            out.extend_from_slice(&u32::from(*h / 24).to_le_bytes());
            out.extend_from_slice(&[u8::try_from(*h % 24).unwrap_or(0), *m, *s]);
            out.extend_from_slice(&us.to_le_bytes());
        }
        _ => return Err(refuse(column, value)),
    }
    Ok(())
}

/// The protocol row (`0x00`, the NULL bitmap at offset 2, the values) of `image`, for the
/// table's `columns` (with each ENUM/SET column's `members`); columns the image does not carry
/// are NULL here and named by the caller.
pub fn protocol_row(
    image: &Image<'_>,
    columns: &[MyColumn],
    members: &[Option<Vec<String>>],
    out: &mut Vec<u8>,
) -> Result<()> {
    if image.len() != columns.len() {
        return Err(Error::Integrity(format!(
            "the binary log has a row of {} columns for a table of {}",
            image.len(),
            columns.len()
        )));
    }
    out.clear();
    out.push(0);
    let bitmap_at = out.len();
    out.resize(bitmap_at + (columns.len() + 9) / 8, 0);
    for (i, value) in image.iter().enumerate() {
        match value {
            None | Some(Value::Null) => out[bitmap_at + (i + 2) / 8] |= 1 << ((i + 2) % 8),
            Some(v) => encode(
                out,
                &columns[i],
                members.get(i).and_then(|m| m.as_deref()),
                v,
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_as_information_schema_writes_them() {
        assert_eq!(members("enum('a','b')"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(
            members("set('x','it''s',',')"),
            Some(vec!["x".into(), "it's".into(), ",".into()])
        );
        assert_eq!(members("varchar(20)"), None);
        assert_eq!(members("enum('unclosed"), None);
    }

    fn column(name: &str, kind: MyKind, source_type: &str) -> MyColumn {
        MyColumn {
            name: name.into(),
            kind,
            source_type: source_type.into(),
            logical: None,
        }
    }

    /// The first row the golden log wrote, through the batch read's decoders.
    #[test]
    fn a_logged_row_decodes_as_a_read_of_the_table_would() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::*;

        use crate::batch::RowBatch;
        use crate::metadata::arrow_schema;
        use crate::mysql::cdc::binlog::{event, kind, rows, table_map};
        use crate::mysql::decode::MyBatchBuilder;

        let hex: String = include_str!("binlog/golden.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        let log: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let (mut at, mut map, mut image) = (4, None, None);
        while at < log.len() && image.is_none() {
            let (e, size) = event(&log[at..], true).expect("event");
            match e.header.kind {
                kind::TABLE_MAP => map = Some(table_map(e.body).expect("map")),
                kind::WRITE_ROWS_V1 => {
                    let r = rows(e.header.kind, e.body, map.as_ref().expect("map")).expect("rows");
                    image = r.rows.into_iter().next().and_then(|(_, after)| after);
                }
                _ => {}
            }
            at += size;
        }
        let image = image.expect("a written row");
        let columns = vec![
            column("id", MyKind::Int32, "int"),
            column("big", MyKind::UInt64, "bigint unsigned"),
            column("amount", MyKind::Decimal(15, 2), "decimal(15,2)"),
            column("name", MyKind::Text, "varchar(20)"),
            column("note", MyKind::Text, "text"),
            column("at", MyKind::DateTime, "datetime(6)"),
            column("d", MyKind::Date, "date"),
            column("ts", MyKind::Timestamp, "timestamp(6)"),
            column("f", MyKind::Float64, "double"),
            column("tiny", MyKind::Int8, "tinyint"),
            column("bin", MyKind::Binary, "blob"),
            column("tm", MyKind::Time, "time(6)"),
            column("y", MyKind::Int16, "year"),
            column("e", MyKind::Text, "enum('a','b')"),
            column("s", MyKind::Text, "set('x','y')"),
            column("b", MyKind::Bits, "bit(10)"),
        ];
        let members: Vec<_> = columns.iter().map(|c| members(&c.source_type)).collect();
        let bits: Vec<bool> = columns.iter().map(|c| c.kind == MyKind::Bits).collect();
        let mut batch = MyBatchBuilder::new(arrow_schema(&columns), columns.clone(), bits, 4);
        let mut payload = Vec::new();
        protocol_row(&image, &columns, &members, &mut payload).expect("encodes");
        batch.append_row(&payload).expect("decodes");
        let b = batch.finish().expect("batch");
        assert_eq!(b.column(0).as_primitive::<Int32Type>().value(0), 1);
        assert_eq!(b.column(1).as_primitive::<UInt64Type>().value(0), u64::MAX);
        assert_eq!(
            b.column(2).as_primitive::<Decimal128Type>().value(0),
            -123_456_789_012_345
        );
        assert_eq!(b.column(3).as_string::<i32>().value(0), "Grüße 🎉");
        // 2024-02-29 12:34:56.123456 and 2024-01-02 03:04:05.678901 (UTC), in microseconds.
        assert_eq!(
            b.column(5)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_709_210_096_123_456
        );
        assert_eq!(
            b.column(7)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_704_164_645_678_901
        );
        assert_eq!(b.column(9).as_primitive::<Int8Type>().value(0), -128);
        assert_eq!(
            b.column(11)
                .as_primitive::<DurationMicrosecondType>()
                .value(0),
            -(838 * 3600 + 59 * 60 + 59) * 1_000_000
        );
        assert_eq!(b.column(12).as_primitive::<Int16Type>().value(0), 2155);
        assert_eq!(b.column(13).as_string::<i32>().value(0), "b");
        assert_eq!(b.column(14).as_string::<i32>().value(0), "x,y");
        assert_eq!(
            b.column(15).as_primitive::<UInt64Type>().value(0),
            0b10_1010_1010
        );
    }

    #[test]
    fn days_become_dates_as_the_calendar_has_them() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
