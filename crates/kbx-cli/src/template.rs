//! `--format` as the Docker CLI's `formatter.Context` runs it for buildx: `table` formats
//! aligned with a header row, `json` as `{{json .}}`, and other text as a template executed
//! once per row, each followed by a newline.
//!
//! Templates are the part of Go's `text/template` these formats use: `{{.Field}}`,
//! `{{json .}}` and `{{json .Field}}`, `{{upper …}}`/`{{lower …}}`, `{{if .F}}…{{else}}…{{end}}`,
//! `{{range .F}}{{.}}{{end}}`, and the `{{-`/`-}}` whitespace trims.
//!
//! # Deviation
//! Only these actions are known; anything else (pipelines, variables, other functions) is a
//! parse error. Error texts follow Go's shape (`template: :LINE:COL: executing "" at <.F>:
//! can't evaluate field F`) without naming Go's type.

use crate::error::Error;
use crate::tabwriter::TabWriter;

/// A value a row gives for a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A list of strings (a nil slice is an empty list).
    List(Vec<String>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::List(l) => !l.is_empty(),
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::List(l) => format!("[{}]", l.join(" ")),
        }
    }

    /// The value as Go's `encoding/json` writes it (`null` for an empty list).
    pub(crate) fn json(&self) -> String {
        match self {
            Value::Str(s) => go_json_string(s),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::List(l) if l.is_empty() => "null".to_owned(),
            Value::List(l) => format!(
                "[{}]",
                l.iter()
                    .map(|s| go_json_string(s))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A JSON string as Go's `encoding/json` writes it (`<`, `>`, `&` escaped).
pub(crate) fn go_json_string(s: &str) -> String {
    let text = serde_json::to_string(s).unwrap_or_default();
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// One row of a formatted list: its fields by name and its `{{json .}}`.
pub(crate) trait Row {
    /// The field `name`, or `None` when the row has no such field.
    fn field(&self, name: &str) -> Option<Value>;
    /// The whole row as one line of JSON.
    fn json(&self) -> String;
}

/// The header row of a table: each field's column title.
struct Header<'a>(&'a [(&'a str, &'a str)]);

impl Row for Header<'_> {
    fn field(&self, name: &str) -> Option<Value> {
        // A Go template on a map prints `<no value>` for a missing key.
        Some(Value::Str(
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map_or("<no value>", |(_, v)| *v)
                .to_owned(),
        ))
    }
    fn json(&self) -> String {
        // The Docker CLI's header functions print nothing for `json`.
        String::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    /// `{{.F}}` (`None`: `{{.}}`), with the function applied, if any, and the action's place.
    Field {
        name: Option<String>,
        func: Option<Func>,
        at: (usize, usize),
    },
    If {
        name: String,
        at: (usize, usize),
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        name: String,
        at: (usize, usize),
        body: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Json,
    Upper,
    Lower,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    nodes: Vec<Node>,
}

enum Token {
    Text(String),
    Action { body: String, at: (usize, usize) },
}

fn parse_error(line: usize, msg: &str) -> Error {
    Error::msg(format!("template parsing error: template: :{line}: {msg}"))
}

fn tokenize(src: &str) -> Result<Vec<Token>, Error> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut offset = 0;
    let position = |i: usize| {
        let before = &src[..i];
        let line = before.matches('\n').count() + 1;
        let col = i - before.rfind('\n').map_or(0, |n| n + 1);
        (line, col)
    };
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(parse_error(position(offset + start).0, "unclosed action"));
        };
        let mut body = &after[..end];
        if let Some(b) = body.strip_prefix("- ") {
            text = text.trim_end().to_owned();
            body = b;
        }
        let mut trim_next = false;
        if let Some(b) = body.strip_suffix(" -") {
            trim_next = true;
            body = b;
        }
        out.push(Token::Text(text));
        out.push(Token::Action {
            body: body.trim().to_owned(),
            at: position(offset + start + 2),
        });
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
        if trim_next {
            let trimmed = rest.trim_start();
            offset += rest.len() - trimmed.len();
            rest = trimmed;
        }
    }
    out.push(Token::Text(rest.to_owned()));
    Ok(out)
}

fn field_name(arg: &str, line: usize) -> Result<Option<String>, Error> {
    if arg == "." {
        return Ok(None);
    }
    match arg.strip_prefix('.') {
        Some(name) if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            Ok(Some(name.to_owned()))
        }
        _ => Err(parse_error(line, &format!("unexpected {arg:?} in command"))),
    }
}

enum Stop {
    End,
    Else,
    Eof,
}

