//! `build --call` / `--check`: which frontend subrequest to send instead of a build, and how
//! its answer is printed, as Buildx 0.29 prints it.

use std::collections::BTreeMap;

use crate::error::Error;

/// A parsed `--call` value other than `build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallFunc {
    /// The subrequest as Buildx names it: `lint` (for `check`), `outline`, `targets`,
    /// `subrequests.describe`, or any other name the frontend may know.
    pub(crate) name: String,
    /// `format=…`: `json` prints the frontend's JSON; anything else its text.
    pub(crate) format: String,
    /// `ignorestatus=true`: exit 0 even when the frontend reports a failing status.
    pub(crate) ignore_status: bool,
}

impl CallFunc {
    /// `--call` (and `--check`, which wins) as Buildx reads them; `None` for a build.
    ///
    /// # Errors
    /// A field that is not `format=` or `ignorestatus=`, or two names.
    pub(crate) fn parse(call: &str, check: bool) -> Result<Option<CallFunc>, Error> {
        let text = if check { "check" } else { call };
        if text.is_empty() {
            return Ok(None);
        }
        let mut f = CallFunc {
            name: String::new(),
            format: String::new(),
            ignore_status: false,
        };
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("format", v)) => v.clone_into(&mut f.format),
                Some(("ignorestatus", v)) => {
                    f.ignore_status = matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True");
                }
                Some(_) => return Err(Error::msg(format!("invalid call field: {field}"))),
                None if !f.name.is_empty() => {
                    return Err(Error::msg(format!("invalid call value: {text}")));
                }
                None => field.clone_into(&mut f.name),
            }
        }
        match f.name.as_str() {
            "build" => Ok(None),
            "check" => {
                f.name = "lint".to_owned();
                Ok(Some(f))
            }
            _ => Ok(Some(f)),
        }
    }

    /// The frontend attribute `requestid`.
    pub(crate) fn request_id(&self) -> String {
        format!("frontend.{}", self.name)
    }

    /// What goes to stdout for the frontend's answer `res` (its result metadata), and the
    /// exit status Buildx gives it.
    ///
    /// # Errors
    /// A lint result that is not JSON; the build error the lint found (its text).
    pub(crate) fn print(&self, res: &BTreeMap<String, String>) -> Result<(String, u8), Error> {
        let json = self.format == "json";
        let get = |k: &str| res.get(k).map(String::as_str);
        let mut out = String::new();
        let value = |out: &mut String| {
            if json {
                out.push_str(get("result.json").unwrap_or_default());
                out.push('\n');
            } else {
                out.push_str(get("result.txt").unwrap_or_default());
            }
        };
        match self.name.as_str() {
            "outline" | "targets" | "subrequests.describe" => value(&mut out),
            "lint" => {
                let lint: serde_json::Value = match get("result.json") {
                    Some(t) => serde_json::from_str(t)
                        .map_err(|e| Error::msg(format!("invalid lint result: {e}")))?,
                    None => serde_json::Value::Null,
                };
                let warnings = lint
                    .get("warnings")
                    .and_then(serde_json::Value::as_array)
                    .map_or(0, Vec::len);
                if !json && warnings > 0 {
                    let count = if warnings == 1 {
                        "1 warning has been found!".to_owned()
                    } else {
                        format!("{warnings} warnings have been found!")
                    };
                    out.push_str(&format!("Check complete, {count}\n"));
                }
                value(&mut out);
                let build_error = lint.get("buildError").filter(|e| !e.is_null());
                if let Some(e) = build_error {
                    let message = e
                        .get("message")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default();
                    crate::output::out!("{out}");
                    return Err(Error::msg(message.to_owned()));
                }
                if warnings == 0 && !json {
                    out.push_str("Check complete, no warnings found.\n");
                }
            }
            _ => match (get("result.json"), get("result.txt")) {
                (Some(j), _) if json => {
                    out.push_str(j);
                    out.push('\n');
                }
                (_, Some(t)) => out.push_str(t),
                _ => out.push_str(&format!("{} {res:?}\n", self.name)),
            },
        }
        let status = match get("result.statuscode").map(str::parse::<i64>) {
            Some(Ok(n)) if n != 0 && !self.ignore_status => u8::try_from(n).unwrap_or(1),
            _ => 0,
        };
        Ok((out, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_as_buildx() {
        assert_eq!(CallFunc::parse("build", false).unwrap(), None);
        assert_eq!(CallFunc::parse("", false).unwrap(), None);
        let c = CallFunc::parse("build", true).unwrap().unwrap();
        assert_eq!(c.request_id(), "frontend.lint");
        let c = CallFunc::parse("check,format=json,ignorestatus=true", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.name.as_str(), c.format.as_str(), c.ignore_status),
            ("lint", "json", true)
        );
        assert_eq!(
            CallFunc::parse("outline", false)
                .unwrap()
                .unwrap()
                .request_id(),
            "frontend.outline"
        );
        assert!(CallFunc::parse("outline,targets", false).is_err());
        assert!(CallFunc::parse("outline,x=1", false).is_err());
    }

    #[test]
    fn prints_text_json_and_status() {
        let targets = CallFunc::parse("targets", false).unwrap().unwrap();
        let r = res(&[("result.json", "{\"a\":1}"), ("result.txt", "TARGET\nx\n")]);
        assert_eq!(targets.print(&r).unwrap(), ("TARGET\nx\n".to_owned(), 0));
        let json = CallFunc::parse("targets,format=json", false)
            .unwrap()
            .unwrap();
        assert_eq!(json.print(&r).unwrap(), ("{\"a\":1}\n".to_owned(), 0));

        let check = CallFunc::parse("check", false).unwrap().unwrap();
        let clean = res(&[("result.json", "{\"warnings\":null}")]);
        assert_eq!(
            check.print(&clean).unwrap(),
            ("Check complete, no warnings found.\n".to_owned(), 0)
        );
        let dirty = res(&[
            ("result.json", "{\"warnings\":[{},{}]}"),
            ("result.txt", "W1\nW2\n"),
            ("result.statuscode", "1"),
        ]);
        assert_eq!(
            check.print(&dirty).unwrap(),
            (
                "Check complete, 2 warnings have been found!\nW1\nW2\n".to_owned(),
                1
            )
        );
        let ignore = CallFunc::parse("check,ignorestatus=true", false)
            .unwrap()
            .unwrap();
        assert_eq!(ignore.print(&dirty).unwrap().1, 0);
    }
}
