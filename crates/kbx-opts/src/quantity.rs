//! Kubernetes resource quantities (`500m`, `2`, `1Gi`, `1e3`) with apimachinery's grammar.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use num_bigint::BigUint;
use num_traits::{One, ToPrimitive, Zero};

use crate::error::{Error, QuantityErrorKind};

/// How a quantity was written, which decides how its canonical form is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Decimal SI suffixes: `n u m "" k M G T P E` (`500m`, `2k`).
    DecimalSi,
    /// Binary SI suffixes: `Ki Mi Gi Ti Pi Ei` (`1Gi`).
    BinarySi,
    /// A decimal exponent: `1e3`, `5E-2`.
    DecimalExponent,
}

/// A Kubernetes quantity, parsed exactly like apimachinery's `resource.ParseQuantity`.
///
/// The value is exact (arbitrary precision), rounded up to nano units as Kubernetes does, and
/// binary-SI values are capped at 2⁶³−1 like apimachinery. [`Display`](fmt::Display) shows the
/// text as typed; [`Quantity::canonical`] gives the canonical form the API server stores;
/// [`Quantity::serialized`] gives exactly what Go's client would send (the text as typed when it
/// is already canonical, else the canonical form).
///
/// ```
/// use kbx_opts::Quantity;
/// assert_eq!("0.5".parse::<Quantity>()?.canonical(), "500m");
/// assert_eq!("1024Mi".parse::<Quantity>()?.canonical(), "1Gi");
/// assert_eq!("1.5Gi".parse::<Quantity>()?.canonical(), "1536Mi");
/// assert_eq!("12e2".parse::<Quantity>()?.canonical(), "1200");
/// assert!("1Gb".parse::<Quantity>().is_err());
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    original: String,
    negative: bool,
    /// Magnitude = mantissa × 10^exponent, with exponent ≥ −9 (nano precision).
    mantissa: BigUint,
    exponent: i64,
    format: QuantityFormat,
    original_is_canonical: bool,
}

