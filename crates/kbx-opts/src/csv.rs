//! One `--driver-opt` value as one RFC 4180 CSV record, with Go `encoding/csv` error texts.

use std::ops::Range;

use nom::bytes::complete::take_till;
use nom::{IResult, Parser};

use crate::error::{CsvErrorKind, Error};

/// One field of a record: its unescaped text and the byte range of its raw text in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) text: String,
    pub(crate) raw: Range<usize>,
    pub(crate) quoted: bool,
}

fn unquoted(input: &str) -> IResult<&str, &str> {
    take_till(|c| c == ',').parse(input)
}

/// Splits one record into fields like `go-csvvalue` (comma separator, no lazy quotes, no
/// leading-space trimming, one trailing `\n` or `\r\n` allowed).
pub(crate) fn parse_record(record: &str) -> Result<Vec<Field>, Error> {
    let line = record
        .strip_suffix("\r\n")
        .or_else(|| record.strip_suffix('\n'))
        .unwrap_or(record);
    if line.is_empty() {
        return Err(Error::EmptyRecord);
    }
    let err = |pos: usize, kind| Error::Csv {
        record: record.to_owned(),
        column: pos + 1,
        kind,
    };
    let mut fields = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &line[pos..];
        if !rest.starts_with('"') {
            let (after, field) = unquoted(rest).map_err(|_| err(pos, CsvErrorKind::Quote))?;
            if let Some(j) = field.find('"') {
                return Err(err(pos + j, CsvErrorKind::BareQuote));
            }
            fields.push(Field {
                text: field.to_owned(),
                raw: pos..pos + field.len(),
                quoted: false,
            });
            match after.strip_prefix(',') {
                Some(_) => {
                    pos += field.len() + 1;
                    continue;
                }
                None => break,
            }
        }
        // Quoted field.
        let start = pos;
        pos += 1;
        let mut text = String::new();
        loop {
            let rest = &line[pos..];
            let Some(i) = rest.find('"') else {
                return Err(err(pos, CsvErrorKind::Quote));
            };
            text.push_str(&rest[..i]);
            pos += i + 1;
            let after = &line[pos..];
            if after.starts_with('"') {
                text.push('"');
                pos += 1;
            } else if after.starts_with(',') {
                fields.push(Field {
                    text,
                    raw: start..pos,
                    quoted: true,
                });
                pos += 1;
                break;
            } else if after.is_empty() {
                fields.push(Field {
                    text,
                    raw: start..pos,
                    quoted: true,
                });
                return Ok(fields);
            } else {
                return Err(err(pos - 1, CsvErrorKind::Quote));
            }
        }
    }
    Ok(fields)
}

/// Writes `field` so that [`parse_record`] reads it back unchanged.
pub(crate) fn write_field(out: &mut String, field: &str) {
    let needs_quotes = field.contains([',', '"', '\n', '\r']) || field.is_empty() && out.is_empty();
    if needs_quotes {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(record: &str) -> Result<Vec<String>, String> {
        parse_record(record)
            .map(|f| f.into_iter().map(|f| f.text).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn splits_fields() {
        assert_eq!(texts("a=b,c=d").unwrap(), ["a=b", "c=d"]);
        assert_eq!(texts("a=b,").unwrap(), ["a=b", ""]);
        assert_eq!(texts(",").unwrap(), ["", ""]);
        assert_eq!(texts("a=b\n").unwrap(), ["a=b"]);
        assert_eq!(texts("a=b\r\n").unwrap(), ["a=b"]);
        assert_eq!(texts(" a = b ").unwrap(), [" a = b "]);
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            texts(r#""nodeselector=a=b,c=d","x=y""#).unwrap(),
            ["nodeselector=a=b,c=d", "x=y"]
        );
        assert_eq!(texts(r#""a ""q"" b""#).unwrap(), [r#"a "q" b"#]);
        assert_eq!(texts(r#""""#).unwrap(), [""]);
        assert_eq!(
            texts(
                r#""a
b""#
            )
            .unwrap(),
            ["a\nb"]
        );
    }

    #[test]
    fn errors_match_go() {
        assert_eq!(
            texts(r#"nodeselector="a=b,c=d""#).unwrap_err(),
            r#"parse error on line 1, column 14: bare " in non-quoted-field"#
        );
        assert_eq!(
            texts(r#""abc"#).unwrap_err(),
            r#"parse error on line 1, column 2: extraneous or missing " in quoted-field"#
        );
        assert_eq!(
            texts(r#""abc"d"#).unwrap_err(),
            r#"parse error on line 1, column 5: extraneous or missing " in quoted-field"#
        );
        assert_eq!(texts("").unwrap_err(), "EOF");
        assert_eq!(texts("\n").unwrap_err(), "EOF");
    }

    #[test]
    fn raw_spans_point_into_the_record() {
        let fields = parse_record(r#"a=b,"c=d,e""#).unwrap();
        assert_eq!(fields[0].raw, 0..3);
        assert_eq!(fields[1].raw, 4..11);
        assert!(fields[1].quoted);
    }
}
