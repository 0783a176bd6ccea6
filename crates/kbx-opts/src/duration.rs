//! Go durations (`300s`, `1m30s`, `1.5h`, `500ms`) with Go's grammar, texts and formatting.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nom::bytes::complete::{take_while, take_while1};
use nom::{IResult, Parser};

use crate::error::{DurationErrorKind, Error};

/// A signed duration in nanoseconds, as Go's `time.Duration`.
///
/// Parses with Go's `time.ParseDuration` grammar and error texts, and displays like Go's
/// `Duration.String` (`2m0s`, `1h30m0s`, `1.5s`, `300ms`), so display → parse round-trips.
///
/// ```
/// use kbx_opts::GoDuration;
/// let d: GoDuration = "1m30s".parse()?;
/// assert_eq!(d.as_nanos(), 90_000_000_000);
/// assert_eq!(d.to_string(), "1m30s");
/// assert_eq!("120s".parse::<GoDuration>()?.to_string(), "2m0s");
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(i64);

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1000 * NANOSECOND;
const MILLISECOND: u64 = 1000 * MICROSECOND;
const SECOND: u64 = 1000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

impl GoDuration {
    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// A duration of `secs` seconds (saturating).
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(SECOND as i64))
    }

    /// The signed number of nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whether the duration is greater than zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// The duration as a [`std::time::Duration`], or `None` when negative.
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_nanos)
    }

    /// Parses like Go's `time.ParseDuration`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse_go_duration(s).map(Self)
    }
}