const DECIMAL_SUFFIXES: [(&str, i64); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const SUFFIX_LETTERS: &[u8] = b"eEinumkKMGTP";

struct Scanned<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// apimachinery's scanner: sign, leading zeros, integer digits, `.` fraction digits, suffix letters,
/// optional sign, digits to the end.
fn scan(s: &str) -> Result<Scanned<'_>, QuantityErrorKind> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    let zero = Scanned {
        positive,
        num: "0",
        denom: "",
        suffix: "",
    };
    if pos >= end {
        return Ok(zero);
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let mut num = &s[num_start..pos];
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
    }
    let suffix_start = pos;
    while pos < end && SUFFIX_LETTERS.contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityErrorKind::Format);
    }
    Ok(Scanned {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

enum Suffix {
    Decimal(i64, QuantityFormat),
    Binary(u32),
}

fn interpret(suffix: &str) -> Option<Suffix> {
    if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(Suffix::Decimal(*e, QuantityFormat::DecimalSi));
    }
    if let Some((_, e)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(Suffix::Binary(*e));
    }
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    if rest.is_empty() {
        return None;
    }
    let parsed = crate::scalar::parse_go_int(rest, 64, crate::error::IntFunc::ParseInt).ok()?;
    // apimachinery keeps the exponent as an int32 (truncating).
    Some(Suffix::Decimal(
        i64::from(parsed as i32),
        QuantityFormat::DecimalExponent,
    ))
}

fn pow10(n: u64) -> BigUint {
    BigUint::from(10u32).pow(u32::try_from(n).unwrap_or(u32::MAX))
}

fn decimal_digits(m: &BigUint) -> u64 {
    if m.is_zero() {
        1
    } else {
        m.to_str_radix(10).len() as u64
    }
}

/// Rounds `m × 10^e` up (away from zero) to nano precision: afterwards `e ≥ −9`.
fn round_up_to_nano(m: BigUint, e: i64) -> (BigUint, i64) {
    if m.is_zero() {
        return (m, 0);
    }
    if e >= -9 {
        return (m, e);
    }
    let shift = (-9i128 - i128::from(e)) as u64;
    if shift > decimal_digits(&m) {
        return (BigUint::one(), -9);
    }
    let divisor = pow10(shift);
    let (q, r) = (&m / &divisor, &m % &divisor);
    let q = if r.is_zero() { q } else { q + 1u32 };
    (q, -9)
}

/// `m × 10^e` compared with an integer `n` (e ≥ −9 or bounded).
fn cmp_int(m: &BigUint, e: i64, n: &BigUint) -> Ordering {
    if e >= 0 {
        if e > 64 && !m.is_zero() {
            return Ordering::Greater;
        }
        (m * pow10(e as u64)).cmp(n)
    } else {
        m.cmp(&(n * pow10(e.unsigned_abs())))
    }
}

impl Quantity {
    /// Parses like apimachinery's `resource.ParseQuantity`, with its error texts.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let err = |kind| Error::Quantity {
            value: s.to_owned(),
            kind,
        };
        if s.is_empty() {
            return Err(err(QuantityErrorKind::Format));
        }
        if s == "0" {
            return Ok(Self {
                original: s.to_owned(),
                negative: false,
                mantissa: BigUint::zero(),
                exponent: 0,
                format: QuantityFormat::DecimalSi,
                original_is_canonical: true,
            });
        }
        let scanned = scan(s).map_err(err)?;
        let suffix = interpret(scanned.suffix).ok_or_else(|| err(QuantityErrorKind::Suffix))?;
        let digits = format!("{}{}", scanned.num, scanned.denom);
        let mut mantissa: BigUint = digits
            .parse()
            .map_err(|_| err(QuantityErrorKind::Numeric))?;
        let denom_len = scanned.denom.len() as i64;
        let (mut exponent, format, binary_exp) = match suffix {
            Suffix::Decimal(e, format) => (e - denom_len, format, None),
            Suffix::Binary(e) => (-denom_len, QuantityFormat::BinarySi, Some(e)),
        };
        let original_is_canonical = go_keeps_original(&scanned, &digits, exponent, binary_exp);
        if let Some(bits) = binary_exp {
            mantissa <<= bits as usize;
        }
        let (m, e) = round_up_to_nano(mantissa, exponent);
        mantissa = m;
        exponent = e;
        let mut format = format;
        if format == QuantityFormat::BinarySi {
            let max = BigUint::from(i64::MAX as u64);
            if cmp_int(&mantissa, exponent, &max) == Ordering::Greater {
                mantissa = max;
                exponent = 0;
            }
            if !mantissa.is_zero()
                && cmp_int(&mantissa, exponent, &BigUint::one()) == Ordering::Less
            {
                format = QuantityFormat::DecimalSi;
            }
        }
        Ok(Self {
            original: s.to_owned(),
            negative: !scanned.positive && !mantissa.is_zero(),
            mantissa,
            exponent,
            format,
            original_is_canonical,
        })
    }

    /// The text as typed.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// How the quantity was written.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa.is_zero()
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The value in nano units (10⁻⁹), if it fits in an `i128`.
    pub fn as_nanos(&self) -> Option<i128> {
        let e = self.exponent.checked_add(9)?;
        let m = self.mantissa.to_i128()?;
        let scaled = m.checked_mul(10i128.checked_pow(u32::try_from(e).ok()?)?)?;
        Some(if self.negative { -scaled } else { scaled })
    }

    /// The canonical form (what the API server stores): `0.5` → `500m`, `1024Mi` → `1Gi`,
    /// `1000m` → `1`, `1.5Gi` → `1536Mi`.
    pub fn canonical(&self) -> String {
        if self.mantissa.is_zero() {
            return "0".to_owned();
        }
        let sign = if self.negative { "-" } else { "" };
        if self.format == QuantityFormat::BinarySi
            && let Some(text) = self.canonical_binary()
        {
            return format!("{sign}{text}");
        }
        let format = match self.format {
            QuantityFormat::BinarySi => QuantityFormat::DecimalSi,
            f => f,
        };
        let (mut m, mut e) = (self.mantissa.clone(), self.exponent);
        let ten = BigUint::from(10u32);
        while (&m % &ten).is_zero() {
            m /= &ten;
            e += 1;
        }
        match e.rem_euclid(3) {
            1 => {
                m *= 10u32;
                e -= 1;
            }
            2 => {
                m *= 100u32;
                e -= 2;
            }
            _ => {}
        }
        let suffix = match format {
            QuantityFormat::DecimalSi => DECIMAL_SUFFIXES
                .iter()
                .find(|(_, x)| *x == e)
                .map(|(s, _)| (*s).to_owned())
                .unwrap_or_else(|| format!("e{e}")),
            _ if e == 0 => String::new(),
            _ => format!("e{e}"),
        };
        format!("{sign}{m}{suffix}")
    }

    fn canonical_binary(&self) -> Option<String> {
        let limit = BigUint::from(1024u32);
        if cmp_int(&self.mantissa, self.exponent, &limit) == Ordering::Less {
            return None;
        }
        let mut int = if self.exponent >= 0 {
            &self.mantissa * pow10(self.exponent as u64)
        } else {
            let d = pow10(self.exponent.unsigned_abs());
            if !(&self.mantissa % &d).is_zero() {
                return None;
            }
            &self.mantissa / d
        };
        let mut k = 0;
        while k < BINARY_SUFFIXES.len() && (&int % &limit).is_zero() {
            int /= &limit;
            k += 1;
        }
        let suffix = if k == 0 { "" } else { BINARY_SUFFIXES[k - 1].0 };
        Some(format!("{int}{suffix}"))
    }

    /// What Go's client sends for this quantity: the text as typed when apimachinery keeps it
    /// (it is already canonical), else [`Quantity::canonical`].
    pub fn serialized(&self) -> String {
        if self.original_is_canonical {
            self.original.clone()
        } else {
            self.canonical()
        }
    }
}

