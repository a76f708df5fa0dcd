//! DynamoDB numbers: exact decimals of up to 38 significant digits, magnitude between
//! 1E-130 and 9.99…E+125.
//!
//! Numbers are stored as their canonical decimal string (no exponent, no leading zeros, no
//! trailing fractional zeros, no `-0`), so the state round-trips them byte for byte and two
//! equal numbers have equal strings. Comparison and arithmetic are exact: floating point would
//! turn `0.1` or a 38-digit integer into something else, which is exactly the bug users seed
//! fixtures to catch.

use std::cmp::Ordering;

/// Most significant digits a DynamoDB number may hold.
pub const MAX_DIGITS: usize = 38;

/// Why a string is not a storable number; the text is AWS's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not a number at all.
    #[error("A value provided cannot be converted into a number")]
    Invalid,
    /// More than 38 significant digits.
    #[error("Attempting to store more than 38 significant digits in a Number")]
    TooPrecise,
    /// Magnitude at or above 1E+126.
    #[error(
        "Number overflow. Attempting to store a number with magnitude larger than supported range"
    )]
    Overflow,
    /// Non-zero magnitude below 1E-130.
    #[error(
        "Number underflow. Attempting to store a number with magnitude smaller than supported range"
    )]
    Underflow,
}

/// An exact decimal `(-1)^neg × 0.d1d2…dn × 10^exp`, with no leading or trailing zero
/// digits; zero has no digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    neg: bool,
    digits: Vec<u8>,
    exp: i32,
}

impl Decimal {
    fn zero() -> Self {
        Decimal {
            neg: false,
            digits: Vec::new(),
            exp: 0,
        }
    }

    /// Parses DynamoDB's number syntax (`-12.5`, `1E+38`, `.5`, `+3`).
    pub fn parse(s: &str) -> Result<Decimal, NumberError> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut neg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            neg = b[i] == b'-';
            i += 1;
        }
        let mut mantissa: Vec<u8> = Vec::new();
        let mut point: Option<usize> = None;
        let mut seen_digit = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    mantissa.push(c - b'0');
                    seen_digit = true;
                }
                b'.' if point.is_none() => point = Some(mantissa.len()),
                b'e' | b'E' => break,
                _ => return Err(NumberError::Invalid),
            }
            i += 1;
        }
        if !seen_digit {
            return Err(NumberError::Invalid);
        }
        let mut e: i64 = 0;
        if i < b.len() {
            // exponent
            i += 1;
            let mut eneg = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                eneg = b[i] == b'-';
                i += 1;
            }
            if i >= b.len() {
                return Err(NumberError::Invalid);
            }
            while i < b.len() {
                match b[i] {
                    c @ b'0'..=b'9' => {
                        e = e.saturating_mul(10).saturating_add(i64::from(c - b'0'));
                        if e > 1_000_000 {
                            e = 1_000_000;
                        }
                    }
                    _ => return Err(NumberError::Invalid),
                }
                i += 1;
            }
            if eneg {
                e = -e;
            }
        }
        let int_len = point.unwrap_or(mantissa.len()) as i64;
        // value = 0.mantissa × 10^(int_len + e)
        let lead = mantissa.iter().take_while(|d| **d == 0).count();
        if lead == mantissa.len() {
            return Ok(Decimal::zero());
        }
        let mut digits = mantissa[lead..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let exp = int_len + e - lead as i64;
        let exp = exp.clamp(-10_000, 10_000) as i32;
        Ok(Decimal { neg, digits, exp })
    }

    /// Checks DynamoDB's precision and range limits.
    pub fn validate(&self) -> Result<(), NumberError> {
        if self.digits.is_empty() {
            return Ok(());
        }
        if self.digits.len() > MAX_DIGITS {
            return Err(NumberError::TooPrecise);
        }
        if self.exp > 126 {
            return Err(NumberError::Overflow);
        }
        if self.exp < -129 {
            return Err(NumberError::Underflow);
        }
        Ok(())
    }

    /// The canonical string: plain decimal notation, no redundant zeros.
    pub fn to_canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".to_string();
        }
        let mut out = String::with_capacity(self.digits.len() + 4);
        if self.neg {
            out.push('-');
        }
        let n = self.digits.len() as i32;
        let d = |v: &[u8], out: &mut String| out.extend(v.iter().map(|x| char::from(b'0' + x)));
        if self.exp <= 0 {
            out.push_str("0.");
            for _ in 0..(-self.exp) {
                out.push('0');
            }
            d(&self.digits, &mut out);
        } else if self.exp >= n {
            d(&self.digits, &mut out);
            for _ in 0..(self.exp - n) {
                out.push('0');
            }
        } else {
            let split = self.exp as usize;
            d(&self.digits[..split], &mut out);
            out.push('.');
            d(&self.digits[split..], &mut out);
        }
        out
    }

    fn negate(mut self) -> Self {
        if !self.digits.is_empty() {
            self.neg = !self.neg;
        }
        self
    }

    /// Exact sum.
    pub fn plus(&self, other: &Decimal) -> Decimal {
        if self.digits.is_empty() {
            return other.clone();
        }
        if other.digits.is_empty() {
            return self.clone();
        }
        // Align both as integers scaled by 10^scale, scale = exponent of the last digit.
        let scale_a = self.exp - self.digits.len() as i32;
        let scale_b = other.exp - other.digits.len() as i32;
        let scale = scale_a.min(scale_b);
        let widen = |d: &Decimal, s: i32| -> Vec<u8> {
            let mut v = d.digits.clone();
            v.extend(std::iter::repeat_n(0, (s - scale) as usize));
            v
        };
        let a = widen(self, scale_a);
        let b = widen(other, scale_b);
        let (neg, mag) = if self.neg == other.neg {
            (self.neg, add_mag(&a, &b))
        } else {
            match cmp_mag(&a, &b) {
                Ordering::Equal => return Decimal::zero(),
                Ordering::Greater => (self.neg, sub_mag(&a, &b)),
                Ordering::Less => (other.neg, sub_mag(&b, &a)),
            }
        };
        // mag × 10^scale = 0.mag × 10^(len + scale)
        let lead = mag.iter().take_while(|d| **d == 0).count();
        let mut digits = mag[lead..].to_vec();
        if digits.is_empty() {
            return Decimal::zero();
        }
        let exp = (mag.len() - lead) as i32 + scale;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        Decimal { neg, digits, exp }
    }

    /// Exact difference.
    pub fn minus(&self, other: &Decimal) -> Decimal {
        self.plus(&other.clone().negate())
    }
}

fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    let ta = a.iter().take_while(|d| **d == 0).count();
    let tb = b.iter().take_while(|d| **d == 0).count();
    let (a, b) = (&a[ta..], &b[tb..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len());
    let mut out = vec![0u8; n + 1];
    let mut carry = 0u8;
    for i in 0..n {
        let da = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let db = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = da + db + carry;
        out[n - i] = s % 10;
        carry = s / 10;
    }
    out[0] = carry;
    out
}

/// `a - b` for `a >= b`.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len();
    let mut out = vec![0u8; n];
    let mut borrow = 0i8;
    for i in 0..n {
        let da = a[n - 1 - i] as i8;
        let db = if i < b.len() {
            b[b.len() - 1 - i] as i8
        } else {
            0
        };
        let mut s = da - db - borrow;
        if s < 0 {
            s += 10;
            borrow = 1;
        } else {
            borrow = 0;
        }
        out[n - 1 - i] = s as u8;
    }
    out
}

/// Parses, validates and canonicalizes a number string from a request.
pub fn canonicalize(s: &str) -> Result<String, NumberError> {
    let d = Decimal::parse(s)?;
    d.validate()?;
    Ok(d.to_canonical())
}

/// Exact sum of two canonical numbers, validated against DynamoDB's limits.
pub fn add(a: &str, b: &str) -> Result<String, NumberError> {
    let r = Decimal::parse(a)?.plus(&Decimal::parse(b)?);
    r.validate()?;
    Ok(r.to_canonical())
}

/// Exact difference of two canonical numbers, validated against DynamoDB's limits.
pub fn sub(a: &str, b: &str) -> Result<String, NumberError> {
    let r = Decimal::parse(a)?.minus(&Decimal::parse(b)?);
    r.validate()?;
    Ok(r.to_canonical())
}

/// Compares two *canonical* number strings numerically without allocating: this is the
/// order of number keys in every table and index map, so it must be cheap.
pub fn cmp_canonical(a: &str, b: &str) -> Ordering {
    let (an, a) = match a.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, a),
    };
    let (bn, b) = match b.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, b),
    };
    match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => cmp_abs(a, b),
        (true, true) => cmp_abs(b, a),
    }
}

