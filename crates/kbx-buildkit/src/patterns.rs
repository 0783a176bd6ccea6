//! Docker's path patterns (`.dockerignore`, include and exclude filters), with the semantics of
//! `moby/patternmatcher`: `*`, `?`, `[...]`, `**`, `\` escapes, `!` exceptions evaluated in
//! order, and "the path or any of its parents matches".

use regex::Regex;

use crate::Error;

/// An ordered list of patterns; later `!` patterns re-include what earlier ones matched.
///
/// ```
/// use kbx_buildkit::PatternMatcher;
///
/// let pm = PatternMatcher::new(["**/*.log", "build", "!build/keep.txt"])?;
/// assert!(pm.matches("a/b/c.log"));
/// assert!(pm.matches("build/out/x.o"));        // a parent matches
/// assert!(!pm.matches("build/keep.txt"));      // re-included by the exception
/// assert!(!pm.matches("src/main.rs"));
/// # Ok::<(), kbx_buildkit::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    Prefix,
    Suffix,
    Regex(Regex),
}

impl PatternMatcher {
    /// Compiles `patterns`. Each is whitespace-trimmed and path-cleaned; empty ones are ignored;
    /// a leading `!` marks an exception.
    ///
    /// # Errors
    /// [`Error::Pattern`] for `!` alone or a malformed pattern (an unclosed `[`, a bad range).
    pub fn new<I, S>(patterns: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pm = PatternMatcher::default();
        for raw in patterns {
            let raw = raw.as_ref();
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut p = clean_path(trimmed);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(Error::Pattern {
                        pattern: raw.to_owned(),
                        reason: "illegal exclusion pattern: \"!\"".to_owned(),
                    });
                }
                exclusion = true;
                pm.exclusions = true;
                p = rest.to_owned();
            }
            let kind = compile(&p).map_err(|reason| Error::Pattern {
                pattern: raw.to_owned(),
                reason,
            })?;
            pm.patterns.push(Pattern {
                cleaned: p,
                exclusion,
                kind,
            });
        }
        Ok(pm)
    }

    /// True when no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when at least one pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `path` (relative, `/`-separated) or one of its parent directories matches, after
    /// applying the exceptions in order (`MatchesOrParentMatches`).
    pub fn matches(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => {
                let parent = &path[..i];
                parent
                    .match_indices('/')
                    .map(|(j, _)| &parent[..j])
                    .chain(std::iter::once(parent))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.is_match(path) || parents.iter().any(|p| pattern.is_match(p));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether some non-exception (`exceptions == false`) or exception (`true`) pattern could
    /// match something strictly inside directory `dir`. Conservative: `true` whenever a pattern
    /// has wildcards before its trailing `/**` or `/*`.
    pub(crate) fn may_match_inside(&self, dir: &str, exceptions: bool) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exclusion == exceptions)
            .any(|p| {
                let stem = p.without_trailing_glob();
                stem.contains(['*', '[', ']', '?', '^', '\\'])
                    || format!("{stem}/").starts_with(&dir_slash)
            })
    }
}

impl Pattern {
    /// The cleaned pattern text (without the `!`).
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is a `!` exception.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether the pattern matches `path` itself (no parent matching).
    pub fn is_match(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchKind::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix)
                    || suffix
                        .strip_prefix('/')
                        .is_some_and(|rest| !rest.is_empty() && path == rest)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }

    fn without_trailing_glob(&self) -> &str {
        let s = self.cleaned.as_str();
        let s = s.strip_suffix("/**").unwrap_or(s);
        s.strip_suffix("/*").unwrap_or(s)
    }
}

