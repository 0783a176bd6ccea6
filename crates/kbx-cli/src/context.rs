//! The endpoint key that `current` and `defaults/` are keyed by: the Docker context name, or the
//! Docker host for the `default` context, as buildx does.

use std::ffi::OsString;
use std::path::PathBuf;

/// The key for the current environment.
pub(crate) fn current_key(env: impl Fn(&str) -> Option<OsString>) -> String {
    let get = |k: &str| {
        env(k)
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
    };
    let context = get("DOCKER_CONTEXT").or_else(|| {
        let dir = get("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get("currentContext")?
            .as_str()
            .map(str::to_owned)
            .filter(|c| !c.is_empty())
    });
    match context {
        Some(c) if c != "default" => c,
        _ => get("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_context_or_docker_host() {
        let env = |pairs: Vec<(&'static str, &'static str)>| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(current_key(env(vec![("DOCKER_CONTEXT", "kind")])), "kind");
        assert_eq!(
            current_key(env(vec![
                ("DOCKER_CONTEXT", "default"),
                ("DOCKER_HOST", "tcp://x:2375")
            ])),
            "tcp://x:2375"
        );
        assert_eq!(current_key(env(vec![])), "unix:///var/run/docker.sock");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"remote"}"#,
        )
        .unwrap();
        let path: &'static str =
            Box::leak(dir.path().to_string_lossy().into_owned().into_boxed_str());
        assert_eq!(current_key(env(vec![("DOCKER_CONFIG", path)])), "remote");
    }
}
