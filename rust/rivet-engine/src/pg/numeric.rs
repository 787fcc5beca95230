//! Exact decoding of PostgreSQL's binary `numeric` into scaled decimal integers.
//!
//! The wire form is base-10000 digits with a weight; we rebuild the unscaled
//! integer at the target scale and refuse (never round) a value with more
//! fractional digits than the scale or more digits than the precision.

use arrow_buffer::i256;

use crate::decimal::DecimalInt;

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Why a numeric could not become a decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumericError {
    /// Not a valid binary numeric.
    Malformed(String),
    /// NaN or an infinity.
    NotFinite(&'static str),
    /// More fractional digits than the scale (the value text).
    ExcessScale(String),
    /// Too many digits for the precision, or for the integer type (the value text).
    Overflow(String),
}

impl std::fmt::Display for NumericError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumericError::Malformed(m) => write!(f, "malformed numeric ({m})"),
            NumericError::NotFinite(v) => write!(f, "{v} cannot be stored in a decimal column"),
            NumericError::ExcessScale(v) => write!(
                f,
                "value {v} has more fractional digits than the column's scale (it is never rounded)"
            ),
            NumericError::Overflow(v) => {
                write!(f, "value {v} does not fit the column's decimal precision")
            }
        }
    }
}

/// Decode into an i128 decimal, using 256-bit arithmetic for values whose
/// intermediate form is wider than 128 bits.
pub fn decode_i128(raw: &[u8], scale: i8, bound: i128) -> Result<i128, NumericError> {
    // Most values fit 64-bit arithmetic, which is several times cheaper.
    if let Ok(small) = i64::try_from(bound) {
        if let Ok(v) = decode::<i64>(raw, scale, small) {
            return Ok(i128::from(v));
        }
    }
    match decode::<i128>(raw, scale, bound) {
        Err(NumericError::Overflow(_)) => {
            let wide = decode::<i256>(raw, scale, i256::from_i128(bound))?;
            wide.to_i128()
                .ok_or_else(|| NumericError::Overflow(render(raw)))
        }
        other => other,
    }
}

fn be_u16(raw: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([raw[at], raw[at + 1]])
}

/// Decode `raw` as the unscaled integer of a decimal with `scale` fractional
/// digits whose absolute value stays below `bound` (10^precision).
pub fn decode<T: DecimalInt>(raw: &[u8], scale: i8, bound: T) -> Result<T, NumericError> {
    if raw.len() < 8 {
        return Err(NumericError::Malformed(format!("{} bytes", raw.len())));
    }
    let mut ndigits = usize::from(be_u16(raw, 0));
    let weight = i32::from(be_u16(raw, 2) as i16);
    let sign = be_u16(raw, 4);
    if raw.len() != 8 + 2 * ndigits {
        return Err(NumericError::Malformed(format!(
            "{} bytes for {ndigits} digits",
            raw.len()
        )));
    }
    match sign {
        NUMERIC_NAN => return Err(NumericError::NotFinite("NaN")),
        NUMERIC_PINF => return Err(NumericError::NotFinite("Infinity")),
        NUMERIC_NINF => return Err(NumericError::NotFinite("-Infinity")),
        0 | NUMERIC_NEG => {}
        other => return Err(NumericError::Malformed(format!("sign 0x{other:04x}"))),
    }
    if ndigits == 0 {
        return Ok(T::ZERO);
    }
    let digit = |i: usize| be_u16(raw, 8 + 2 * i);
    let overflow = || NumericError::Overflow(render(raw));
    let excess = || NumericError::ExcessScale(render(raw));
    // The digits, read as one integer, are the value times 10^(4 * (ndigits - 1 - weight)).
    let mut shift = i32::from(scale) - 4 * (ndigits as i32 - 1 - weight);
    // Digits past the scale must be zeros: drop whole groups, then part of the last one,
    // so no wide division is needed.
    while shift <= -4 {
        if digit(ndigits - 1) != 0 {
            return Err(excess());
        }
        ndigits -= 1;
        shift += 4;
        if ndigits == 0 {
            return Ok(T::ZERO);
        }
    }
    let mut acc = T::ZERO;
    for i in 0..ndigits - 1 {
        acc = acc.push_digit(digit(i)).ok_or_else(overflow)?;
    }
    let last = digit(ndigits - 1);
    let unscaled = if shift < 0 {
        let cut = POW10_U16[(-shift) as usize];
        if last % cut != 0 {
            return Err(excess());
        }
        acc.mul_pow10((4 + shift) as u32)
            .and_then(|a| a.add_small(last / cut))
            .ok_or_else(overflow)?
    } else {
        acc.push_digit(last)
            .and_then(|a| a.mul_pow10(shift as u32))
            .ok_or_else(overflow)?
    };
    if unscaled >= bound {
        return Err(overflow());
    }
    Ok(if sign == NUMERIC_NEG {
        unscaled.neg()
    } else {
        unscaled
    })
}

const POW10_U16: [u16; 4] = [1, 10, 100, 1000];

/// The most digits an error message spells out. A numeric may have 131072 digits before
/// its point and 16383 after, and a 10-byte value from a server can claim as many.
const RENDER_MAX_DIGITS: usize = 100;