fn parse_nodes(
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
) -> Result<(Vec<Node>, Stop), Error> {
    let mut nodes = Vec::new();
    while let Some(tok) = tokens.next() {
        match tok {
            Token::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t));
                }
            }
            Token::Action { body, at } => {
                let words: Vec<&str> = body.split_whitespace().collect();
                match words.as_slice() {
                    [] => return Err(parse_error(at.0, "missing value for command")),
                    ["end"] => return Ok((nodes, Stop::End)),
                    ["else"] => return Ok((nodes, Stop::Else)),
                    ["if", arg] => {
                        let name = field_name(arg, at.0)?
                            .ok_or_else(|| parse_error(at.0, "if needs a field"))?;
                        let (then, stop) = parse_nodes(tokens)?;
                        let otherwise = match stop {
                            Stop::End => Vec::new(),
                            Stop::Else => match parse_nodes(tokens)? {
                                (n, Stop::End) => n,
                                _ => return Err(parse_error(at.0, "unexpected EOF")),
                            },
                            Stop::Eof => return Err(parse_error(at.0, "unexpected EOF")),
                        };
                        nodes.push(Node::If {
                            name,
                            at,
                            then,
                            otherwise,
                        });
                    }
                    ["range", arg] => {
                        let name = field_name(arg, at.0)?
                            .ok_or_else(|| parse_error(at.0, "range needs a field"))?;
                        let body = match parse_nodes(tokens)? {
                            (n, Stop::End) => n,
                            _ => return Err(parse_error(at.0, "unexpected EOF")),
                        };
                        nodes.push(Node::Range { name, at, body });
                    }
                    [func, arg] => {
                        let func = match *func {
                            "json" => Func::Json,
                            "upper" => Func::Upper,
                            "lower" => Func::Lower,
                            other => {
                                return Err(parse_error(
                                    at.0,
                                    &format!("function {other:?} not defined"),
                                ));
                            }
                        };
                        nodes.push(Node::Field {
                            name: field_name(arg, at.0)?,
                            func: Some(func),
                            at,
                        });
                    }
                    [arg] => nodes.push(Node::Field {
                        name: field_name(arg, at.0)?,
                        func: None,
                        at,
                    }),
                    _ => {
                        return Err(parse_error(
                            at.0,
                            &format!("unsupported action {{{{{body}}}}}"),
                        ));
                    }
                }
            }
        }
    }
    Ok((nodes, Stop::Eof))
}

impl Template {
    /// Parses `src`.
    ///
    /// # Errors
    /// `template parsing error: …` for an unclosed or unknown action.
    pub(crate) fn parse(src: &str) -> Result<Self, Error> {
        let mut tokens = tokenize(src)?.into_iter().peekable();
        match parse_nodes(&mut tokens)? {
            (nodes, Stop::Eof) => Ok(Template { nodes }),
            (_, Stop::End) => Err(parse_error(1, "unexpected {{end}}")),
            (_, Stop::Else) => Err(parse_error(1, "unexpected {{else}}")),
        }
    }

    /// Runs the template on `row`.
    ///
    /// # Errors
    /// A field the row does not have.
    pub(crate) fn execute(&self, row: &dyn Row) -> Result<String, Error> {
        let mut out = String::new();
        run(&self.nodes, row, None, &mut out)?;
        Ok(out)
    }
}

fn lookup(row: &dyn Row, name: &str, at: (usize, usize)) -> Result<Value, Error> {
    row.field(name).ok_or_else(|| {
        Error::msg(format!(
            "template: :{}:{}: executing \"\" at <.{name}>: can't evaluate field {name}",
            at.0, at.1
        ))
    })
}

fn run(nodes: &[Node], row: &dyn Row, dot: Option<&str>, out: &mut String) -> Result<(), Error> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Field { name, func, at } => {
                let (value, whole) = match (name, dot) {
                    (None, Some(item)) => (Value::Str(item.to_owned()), false),
                    (None, None) => (Value::Str(String::new()), true),
                    (Some(n), _) => (lookup(row, n, *at)?, false),
                };
                match func {
                    Some(Func::Json) if whole => out.push_str(&row.json()),
                    Some(Func::Json) => out.push_str(&value.json()),
                    Some(Func::Upper) => out.push_str(&value.text().to_uppercase()),
                    Some(Func::Lower) => out.push_str(&value.text().to_lowercase()),
                    None if whole => out.push_str(&row.json()),
                    None => out.push_str(&value.text()),
                }
            }
            Node::If {
                name,
                at,
                then,
                otherwise,
            } => {
                if lookup(row, name, *at)?.truthy() {
                    run(then, row, dot, out)?;
                } else {
                    run(otherwise, row, dot, out)?;
                }
            }
            Node::Range { name, at, body } => {
                let items = match lookup(row, name, *at)? {
                    Value::List(l) => l,
                    other => {
                        return Err(Error::msg(format!(
                            "template: :{}:{}: executing \"\" at <.{name}>: range can't iterate over {}",
                            at.0,
                            at.1,
                            other.text()
                        )));
                    }
                };
                for item in &items {
                    run(body, row, Some(item), out)?;
                }
            }
        }
    }
    Ok(())
}

/// What `--format` asked for, as the Docker CLI reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    table: bool,
    template: Template,
}