/// apimachinery's fast path keeps the input string when it is (nearly) canonical.
fn go_keeps_original(
    scanned: &Scanned<'_>,
    digits: &str,
    exponent: i64,
    binary: Option<u32>,
) -> bool {
    let digits_len = digits.len() as i64;
    let precision = match binary {
        None => 18 - digits_len,
        Some(e) if scanned.denom.is_empty() => {
            15 - scanned.num.len() as i64 - i64::from(e) * 3 / 10 - 1
        }
        Some(_) => -1,
    };
    if precision < 0 || exponent < -9 {
        return false;
    }
    let Ok(value) = digits.parse::<i64>() else {
        return false;
    };
    match binary {
        Some(e) => {
            let fits = value.checked_mul(1i64 << e).is_some();
            fits && e % 10 == 0 && value & 0x07 != 0
        }
        None => exponent % 3 == 0 && !digits.ends_with("000") && !digits.starts_with('0'),
    }
}

impl FromStr for Quantity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// The text as typed.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .map(|q| q.canonical())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("000", "0"),
            ("0.0", "0"),
            ("0Ki", "0"),
            ("100m", "100m"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("2", "2"),
            ("1k", "1k"),
            ("1.5k", "1500"),
            ("1000", "1k"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
            ("1023", "1023"),
            ("12e2", "1200"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1e-3", "1e-3"),
            ("1E", "1E"),
            ("1000E", "1e21"),
            ("1e21", "1e21"),
            ("0.1n", "1n"),
            ("1n", "1n"),
            ("1u", "1u"),
            ("-1", "-1"),
            ("-1.5Gi", "-1536Mi"),
            ("+1", "1"),
            (".5", "500m"),
            ("5.", "5"),
            ("32Mi", "32Mi"),
            ("64Mi", "64Mi"),
            ("4Gi", "4Gi"),
            ("200m", "200m"),
            ("0.0000000001", "1n"),
            ("16Ei", "9223372036854775807"),
            ("1.0009765625Ki", "1025"),
            ("0.1Ki", "102400m"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn errors_like_apimachinery() {
        let regex = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        for bad in ["", "1Gb", "abc", "1 ", " 1", "1.2.3", "1Gi ", "1e3x", "é"] {
            assert_eq!(canon(bad), regex, "{bad:?}");
        }
        for bad in [
            "1e", "1ki", "1mi", "1Kii", "1k-3", "1ee3", "1e+", "1Ki3", "--1",
        ] {
            assert_eq!(canon(bad), "unable to parse quantity's suffix", "{bad:?}");
        }
    }

    #[test]
    fn serialized_keeps_canonical_input() {
        let ser = |s: &str| Quantity::parse(s).unwrap().serialized();
        assert_eq!(ser("500m"), "500m");
        assert_eq!(ser("1Gi"), "1Gi");
        assert_eq!(ser("0.5"), "500m");
        assert_eq!(ser("1000m"), "1");
        assert_eq!(ser("1024Mi"), "1Gi");
        assert_eq!(ser("2"), "2");
        // apimachinery keeps these spellings as typed.
        assert_eq!(ser("+1"), "+1");
        assert_eq!(ser("01"), "01");
    }

    #[test]
    fn nanos() {
        assert_eq!(
            Quantity::parse("1").unwrap().as_nanos(),
            Some(1_000_000_000)
        );
        assert_eq!(
            Quantity::parse("-500m").unwrap().as_nanos(),
            Some(-500_000_000)
        );
        assert!(Quantity::parse("-500m").unwrap().is_negative());
        assert!(!Quantity::parse("-0").unwrap().is_negative());
    }
}