impl FromStr for GoDuration {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl From<Duration> for GoDuration {
    /// Saturates at the largest Go duration (about 292 years).
    fn from(d: Duration) -> Self {
        Self(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

fn digits(input: &str) -> IResult<&str, &str> {
    take_while(|c: char| c.is_ascii_digit()).parse(input)
}

fn unit(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c != '.' && !c.is_ascii_digit()).parse(input)
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => NANOSECOND,
        "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
        "ms" => MILLISECOND,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        _ => return None,
    })
}

fn parse_go_duration(orig: &str) -> Result<i64, Error> {
    let err = |kind| Error::Duration {
        value: orig.to_owned(),
        kind,
    };
    let invalid = || {
        err(DurationErrorKind::Invalid {
            input: orig.to_owned(),
        })
    };
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s.starts_with('.') || s.as_bytes()[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part; overflow is an error.
        let (rest, int_digits) = digits(s).map_err(|_| invalid())?;
        let mut v: u64 = 0;
        for c in int_digits.bytes() {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = rest;
        let pre = !int_digits.is_empty();
        // Fraction; extra precision is dropped, never an error.
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (rest, frac_digits) = digits(rest).map_err(|_| invalid())?;
            post = !frac_digits.is_empty();
            let mut overflow = false;
            for c in frac_digits.bytes() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            s = rest;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let Ok((rest, u)) = unit(s) else {
            return Err(err(DurationErrorKind::MissingUnit {
                input: orig.to_owned(),
            }));
        };
        s = rest;
        let Some(unit) = unit_nanos(u) else {
            return Err(err(DurationErrorKind::UnknownUnit {
                unit: u.to_owned(),
                input: orig.to_owned(),
            }));
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go computes the fraction in float64; the cast truncates like Go's conversion.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // total ≤ 2^63, so the negation fits (−2^63 is i64::MIN).
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// Go's `Duration.String`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let mut u = self.0.unsigned_abs();
        let mut out = String::new();
        if u < SECOND {
            let (prec, unit) = match u {
                0 => return f.write_str("0s"),
                u if u < MICROSECOND => (0, "ns"),
                u if u < MILLISECOND => (3, "\u{b5}s"),
                _ => (6, "ms"),
            };
            let (frac, int) = frac_and_int(u, prec);
            out.push_str(&int.to_string());
            out.push_str(&frac);
            out.push_str(unit);
        } else {
            let (frac, secs) = frac_and_int(u, 9);
            u = secs;
            let s = format!("{}{}s", u % 60, frac);
            u /= 60;
            if u > 0 {
                let m = u % 60;
                u /= 60;
                if u > 0 {
                    out.push_str(&format!("{u}h"));
                }
                out.push_str(&format!("{m}m"));
            }
            out.push_str(&s);
        }
        if neg {
            out.insert(0, '-');
        }
        f.write_str(&out)
    }
}

/// Splits `v / 10^prec` into its fraction text (".12", no trailing zeros, empty when zero) and
/// integer part.
fn frac_and_int(v: u64, prec: u32) -> (String, u64) {
    let pow = 10u64.pow(prec);
    let (int, frac) = (v / pow, v % pow);
    if frac == 0 {
        return (String::new(), int);
    }
    let text = format!(".{:0width$}", frac, width = prec as usize);
    (text.trim_end_matches('0').to_owned(), int)
}

/// Renders a duration the way buildx shows timeouts in progress messages (Docker's
/// `units.HumanDuration`): `Less than a second`, `1 second`, `30 seconds`, `About a minute`,
/// `2 minutes`, `2 hours`, …
pub fn human_duration(d: GoDuration) -> String {
    let secs = d.as_nanos() / SECOND as i64;
    let mins = d.as_nanos() / MINUTE as i64;
    let hours = (d.as_nanos() as f64 / HOUR as f64 + 0.5) as i64;
    if secs < 1 {
        "Less than a second".to_owned()
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".to_owned()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", d.as_nanos() / HOUR as i64 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<i64, String> {
        GoDuration::parse(s)
            .map(GoDuration::as_nanos)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(p("300s"), Ok(300 * SECOND as i64));
        assert_eq!(p("1m30s"), Ok(90 * SECOND as i64));
        assert_eq!(p("1.5h"), Ok(90 * MINUTE as i64));
        assert_eq!(p("500ms"), Ok(500 * MILLISECOND as i64));
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("-0"), Ok(0));
        assert_eq!(p("+5s"), Ok(5 * SECOND as i64));
        assert_eq!(p("-1.5s"), Ok(-1_500_000_000));
        assert_eq!(p("1µs"), Ok(1000));
        assert_eq!(p("1μs"), Ok(1000));
        assert_eq!(p("1us"), Ok(1000));
        assert_eq!(p(".5s"), Ok(500_000_000));
        assert_eq!(p("5.s"), Ok(5 * SECOND as i64));
        assert_eq!(p("1h2m3s4ms5us6ns"), Ok(3_723_004_005_006));
        assert_eq!(p("2562047h47m16.854775807s"), Ok(i64::MAX));
        assert_eq!(p("-2562047h47m16.854775808s"), Ok(i64::MIN));
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(
            p("invalid"),
            Err(r#"time: invalid duration "invalid""#.into())
        );
        assert_eq!(
            p("10"),
            Err(r#"time: missing unit in duration "10""#.into())
        );
        assert_eq!(p(""), Err(r#"time: invalid duration """#.into()));
        assert_eq!(p("-"), Err(r#"time: invalid duration "-""#.into()));
        assert_eq!(p(".s"), Err(r#"time: invalid duration ".s""#.into()));
        assert_eq!(
            p("3x"),
            Err(r#"time: unknown unit "x" in duration "3x""#.into())
        );
        assert_eq!(
            p("3 s"),
            Err(r#"time: unknown unit " s" in duration "3 s""#.into())
        );
        assert_eq!(
            p("1sé"),
            Err(r#"time: unknown unit "s\xc3\xa9" in duration "1s\xc3\xa9""#.into())
        );
        assert_eq!(
            p("2562047h47m16.854775808s"),
            Err(r#"time: invalid duration "2562047h47m16.854775808s""#.into())
        );
        assert_eq!(
            p("9999999999999999999h"),
            Err(r#"time: invalid duration "9999999999999999999h""#.into())
        );
    }

    #[test]
    fn formats_like_go() {
        let f = |n: i64| GoDuration::from_nanos(n).to_string();
        assert_eq!(f(0), "0s");
        assert_eq!(f(1), "1ns");
        assert_eq!(f(1100), "1.1µs");
        assert_eq!(f(2_200_000), "2.2ms");
        assert_eq!(f(3_300_000_000), "3.3s");
        assert_eq!(f(-3_300_000_000), "-3.3s");
        assert_eq!(f(120 * SECOND as i64), "2m0s");
        assert_eq!(f(90 * MINUTE as i64), "1h30m0s");
        assert_eq!(f(300 * SECOND as i64), "5m0s");
        assert_eq!(f(i64::MAX), "2562047h47m16.854775807s");
        assert_eq!(f(i64::MIN), "-2562047h47m16.854775808s");
    }

    #[test]
    fn human_like_docker() {
        let h = |s: i64| human_duration(GoDuration::from_secs(s));
        assert_eq!(
            human_duration(GoDuration::from_nanos(5)),
            "Less than a second"
        );
        assert_eq!(h(1), "1 second");
        assert_eq!(h(30), "30 seconds");
        assert_eq!(h(60), "About a minute");
        assert_eq!(h(90), "About a minute");
        assert_eq!(h(120), "2 minutes");
        assert_eq!(h(300), "5 minutes");
        assert_eq!(h(90 * 60), "2 hours");
        assert_eq!(h(-5), "Less than a second");
    }
}