/// Text of a binary numeric, for error messages (summarized past [`RENDER_MAX_DIGITS`]).
pub fn render(raw: &[u8]) -> String {
    if raw.len() < 8 {
        return "<malformed>".into();
    }
    let ndigits = usize::from(be_u16(raw, 0));
    let weight = i32::from(be_u16(raw, 2) as i16);
    let sign = be_u16(raw, 4);
    let dscale = usize::from(be_u16(raw, 6));
    match sign {
        NUMERIC_NAN => return "NaN".into(),
        NUMERIC_PINF => return "Infinity".into(),
        NUMERIC_NINF => return "-Infinity".into(),
        _ => {}
    }
    if raw.len() != 8 + 2 * ndigits {
        return "<malformed>".into();
    }
    let sign = if sign == NUMERIC_NEG { "-" } else { "" };
    let int_digits = 4 * (weight.max(0) as usize + 1);
    if int_digits + dscale > RENDER_MAX_DIGITS {
        return format!("{sign}<a number of about {int_digits} digits and {dscale} decimals>");
    }
    let digit = |i: i32| -> u16 {
        if i >= 0 && (i as usize) < ndigits {
            be_u16(raw, 8 + 2 * i as usize)
        } else {
            0
        }
    };
    let mut int_part = String::new();
    for i in 0..=weight.max(0) {
        let d = if weight < 0 { 0 } else { digit(i) };
        if int_part.is_empty() {
            int_part.push_str(&d.to_string());
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(i)));
        i += 1;
    }
    frac.truncate(dscale);
    if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encode a decimal string the way PostgreSQL's numeric_send does.
    fn encode(text: &str) -> Vec<u8> {
        let (neg, t) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let dscale = frac.len() as u16;
        let int_pad = (4 - int.len() % 4) % 4;
        let int_s = format!("{}{}", "0".repeat(int_pad), int);
        let frac_pad = (4 - frac.len() % 4) % 4;
        let frac_s = format!("{}{}", frac, "0".repeat(frac_pad));
        let mut groups: Vec<u16> = Vec::new();
        for c in int_s
            .as_bytes()
            .chunks(4)
            .chain(frac_s.as_bytes().chunks(4))
        {
            groups.push(std::str::from_utf8(c).unwrap().parse().unwrap());
        }
        let mut weight = (int_s.len() / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let mut out = Vec::new();
        out.extend((groups.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend((if neg { NUMERIC_NEG } else { 0 }).to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for g in groups {
            out.extend(g.to_be_bytes());
        }
        out
    }

    fn d128(text: &str, p: u32, s: i8) -> Result<i128, NumericError> {
        decode_i128(&encode(text), s, 10i128.pow(p))
    }

    #[test]
    fn exact_values() {
        assert_eq!(d128("12345.67", 15, 2), Ok(1234567));
        assert_eq!(d128("-0.01", 15, 2), Ok(-1));
        assert_eq!(d128("0", 15, 2), Ok(0));
        assert_eq!(d128("10000", 15, 2), Ok(1000000));
        assert_eq!(d128("1.5", 15, 4), Ok(15000));
        assert_eq!(d128("12300", 7, 0), Ok(12300));
        assert_eq!(
            d128("99999999999999999999999999999999999999", 38, 0),
            Ok(99999999999999999999999999999999999999)
        );
        assert_eq!(
            d128("0.00000000000000000000000000000000000001", 38, 38),
            Ok(1)
        );
        // 28 integer + 10 fraction digits: the base-10000 groups overflow i128 on the way.
        assert_eq!(
            d128("1234567890123456789012345678.1234567890", 38, 10),
            Ok(12345678901234567890123456781234567890)
        );
    }

    #[test]
    fn trailing_groups_and_zeros() {
        assert_eq!(d128("100000000", 15, 2), Ok(10000000000));
        assert_eq!(d128("0.5", 3, 1), Ok(5));
        assert_eq!(d128("12.3400", 10, 2), Ok(1234));
        assert_eq!(d128("0.0001", 10, 4), Ok(1));
        assert!(d128("0.0001", 10, 3).is_err());
        assert_eq!(
            d128("-99999999999999999999.99", 24, 2),
            Ok(-9999999999999999999999)
        );
    }

    #[test]
    fn never_rounds() {
        let err = d128("1.125", 15, 2).expect_err("refused").to_string();
        assert!(err.contains("1.125"), "{err}");
        assert!(err.contains("never rounded"), "{err}");
        assert!(matches!(d128("1000", 3, 0), Err(NumericError::Overflow(_))));
    }

    #[test]
    fn nan_and_infinity_are_refused() {
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(
            decode::<i128>(&nan, 2, 100),
            Err(NumericError::NotFinite("NaN"))
        );
    }

    #[test]
    fn wide_values_use_256_bits() {
        let text = "1234567890123456789012345678901234567890.123456789";
        let v =
            decode::<i256>(&encode(text), 9, i256::from_i128(10).wrapping_pow(60)).expect("fits");
        assert_eq!(
            v.to_string(),
            "1234567890123456789012345678901234567890123456789"
        );
        assert_eq!(render(&encode(text)), text);
        assert_eq!(render(&encode("-0.05")), "-0.05");
    }

    #[test]
    fn huge_values_are_summarized_in_messages() {
        // Found by the fuzz targets: 10 bytes claiming 23536 digits and 58489 decimals
        // rendered about 82 kB of text, up to three times per value.
        let raw = [0, 1, 0x16, 0xfb, 0x40, 0, 0xe4, 0x79, 0, 0];
        assert_eq!(
            render(&raw),
            "-<a number of about 23536 digits and 58489 decimals>"
        );
        let err = decode_i128(&raw, 21, 10i128.pow(38)).expect_err("refused");
        assert!(err.to_string().len() < 200, "{err}");
    }
}