fn cmp_abs(a: &str, b: &str) -> Ordering {
    let (ai, af) = a.split_once('.').unwrap_or((a, ""));
    let (bi, bf) = b.split_once('.').unwrap_or((b, ""));
    // Integer parts have no leading zeros except a lone "0", which sorts first among
    // one-digit parts, so length then bytes is numeric order.
    ai.len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(bi))
        .then_with(|| af.cmp(bf))
}

/// Byte that starts the sort key of a negative number.
const SORT_NEG: u8 = 0x01;
/// The sort key of zero.
const SORT_ZERO: u8 = 0x02;
/// Byte that starts the sort key of a positive number.
const SORT_POS: u8 = 0x03;
/// Ends a negative number's digits: above every digit-pair byte, so that of two negative
/// numbers sharing a digit prefix the shorter (smaller magnitude) sorts last.
const SORT_NEG_END: u8 = 0xFF;

/// Appends the order-preserving byte encoding of a *canonical* number to `out`: comparing
/// two encodings bytewise gives DynamoDB's numeric order, and equal numbers give equal bytes.
///
/// Why: keys are compared ~20 times per entry while a table or index is built, and
/// comparing decimal strings means splitting and scanning them every time. The encoding is
/// computed once per key instead, exactly (no floating point), for the full range of 38
/// significant digits and exponents E-130..E+125 (and beyond, should one ever get here).
///
/// Layout: a class byte (negative, zero, positive); for non-zero numbers the exponent `e`
/// of `0.d1d2… × 10^e` as a big-endian `u16` offset by 2^15, then the digits in pairs (the
/// last padded with 0) as `pair + 1`. Negative numbers invert the exponent and the pairs
/// (`100 - pair`) and end with `0xFF`. Returns `false` (appending nothing) for a string that
/// is not a number.
pub fn sort_key_into(s: &str, out: &mut impl Extend<u8>) -> bool {
    match parse_canonical(s) {
        Some((neg, int, frac, exp)) => {
            let digits = int.bytes().chain(frac.bytes()).skip_while(|c| *c == b'0');
            push_sort_key(neg, exp, digits.map(|c| c - b'0'), out);
            true
        }
        None => match Decimal::parse(s) {
            Ok(d) => {
                push_sort_key(d.neg, d.exp, d.digits.iter().copied(), out);
                true
            }
            Err(_) => false,
        },
    }
}

/// Splits a number in canonical form (see [`canonicalize`]) into sign, integer digits,
/// fraction digits and the exponent `e` of `0.d1d2… × 10^e`; `None` when `s` is not
/// canonical (exponent notation, leading or trailing zeros, `-0`), which the caller then
/// parses the long way.
fn parse_canonical(s: &str) -> Option<(bool, &str, &str, i32)> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || frac.ends_with('0') {
        return None;
    }
    if body.contains('.') && frac.is_empty() {
        return None;
    }
    if int == "0" {
        if frac.is_empty() {
            // Zero; "-0" is not canonical.
            return (!neg).then_some((false, "", "", 0));
        }
        let lead = frac.bytes().take_while(|c| *c == b'0').count();
        let exp = -i32::try_from(lead).ok()?;
        Some((neg, "", frac, exp))
    } else if int.starts_with('0') {
        None
    } else {
        let exp = i32::try_from(int.len()).ok()?;
        Some((neg, int, frac, exp))
    }
}

fn push_sort_key(neg: bool, exp: i32, digits: impl Iterator<Item = u8>, out: &mut impl Extend<u8>) {
    let mut digits = digits.peekable();
    if digits.peek().is_none() {
        out.extend([SORT_ZERO]);
        return;
    }
    let e = (exp.clamp(-32768, 32767) + 32768) as u16;
    let e = if neg { !e } else { e };
    let [e1, e2] = e.to_be_bytes();
    out.extend([if neg { SORT_NEG } else { SORT_POS }, e1, e2]);
    // Canonical digits have no trailing zeros, but a fraction like "0.10" parsed the long way
    // could; trailing zero pairs are dropped so equal numbers encode equally.
    let mut pairs = [0u8; 64];
    let mut n = 0;
    let mut buf = Vec::new();
    while let Some(hi) = digits.next() {
        let lo = digits.next().unwrap_or(0);
        let p = hi * 10 + lo;
        if n < pairs.len() {
            pairs[n] = p;
        } else {
            if buf.is_empty() {
                buf.extend_from_slice(&pairs);
            }
            buf.push(p);
        }
        n += 1;
    }
    let all: &[u8] = if buf.is_empty() { &pairs[..n] } else { &buf };
    let end = all.iter().rposition(|p| *p != 0).map_or(0, |i| i + 1);
    if neg {
        out.extend(all[..end].iter().map(|p| 100 - p));
        out.extend([SORT_NEG_END]);
    } else {
        out.extend(all[..end].iter().map(|p| p + 1));
    }
}