/// Turns one cleaned pattern into a matcher, picking the same fast paths as patternmatcher
/// (exact, `prefix**`, `**suffix`) so that the edge cases agree.
fn compile(pattern: &str) -> Result<MatchKind, String> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut index = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if index == 0 {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    i += 1;
                    re.push_str(&regex::escape(&next.to_string()));
                    detected = Detected::Regex;
                } else {
                    return Err("syntax error in pattern".to_owned());
                }
            }
            '[' | ']' => {
                re.push(ch);
                detected = Detected::Regex;
            }
            _ => re.push(ch),
        }
        index += 1;
    }
    // Validate class syntax as filepath.Match would: every `[` needs a closing `]`.
    validate_classes(&chars)?;
    Ok(match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => MatchKind::Prefix,
        Detected::Suffix => MatchKind::Suffix,
        Detected::Regex => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

fn validate_classes(chars: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => {
                let mut j = i + 1;
                if chars.get(j) == Some(&'^') {
                    j += 1;
                }
                let mut closed = false;
                let mut first = true;
                while j < chars.len() {
                    match chars[j] {
                        ']' if !first => {
                            closed = true;
                            break;
                        }
                        ']' => return Err("syntax error in pattern".to_owned()),
                        '\\' => j += 2,
                        _ => j += 1,
                    }
                    first = false;
                }
                if !closed {
                    return Err("syntax error in pattern".to_owned());
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `path.Clean` for `/`-separated paths.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], path: &str) -> bool {
        PatternMatcher::new(patterns)
            .expect("valid patterns")
            .matches(path)
    }

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a/.."), "..");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("!./x"), "!./x");
    }

    #[test]
    fn single_star_stays_in_segment() {
        assert!(m(&["*.txt"], "a.txt"));
        assert!(!m(&["*.txt"], "d/a.txt"));
        assert!(m(&["d/*.txt"], "d/a.txt"));
        assert!(m(&["?.md"], "a.md"));
        assert!(!m(&["?.md"], "ab.md"));
    }

    #[test]
    fn double_star() {
        assert!(m(&["**/*.go"], "a.go"));
        assert!(m(&["**/*.go"], "x/y/a.go"));
        assert!(m(&["**/foo"], "foo"));
        assert!(m(&["**/foo"], "a/b/foo"));
        assert!(!m(&["**/foo"], "a/bfoo"));
        // patternmatcher's suffix fast path: `**foo` is a plain suffix.
        assert!(m(&["**foo"], "a/bfoo"));
        assert!(m(&["dir/**"], "dir/a/b"));
        assert!(m(&["a/**/z"], "a/z"));
        assert!(m(&["a/**/z"], "a/b/c/z"));
        assert!(m(&["**"], "anything/at/all"));
    }

    #[test]
    fn parents_and_exceptions() {
        assert!(m(&["build"], "build/x/y"));
        assert!(!m(&["build", "!build/keep"], "build/keep"));
        assert!(!m(&["build", "!build/keep"], "build/keep/deep"));
        assert!(m(&["build", "!build/keep"], "build/other"));
        assert!(m(&["*.md", "!README.md", "README.md"], "README.md"));
        assert!(!m(&["*", "!src/**"], "src/a/b.rs"));
        assert!(m(&["*", "!src/**"], "docs"));
    }

    #[test]
    fn escapes_and_classes() {
        assert!(m(&[r"a\*b"], "a*b"));
        assert!(!m(&[r"a\*b"], "axb"));
        assert!(m(&["[ab].c"], "a.c"));
        assert!(!m(&["[ab].c"], "c.c"));
        assert!(!m(&["a.c"], "abc"));
        assert!(m(&["f(1)+$"], "f(1)+$"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(PatternMatcher::new(["!"]).is_err());
        assert!(PatternMatcher::new(["[abc"]).is_err());
        assert!(PatternMatcher::new(["a\\"]).is_err());
        assert!(
            PatternMatcher::new(["  ", ""])
                .expect("empty ok")
                .is_empty()
        );
    }

    #[test]
    fn may_match_inside() {
        let pm = PatternMatcher::new(["build", "!build/keep/x"]).expect("valid");
        assert!(pm.may_match_inside("build", true));
        assert!(pm.may_match_inside("build/keep", true));
        assert!(!pm.may_match_inside("other", true));
        let pm = PatternMatcher::new(["*", "!**/*.rs"]).expect("valid");
        assert!(pm.may_match_inside("anything", true));
    }
}
