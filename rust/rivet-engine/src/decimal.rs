//! Scaled decimal integers of every width (i64, i128, i256) behind one trait, so the
//! PostgreSQL and MySQL decoders build exact decimals with the same arithmetic.

use arrow_buffer::i256;

/// Integer types a decimal is built in.
pub trait DecimalInt: Copy + PartialOrd {
    /// Zero.
    const ZERO: Self;
    /// A small non-negative value.
    fn from_u16(v: u16) -> Self;
    /// `self * 10^n`, or `None` on overflow.
    fn mul_pow10(self, n: u32) -> Option<Self>;
    /// `self * 10000 + d`, or `None` on overflow.
    fn push_digit(self, d: u16) -> Option<Self>;
    /// `self + d`, or `None` on overflow.
    fn add_small(self, d: u16) -> Option<Self>;
    /// `self * 10 + d`, or `None` on overflow.
    fn push_decimal(self, d: u8) -> Option<Self> {
        self.mul_pow10(1)?.add_small(u16::from(d))
    }
    /// `self / 10^n` when it divides exactly; `None` otherwise.
    fn div_pow10_exact(self, n: u32) -> Option<Self>;
    /// `-self`.
    fn neg(self) -> Self;
    /// `10^n`, or `None` past the type's range.
    fn pow10(n: u32) -> Option<Self>;
}

impl DecimalInt for i64 {
    const ZERO: Self = 0;
    fn from_u16(v: u16) -> Self {
        i64::from(v)
    }
    fn mul_pow10(self, n: u32) -> Option<Self> {
        self.checked_mul(Self::pow10(n)?)
    }
    fn push_digit(self, d: u16) -> Option<Self> {
        self.checked_mul(10_000)?.checked_add(i64::from(d))
    }
    fn add_small(self, d: u16) -> Option<Self> {
        self.checked_add(i64::from(d))
    }
    fn div_pow10_exact(self, n: u32) -> Option<Self> {
        let p = Self::pow10(n)?;
        (self % p == 0).then(|| self / p)
    }
    fn neg(self) -> Self {
        -self
    }
    fn pow10(n: u32) -> Option<Self> {
        10i64.checked_pow(n)
    }
}

impl DecimalInt for i128 {
    const ZERO: Self = 0;
    fn from_u16(v: u16) -> Self {
        i128::from(v)
    }
    fn mul_pow10(self, n: u32) -> Option<Self> {
        self.checked_mul(Self::pow10(n)?)
    }
    fn push_digit(self, d: u16) -> Option<Self> {
        self.checked_mul(10_000)?.checked_add(i128::from(d))
    }
    fn add_small(self, d: u16) -> Option<Self> {
        self.checked_add(i128::from(d))
    }
    fn div_pow10_exact(self, n: u32) -> Option<Self> {
        match Self::pow10(n) {
            Some(p) if self % p == 0 => Some(self / p),
            Some(_) => None,
            None => (self == 0).then_some(0),
        }
    }
    fn neg(self) -> Self {
        -self
    }
    fn pow10(n: u32) -> Option<Self> {
        10i128.checked_pow(n)
    }
}

impl DecimalInt for i256 {
    const ZERO: Self = i256::ZERO;
    fn from_u16(v: u16) -> Self {
        i256::from_i128(i128::from(v))
    }
    fn mul_pow10(self, n: u32) -> Option<Self> {
        self.checked_mul(Self::pow10(n)?)
    }
    fn push_digit(self, d: u16) -> Option<Self> {
        self.checked_mul(i256::from_i128(10_000))?
            .checked_add(i256::from_i128(i128::from(d)))
    }
    fn add_small(self, d: u16) -> Option<Self> {
        self.checked_add(i256::from_i128(i128::from(d)))
    }
    fn div_pow10_exact(self, n: u32) -> Option<Self> {
        match Self::pow10(n) {
            Some(p) if self.checked_rem(p) == Some(i256::ZERO) => self.checked_div(p),
            Some(_) => None,
            None => (self == i256::ZERO).then_some(i256::ZERO),
        }
    }
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
    fn pow10(n: u32) -> Option<Self> {
        i256::from_i128(10).checked_pow(n)
    }
}