/// The canonical number string of a sort key written by [`sort_key_into`], or `None` for
/// bytes that are not one.
pub fn from_sort_key(key: &[u8]) -> Option<String> {
    let (&class, rest) = key.split_first()?;
    let neg = match class {
        SORT_ZERO => return rest.is_empty().then(|| "0".to_string()),
        SORT_NEG => true,
        SORT_POS => false,
        _ => return None,
    };
    if rest.len() < 2 {
        return None;
    }
    let e = u16::from_be_bytes([rest[0], rest[1]]);
    let e = if neg { !e } else { e };
    let exp = i32::from(e) - 32768;
    let mut pairs = &rest[2..];
    if neg {
        pairs = pairs.strip_suffix(&[SORT_NEG_END])?;
    }
    let mut digits = Vec::with_capacity(pairs.len() * 2);
    for b in pairs {
        let p = if neg {
            100u8.checked_sub(*b)?
        } else {
            b.checked_sub(1)?
        };
        if p > 99 {
            return None;
        }
        digits.extend([p / 10, p % 10]);
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return None;
    }
    Some(Decimal { neg, digits, exp }.to_canonical())
}

/// Approximate stored size of a number, as DynamoDB counts it: about one byte per two
/// significant digits plus one.
pub fn stored_size(canonical: &str) -> usize {
    let sig = canonical
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|c| *c == b'0')
        .count();
    sig.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_are_exact() {
        assert_eq!(canonicalize("0.1").unwrap(), "0.1");
        assert_eq!(canonicalize("0.10").unwrap(), "0.1");
        assert_eq!(canonicalize("-0").unwrap(), "0");
        assert_eq!(canonicalize("007").unwrap(), "7");
        assert_eq!(canonicalize(".5").unwrap(), "0.5");
        assert_eq!(canonicalize("+3").unwrap(), "3");
        assert_eq!(
            canonicalize("1E+38").unwrap(),
            "100000000000000000000000000000000000000"
        );
        assert_eq!(canonicalize("1.5e-3").unwrap(), "0.0015");
        let big = "12345678901234567890123456789012345678";
        assert_eq!(canonicalize(big).unwrap(), big);
        assert_eq!(canonicalize("-1200").unwrap(), "-1200");
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            canonicalize("123456789012345678901234567890123456789"),
            Err(NumberError::TooPrecise)
        );
        assert_eq!(canonicalize("1E126"), Err(NumberError::Overflow));
        assert!(canonicalize("9.9999999999999999999999999999999999999E+125").is_ok());
        assert!(canonicalize("1E-130").is_ok());
        assert_eq!(canonicalize("1E-131"), Err(NumberError::Underflow));
        for bad in [
            "", "-", "abc", "1..2", "1e", "1e+", " 1", "0x10", "NaN", "Infinity",
        ] {
            assert_eq!(canonicalize(bad), Err(NumberError::Invalid), "{bad}");
        }
    }

    #[test]
    fn comparison_is_numeric() {
        let mut v: Vec<String> = [
            "10", "9", "-1", "-10", "0", "0.5", "0.05", "-0.5", "100.25", "100.3", "1E+38",
        ]
        .iter()
        .map(|s| canonicalize(s).unwrap())
        .collect();
        v.sort_by(|a, b| cmp_canonical(a, b));
        assert_eq!(
            v,
            [
                "-10",
                "-1",
                "-0.5",
                "0",
                "0.05",
                "0.5",
                "9",
                "10",
                "100.25",
                "100.3",
                "100000000000000000000000000000000000000"
            ]
        );
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(add("0.1", "0.2").unwrap(), "0.3");
        assert_eq!(add("1", "-1").unwrap(), "0");
        assert_eq!(sub("5", "7.5").unwrap(), "-2.5");
        assert_eq!(add("-3", "1").unwrap(), "-2");
        assert_eq!(add("999", "1").unwrap(), "1000");
        assert_eq!(
            add("99999999999999999999999999999999999999", "1"),
            Ok("100000000000000000000000000000000000000".to_string())
        );
        assert_eq!(
            add("99999999999999999999999999999999999999", "0.1"),
            Err(NumberError::TooPrecise)
        );
    }
}