impl Format {
    /// `given` as the Docker CLI's `formatter.Context` reads it: `json` is `{{json .}}`, a
    /// `table` prefix makes an aligned table with a header row, and `\t`/`\n` written as two
    /// characters are a tab and a newline. The caller replaces the bare `table`.
    ///
    /// # Errors
    /// A template that does not parse.
    pub(crate) fn parse(given: &str) -> Result<Self, Error> {
        let (table, text) = if given == "json" {
            (false, "{{json .}}".to_owned())
        } else if let Some(rest) = given.strip_prefix("table") {
            (true, rest.trim_matches(' ').to_owned())
        } else {
            (false, given.trim_matches(' ').to_owned())
        };
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        Ok(Format {
            table,
            template: Template::parse(&text)?,
        })
    }

    /// Whether this is a `table` format.
    pub(crate) fn is_table(&self) -> bool {
        self.table
    }

    /// The rows formatted: a table gets the header row from `header` (field → title) and
    /// Docker's alignment; every row ends with a newline.
    ///
    /// # Errors
    /// A field a row does not have.
    pub(crate) fn render(
        &self,
        header: &[(&str, &str)],
        rows: &[&dyn Row],
    ) -> Result<String, Error> {
        // The Docker CLI reports a failed execution as a parsing error too.
        let wrap = |e: Error| Error::msg(format!("template parsing error: {e}"));
        let mut body = String::new();
        for row in rows {
            body.push_str(&self.template.execute(*row).map_err(wrap)?);
            body.push('\n');
        }
        if !self.table {
            return Ok(body);
        }
        let mut text = self.template.execute(&Header(header)).map_err(wrap)?;
        text.push('\n');
        text.push_str(&body);
        let mut tw = TabWriter::docker_table();
        let mut lines: Vec<&str> = text.split('\n').collect();
        // The text ends with a newline: no line after it.
        lines.pop();
        for l in lines {
            tw.line(l);
        }
        Ok(tw.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R {
        id: &'static str,
        parents: Vec<String>,
        mutable: bool,
    }

    impl Row for R {
        fn field(&self, name: &str) -> Option<Value> {
            Some(match name {
                "ID" => Value::Str(self.id.to_owned()),
                "Parents" => Value::List(self.parents.clone()),
                "Mutable" => Value::Bool(self.mutable),
                "Count" => Value::Int(3),
                _ => return None,
            })
        }
        fn json(&self) -> String {
            format!("{{\"ID\":{}}}", go_json_string(self.id))
        }
    }

    fn rows() -> Vec<R> {
        vec![
            R {
                id: "abc",
                parents: vec!["p1".into(), "p2".into()],
                mutable: true,
            },
            R {
                id: "d<e",
                parents: vec![],
                mutable: false,
            },
        ]
    }

    fn render(format: &str) -> Result<String, Error> {
        let rows = rows();
        let refs: Vec<&dyn Row> = rows.iter().map(|r| r as &dyn Row).collect();
        Format::parse(format)?.render(&[("ID", "ID"), ("Mutable", "MUTABLE")], &refs)
    }

    #[test]
    fn fields_json_and_functions() {
        assert_eq!(
            render("{{.ID}} {{ .Mutable }} {{.Count}} {{json .Parents}}").unwrap(),
            "abc true 3 [\"p1\",\"p2\"]\nd<e false 3 null\n"
        );
        assert_eq!(
            render("json").unwrap(),
            "{\"ID\":\"abc\"}\n{\"ID\":\"d\\u003ce\"}\n"
        );
        assert_eq!(render("{{upper .ID}}").unwrap(), "ABC\nD<E\n");
        assert_eq!(render("{{.Parents}}").unwrap(), "[p1 p2]\n[]\n");
    }

    #[test]
    fn if_range_and_trims_as_go() {
        let t = "ID: {{.ID}}\n{{- if .Parents }}\nParents:\n{{- range .Parents }}\n - {{.}}\n{{- end }}\n{{- end }}\nMutable: {{.Mutable}}\n{{- if .Mutable}} yes{{else}} no{{end}}";
        assert_eq!(
            render(t).unwrap(),
            "ID: abc\nParents:\n - p1\n - p2\nMutable: true yes\nID: d<e\nMutable: false no\n"
        );
    }

    #[test]
    fn tables_have_a_header_and_docker_alignment() {
        assert_eq!(
            render("table {{.ID}}\\t{{.Mutable}}").unwrap(),
            "ID        MUTABLE\nabc       true\nd<e       false\n"
        );
        // A missing header key prints as Go prints a missing map key.
        assert_eq!(render("table {{.Count}}").unwrap(), "<no value>\n3\n3\n");
    }

    #[test]
    fn errors_name_the_field_or_the_problem() {
        let e = render("{{.Nope}}").unwrap_err().to_string();
        assert_eq!(
            e,
            "template parsing error: template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope"
        );
        assert!(
            render("{{.ID")
                .unwrap_err()
                .to_string()
                .contains("unclosed action")
        );
        assert!(
            render("{{nope .ID}}")
                .unwrap_err()
                .to_string()
                .contains("function \"nope\" not defined")
        );
        assert!(
            render("{{if .ID}}x")
                .unwrap_err()
                .to_string()
                .contains("unexpected EOF")
        );
        assert!(render("{{end}}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = render(&s);
        }
    }
}
