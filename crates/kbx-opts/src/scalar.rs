//! Go's `strconv` integers and booleans, with Go's error texts.

use crate::error::{Error, IntErrorKind, IntFunc};

/// Parses a base-10 integer exactly like Go's `strconv.ParseInt(s, 10, bits)` (and `Atoi`,
/// which is `ParseInt(s, 10, 64)` on 64-bit platforms): an optional `+`/`-`, then ASCII
/// digits only — no spaces, no underscores.
pub(crate) fn parse_go_int(s: &str, bits: u32, func: IntFunc) -> Result<i64, Error> {
    let err = |kind| Error::Int {
        func,
        value: s.to_owned(),
        kind,
    };
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(err(IntErrorKind::Syntax));
    }
    // ParseUint with the same bit size: a syntax error wins only if it comes before overflow.
    let max_unsigned: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    for c in digits.bytes() {
        if !c.is_ascii_digit() {
            return Err(err(IntErrorKind::Syntax));
        }
        let d = u64::from(c - b'0');
        match n.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(v) if v <= max_unsigned => n = v,
            _ => return Err(err(IntErrorKind::Range)),
        }
    }
    let cutoff = 1u64 << (bits - 1);
    if !neg && n >= cutoff || neg && n > cutoff {
        return Err(err(IntErrorKind::Range));
    }
    // n < 2^63 here unless neg && n == 2^63, which wraps to i64::MIN as intended.
    let v = n as i64;
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Parses a boolean exactly like Go's `strconv.ParseBool`.
///
/// ```
/// assert_eq!(kbx_opts::parse_bool("T"), Ok(true));
/// assert_eq!(kbx_opts::parse_bool("False"), Ok(false));
/// assert_eq!(
///     kbx_opts::parse_bool("yes").unwrap_err().to_string(),
///     r#"strconv.ParseBool: parsing "yes": invalid syntax"#
/// );
/// ```
pub fn parse_bool(s: &str) -> Result<bool, Error> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Error::Bool {
            value: s.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int32(s: &str) -> Result<i64, String> {
        parse_go_int(s, 32, IntFunc::ParseInt).map_err(|e| e.to_string())
    }

    #[test]
    fn parse_int_like_go() {
        assert_eq!(int32("3"), Ok(3));
        assert_eq!(int32("+3"), Ok(3));
        assert_eq!(int32("-1"), Ok(-1));
        assert_eq!(int32("007"), Ok(7));
        assert_eq!(int32("2147483647"), Ok(2147483647));
        assert_eq!(int32("-2147483648"), Ok(-2147483648));
        assert_eq!(
            int32("invalid"),
            Err(r#"strconv.ParseInt: parsing "invalid": invalid syntax"#.into())
        );
        assert_eq!(
            int32("3000000000"),
            Err(r#"strconv.ParseInt: parsing "3000000000": value out of range"#.into())
        );
        assert_eq!(
            int32(" 3"),
            Err(r#"strconv.ParseInt: parsing " 3": invalid syntax"#.into())
        );
        assert_eq!(
            int32(""),
            Err(r#"strconv.ParseInt: parsing "": invalid syntax"#.into())
        );
        assert_eq!(
            int32("+"),
            Err(r#"strconv.ParseInt: parsing "+": invalid syntax"#.into())
        );
        assert_eq!(
            int32("1_0"),
            Err(r#"strconv.ParseInt: parsing "1_0": invalid syntax"#.into())
        );
        assert_eq!(
            int32("2147483648"),
            Err(r#"strconv.ParseInt: parsing "2147483648": value out of range"#.into())
        );
        // Overflow is found before the bad character, as in Go.
        assert_eq!(
            int32("99999999999x"),
            Err(r#"strconv.ParseInt: parsing "99999999999x": value out of range"#.into())
        );
    }

    #[test]
    fn atoi_like_go() {
        let atoi = |s| parse_go_int(s, 64, IntFunc::Atoi).map_err(|e| e.to_string());
        assert_eq!(atoi("60"), Ok(60));
        assert_eq!(atoi("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            atoi("invalid"),
            Err(r#"strconv.Atoi: parsing "invalid": invalid syntax"#.into())
        );
        assert_eq!(
            atoi("9223372036854775808"),
            Err(r#"strconv.Atoi: parsing "9223372036854775808": value out of range"#.into())
        );
    }

    #[test]
    fn bool_words() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["yes", "no", "tRUE", "", " true", "2"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }
}
