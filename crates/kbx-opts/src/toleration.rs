//! `tolerations=key=k,operator=Equal,value=v,effect=NoSchedule,tolerationSeconds=60;key=…`

use std::fmt;

use crate::error::{Error, IntFunc, TolerationProblem};
use crate::scalar::parse_go_int;

/// One Kubernetes toleration as typed. Empty strings mean "not given".
///
/// `operator` and `effect` are kept verbatim here; rendering validates them against what the
/// API server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// `key=`
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// `operator=` (`Equal` or `Exists` for the API server).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operator: String,
    /// `value=`
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `effect=` (`NoSchedule`, `PreferNoSchedule` or `NoExecute` for the API server).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub effect: String,
    /// `tolerationSeconds=`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Parses a whole `tolerations` value: `;` between tolerations, `,` between `k=v` pieces.
    ///
    /// # Deviation
    /// buildx silently drops pieces that are not one `k=v` pair and turns empty items into empty
    /// tolerations (which the API server rejects), and its unknown-field error says `tolaration`
    /// and quotes the whole value. kbx rejects all of these with an error that names the piece.
    ///
    /// ```
    /// let t = kbx_opts::Toleration::parse_list("key=spot,operator=Exists;key=a,value=b")?;
    /// assert_eq!(t.len(), 2);
    /// assert_eq!(t[0].operator, "Exists");
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse_list(value: &str) -> Result<Vec<Toleration>, Error> {
        let mut out = Vec::new();
        let mut offset = 0;
        for (index, item) in value.split(';').enumerate() {
            let item_start = offset;
            offset += item.len() + 1;
            let err = |problem, span| Error::Toleration {
                value: value.to_owned(),
                problem,
                span,
            };
            if item.is_empty() {
                return Err(err(
                    TolerationProblem::Empty { index: index + 1 },
                    item_start..item_start,
                ));
            }
            let mut t = Toleration::default();
            let mut piece_start = item_start;
            for piece in item.split(',') {
                let span = piece_start..piece_start + piece.len();
                piece_start += piece.len() + 1;
                let mut parts = piece.split('=');
                let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(err(
                        TolerationProblem::NotKeyValue {
                            piece: piece.to_owned(),
                        },
                        span,
                    ));
                };
                match k {
                    "key" => t.key = v.to_owned(),
                    "operator" => t.operator = v.to_owned(),
                    "value" => t.value = v.to_owned(),
                    "effect" => t.effect = v.to_owned(),
                    "tolerationSeconds" => {
                        t.toleration_seconds = Some(parse_go_int(v, 64, IntFunc::Atoi)?);
                    }
                    _ => {
                        return Err(err(
                            TolerationProblem::UnknownField {
                                field: k.to_owned(),
                            },
                            span,
                        ));
                    }
                }
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// The pieces that are set, in the order key, operator, value, effect, tolerationSeconds
/// (`key=` when none is set), which [`Toleration::parse_list`] reads back.
impl fmt::Display for Toleration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pieces = Vec::new();
        for (name, v) in [
            ("key", &self.key),
            ("operator", &self.operator),
            ("value", &self.value),
            ("effect", &self.effect),
        ] {
            if !v.is_empty() {
                pieces.push(format!("{name}={v}"));
            }
        }
        if let Some(s) = self.toleration_seconds {
            pieces.push(format!("tolerationSeconds={s}"));
        }
        if pieces.is_empty() {
            pieces.push("key=".to_owned());
        }
        f.write_str(&pieces.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        Toleration::parse_list(s).unwrap_err().to_string()
    }

    #[test]
    fn parses_upstream_valid_case() {
        let t = Toleration::parse_list(
            "key=tolerationKey1,value=tolerationValue1,operator=Equal,effect=NoSchedule,tolerationSeconds=60;key=tolerationKey2,operator=Exists",
        )
        .unwrap();
        assert_eq!(
            t,
            [
                Toleration {
                    key: "tolerationKey1".into(),
                    operator: "Equal".into(),
                    value: "tolerationValue1".into(),
                    effect: "NoSchedule".into(),
                    toleration_seconds: Some(60),
                },
                Toleration {
                    key: "tolerationKey2".into(),
                    operator: "Exists".into(),
                    ..Toleration::default()
                },
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            err("key=foo,value=bar,invalid=foo2"),
            r#"invalid toleration "key=foo,value=bar,invalid=foo2": unknown field "invalid", expected key, operator, value, effect or tolerationSeconds"#
        );
        assert_eq!(
            err("key=foo,value=bar,tolerationSeconds=invalid"),
            r#"strconv.Atoi: parsing "invalid": invalid syntax"#
        );
        assert_eq!(
            err("key,value=x"),
            r#"invalid toleration "key,value=x": "key" is not a key=value pair"#
        );
        assert_eq!(
            err("key=a,value=a=b"),
            r#"invalid toleration "key=a,value=a=b": "value=a=b" is not a key=value pair"#
        );
        assert_eq!(err(""), r#"invalid toleration "": toleration #1 is empty"#);
        assert_eq!(
            err("key=a;"),
            r#"invalid toleration "key=a;": toleration #2 is empty"#
        );
        assert_eq!(
            err("key=a,"),
            r#"invalid toleration "key=a,": "" is not a key=value pair"#
        );
    }

    #[test]
    fn display_round_trips() {
        let t = Toleration::parse_list("effect=NoExecute,key=k,tolerationSeconds=-5").unwrap();
        assert_eq!(
            t[0].to_string(),
            "key=k,effect=NoExecute,tolerationSeconds=-5"
        );
        assert_eq!(Toleration::parse_list(&t[0].to_string()).unwrap(), t);
        assert_eq!(Toleration::default().to_string(), "key=");
    }
}
