//! Strict conversion of SQLite values into Arrow builders.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use rusqlite::types::ValueRef;

use crate::sqlite::types::SqliteKind;
use crate::temporal::{days_from_civil, days_in_month};

/// One column's builder.
pub enum SqliteBuilder {
    /// INTEGER
    Int64(Int64Builder),
    /// REAL
    Float64(Float64Builder),
    /// TEXT
    Text(StringBuilder),
    /// BLOB
    Binary(BinaryBuilder),
    /// BOOLEAN
    Bool(BooleanBuilder),
    /// DATE
    Date(Date32Builder),
    /// DATETIME
    Timestamp(TimestampMicrosecondBuilder),
    /// DECIMAL(p,s)
    Decimal(Decimal128Builder, i8, i128),
}

fn describe(v: &ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("integer {i}"),
        ValueRef::Real(f) => format!("real {f}"),
        ValueRef::Text(t) => format!("text '{}'", String::from_utf8_lossy(&t[..t.len().min(40)])),
        ValueRef::Blob(b) => format!("blob of {} bytes", b.len()),
    }
}

impl SqliteBuilder {
    /// A builder for `kind`.
    pub fn new(kind: SqliteKind, capacity: usize) -> Self {
        match kind {
            SqliteKind::Int64 => SqliteBuilder::Int64(Int64Builder::with_capacity(capacity)),
            SqliteKind::Float64 => SqliteBuilder::Float64(Float64Builder::with_capacity(capacity)),
            SqliteKind::Text => {
                SqliteBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            SqliteKind::Binary => {
                SqliteBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            SqliteKind::Bool => SqliteBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            SqliteKind::Date => SqliteBuilder::Date(Date32Builder::with_capacity(capacity)),
            SqliteKind::Timestamp => {
                SqliteBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            SqliteKind::Decimal(p, s) => SqliteBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(p, s)
                    .expect("validated precision"),
                s,
                10i128.pow(u32::from(p)),
            ),
        }
    }

    /// Append a value, refusing one that does not match the declared type.
    pub fn append(&mut self, v: ValueRef<'_>) -> Result<(), String> {
        let mismatch = |want: &str| format!("declared {want} but holds {}", describe(&v));
        if let ValueRef::Null = v {
            match self {
                SqliteBuilder::Int64(b) => b.append_null(),
                SqliteBuilder::Float64(b) => b.append_null(),
                SqliteBuilder::Text(b) => b.append_null(),
                SqliteBuilder::Binary(b) => b.append_null(),
                SqliteBuilder::Bool(b) => b.append_null(),
                SqliteBuilder::Date(b) => b.append_null(),
                SqliteBuilder::Timestamp(b) => b.append_null(),
                SqliteBuilder::Decimal(b, ..) => b.append_null(),
            }
            return Ok(());
        }
        match (self, v) {
            (SqliteBuilder::Int64(b), ValueRef::Integer(i)) => b.append_value(i),
            (SqliteBuilder::Int64(_), _) => return Err(mismatch("INTEGER")),
            (SqliteBuilder::Float64(b), ValueRef::Real(f)) => b.append_value(f),
            (SqliteBuilder::Float64(b), ValueRef::Integer(i)) if i.unsigned_abs() <= 1 << 53 => {
                b.append_value(i as f64);
            }
            (SqliteBuilder::Float64(_), _) => return Err(mismatch("REAL")),
            (SqliteBuilder::Text(b), ValueRef::Text(t)) => {
                b.append_value(std::str::from_utf8(t).map_err(|e| format!("invalid UTF-8: {e}"))?);
            }
            (SqliteBuilder::Text(_), _) => return Err(mismatch("TEXT")),
            (SqliteBuilder::Binary(b), ValueRef::Blob(x)) => b.append_value(x),
            (SqliteBuilder::Binary(_), _) => return Err(mismatch("BLOB")),
            (SqliteBuilder::Bool(b), ValueRef::Integer(0)) => b.append_value(false),
            (SqliteBuilder::Bool(b), ValueRef::Integer(1)) => b.append_value(true),
            (SqliteBuilder::Bool(_), _) => return Err(mismatch("BOOLEAN (0 or 1)")),
            (SqliteBuilder::Date(b), ValueRef::Text(t)) => {
                b.append_value(parse_date(t).ok_or_else(|| mismatch("DATE (YYYY-MM-DD)"))?);
            }
            (SqliteBuilder::Date(_), _) => return Err(mismatch("DATE (YYYY-MM-DD)")),
            (SqliteBuilder::Timestamp(b), ValueRef::Text(t)) => {
                b.append_value(
                    parse_timestamp(t)
                        .ok_or_else(|| mismatch("DATETIME (YYYY-MM-DD HH:MM:SS[.ffffff])"))?,
                );
            }
            (SqliteBuilder::Timestamp(_), _) => {
                return Err(mismatch("DATETIME (YYYY-MM-DD HH:MM:SS[.ffffff])"));
            }
            (SqliteBuilder::Decimal(b, scale, bound), v) => {
                let text = match v {
                    ValueRef::Integer(i) => i.to_string(),
                    // Rust prints the shortest text that reads back as the same double.
                    ValueRef::Real(f) if f.is_finite() => format!("{f}"),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    _ => return Err(mismatch("DECIMAL")),
                };
                let value = parse_decimal(&text, *scale)
                    .filter(|u| u.unsigned_abs() < bound.unsigned_abs())
                    .ok_or_else(|| {
                        format!("value {text} does not fit decimal with scale {scale} (it is never rounded)")
                    })?;
                b.append_value(value);
            }
        }
        Ok(())
    }

    /// Take the built column.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            SqliteBuilder::Int64(b) => Arc::new(b.finish()),
            SqliteBuilder::Float64(b) => Arc::new(b.finish()),
            SqliteBuilder::Text(b) => Arc::new(b.finish()),
            SqliteBuilder::Binary(b) => Arc::new(b.finish()),
            SqliteBuilder::Bool(b) => Arc::new(b.finish()),
            SqliteBuilder::Date(b) => Arc::new(b.finish()),
            SqliteBuilder::Timestamp(b) => Arc::new(b.finish()),
            SqliteBuilder::Decimal(b, ..) => Arc::new(b.finish()),
        }
    }
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_date(t: &[u8]) -> Option<i32> {
    if t.len() != 10 || t[4] != b'-' || t[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&t[0..4])?, digits(&t[5..7])?, digits(&t[8..10])?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

fn parse_timestamp(t: &[u8]) -> Option<i64> {
    let days = i64::from(parse_date(t.get(0..10)?)?);
    let rest = &t[10..];
    if rest.is_empty() {
        return Some(days * 86_400_000_000);
    }
    if rest.len() < 9 || !(rest[0] == b' ' || rest[0] == b'T') || rest[3] != b':' || rest[6] != b':'
    {
        return None;
    }
    let (h, mi, s) = (
        digits(&rest[1..3])?,
        digits(&rest[4..6])?,
        digits(&rest[7..9])?,
    );
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut micros = 0;
    let frac = &rest[9..];
    if !frac.is_empty() {
        if frac[0] != b'.' || frac.len() < 2 || frac.len() > 7 {
            return None;
        }
        let f = &frac[1..];
        micros = digits(f)? * 10i64.pow(6 - f.len() as u32);
    }
    Some(days * 86_400_000_000 + ((h * 60 + mi) * 60 + s) * 1_000_000 + micros)
}

/// Unscaled value of decimal text at `scale`, or `None` if it has more fractional digits.
fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    // Accept exponents as produced for large or tiny doubles.
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all = format!("{int}{frac}");
    if !all.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    let shift = i32::from(scale) - frac.len() as i32 + exp;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        let p = 10i128.checked_pow((-shift) as u32)?;
        if value % p != 0 {
            return None;
        }
        value /= p;
    }
    Some(if neg { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(parse_date(b"2000-01-01"), Some(10_957));
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_timestamp(b"1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(
            parse_timestamp(b"1970-01-02T00:00:00"),
            Some(86_400_000_000)
        );
        assert_eq!(parse_timestamp(b"1970-01-01 25:00:00"), None);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.5", 2), Some(1250));
        assert_eq!(parse_decimal("-0.01", 2), Some(-1));
        assert_eq!(parse_decimal("1.125", 2), None);
        assert_eq!(parse_decimal("1e2", 0), Some(100));
        assert_eq!(parse_decimal("abc", 2), None);
    }
}
