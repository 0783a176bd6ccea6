//! The baseline corpus: `fixtures/driver-opts/*.txt` holds real-world `kbx create` arguments and
//! the outcome each must give.
//!
//! File format: blocks separated by blank lines; `#` lines are comments. A block's first line is
//! what a user types after `kbx create` (shell quoting; `--driver-opt`, `--platform`,
//! `--buildkitd-flags`); every following line starts with two spaces and is one expected outcome:
//! `ok: <canonical driver options>` (the smallest equivalent record, `<defaults>` when empty),
//! `platforms: <normalised list>`, `buildkitd-args: <JSON array>`, or one `error: <text>` line per
//! reported problem, in order. `local` platforms resolve to `linux/amd64` here.
//!
//! Run with `KBX_BLESS=1` to rewrite the expected lines from the current behaviour (then review
//! the diff).

use std::{fmt::Write as _, fs, path::PathBuf};

use kbx_opts::{DriverOpts, KubernetesOptions, Platform, buildkitd_args, split_shell_words};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/driver-opts")
}

/// What kbx makes of one input line.
fn outcome(line: &str) -> Vec<String> {
    let words = match split_shell_words(line) {
        Ok(w) => w,
        Err(e) => return vec![format!("corpus line is not shell words: {e}")],
    };
    let mut driver_opts = Vec::new();
    let mut platforms = Vec::new();
    let mut flags = None;
    let mut it = words.into_iter();
    while let Some(word) = it.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (word.clone(), None),
        };
        let Some(value) = inline.or_else(|| it.next()) else {
            return vec![format!("corpus line: {flag} needs a value")];
        };
        match flag.as_str() {
            "--driver-opt" => driver_opts.push(value),
            "--platform" => platforms.push(value),
            "--buildkitd-flags" => flags = Some(value),
            other => return vec![format!("corpus line: unknown flag {other}")],
        }
    }

    let mut out = Vec::new();
    let mut errors = Vec::new();
    if !driver_opts.is_empty() {
        match DriverOpts::parse(&driver_opts).and_then(|d| KubernetesOptions::from_driver_opts(&d))
        {
            Ok(o) => {
                let text = o.to_string();
                out.push(format!(
                    "ok: {}",
                    if text.is_empty() { "<defaults>" } else { &text }
                ));
                // The canonical form must itself parse back to the same options.
                let back = if text.is_empty() {
                    KubernetesOptions::default()
                } else {
                    KubernetesOptions::parse([text.as_str()]).expect("canonical form parses")
                };
                assert_eq!(
                    back, o,
                    "canonical form {text:?} of {line:?} does not round-trip"
                );
            }
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if !platforms.is_empty() {
        let local = Platform::new("linux", "amd64", "");
        match Platform::parse_list(&platforms, &local) {
            Ok(p) => {
                let list: Vec<String> = p.iter().map(ToString::to_string).collect();
                out.push(format!("platforms: {}", list.join(",")));
            }
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if let Some(flags) = flags {
        match buildkitd_args(Some(&flags), None) {
            Ok(a) => out.push(format!(
                "buildkitd-args: {}",
                serde_json::to_string(&a).expect("strings serialise")
            )),
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    out.extend(errors.into_iter().map(|e| format!("error: {e}")));
    out
}

struct Block {
    comments: Vec<String>,
    input: String,
    expected: Vec<String>,
}

fn parse_file(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut comments = Vec::new();
    let mut current: Option<Block> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            blocks.extend(current.take());
        } else if line.starts_with('#') {
            blocks.extend(current.take());
            comments.push(line.to_owned());
        } else if let Some(expected) = line.strip_prefix("  ") {
            let block = current
                .as_mut()
                .expect("an outcome line follows an input line");
            block.expected.push(expected.to_owned());
        } else {
            blocks.extend(current.take());
            current = Some(Block {
                comments: std::mem::take(&mut comments),
                input: line.to_owned(),
                expected: Vec::new(),
            });
        }
    }
    blocks.extend(current);
    blocks
}

#[test]
fn corpus_matches_expected_outcomes() {
    let bless = std::env::var_os("KBX_BLESS").is_some();
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("fixtures/driver-opts exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files found");

    let mut total = 0;
    let mut failures = String::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("corpus file is UTF-8");
        let blocks = parse_file(&text);
        let mut rewritten = String::new();
        for block in &blocks {
            total += 1;
            let got = outcome(&block.input);
            if got != block.expected {
                let _ = writeln!(
                    failures,
                    "{}: {}\n  expected: {:#?}\n  got:      {:#?}",
                    file.display(),
                    block.input,
                    block.expected,
                    got
                );
            }
            if !rewritten.is_empty() && block.comments.is_empty() {
                rewritten.push('\n');
            }
            for c in &block.comments {
                if !rewritten.is_empty() && !rewritten.ends_with("\n\n") && c == &block.comments[0]
                {
                    rewritten.push('\n');
                }
                let _ = writeln!(rewritten, "{c}");
            }
            let _ = writeln!(rewritten, "{}", block.input);
            for line in &got {
                let _ = writeln!(rewritten, "  {line}");
            }
        }
        if bless {
            fs::write(file, rewritten).expect("corpus file writable");
        }
    }
    assert!(
        total >= 150,
        "the corpus must hold at least 150 inputs, has {total}"
    );
    if !bless {
        assert!(
            failures.is_empty(),
            "corpus mismatches (KBX_BLESS=1 rewrites):\n{failures}"
        );
    }
}
