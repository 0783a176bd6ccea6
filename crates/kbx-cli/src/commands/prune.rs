//! `kbx prune`: remove build cache on every node of a builder, with buildx's tables.

use std::io::{BufRead as _, Write as _};

use kbx_buildkit::PruneOptions;

use crate::builders;
use crate::cache::{
    TABLE_HEADER, clients, human_size, parse_filters, prune_info, table_row, verbose,
};
use crate::cli::PruneArgs;
use crate::error::Error;
use crate::output::out;
use crate::tabwriter::TabWriter;

const NORMAL_WARNING: &str =
    "WARNING! This will remove all dangling build cache. Are you sure you want to continue?";
const ALL_CACHE_WARNING: &str =
    "WARNING! This will remove all build cache. Are you sure you want to continue?";

/// Docker's `RAMInBytes`: a number with an optional binary unit (`b`, `k`, `m`, `g`, `t`, `p`,
/// optionally followed by `i` and/or `b`), e.g. `512mb`, `10GB`, `1.5g`.
fn ram_in_bytes(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut rest = unit.as_str();
    let mult: f64 = match rest.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            rest = &rest[1..];
            let exp = match c {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => 5,
            };
            1024f64.powi(exp)
        }
        _ => 1.0,
    };
    rest = rest.strip_prefix('i').unwrap_or(rest);
    rest = rest.strip_prefix('b').unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    Some((value * mult) as i64)
}

/// Runs `kbx prune`.
pub(crate) async fn run(args: PruneArgs, builder: Option<String>) -> Result<(), Error> {
    if args.keep_storage.is_some() {
        eprintln!(
            "Flag --keep-storage has been deprecated, keep-storage flag has been changed to reserved-space"
        );
    }
    let mut reserved = 0;
    for (flag, value) in [
        ("--reserved-space", &args.reserved_space),
        ("--keep-storage", &args.keep_storage),
    ] {
        if let Some(v) = value {
            reserved = ram_in_bytes(v).ok_or_else(|| {
                Error::msg(format!(
                    "invalid argument {v:?} for \"{flag}\" flag: invalid size: '{v}'"
                ))
            })?;
        }
    }
    let filters = parse_filters(&args.filters)?;
    let (keep_duration, expr) = prune_info(&filters)?;
    if !args.force {
        let warning = if args.all {
            ALL_CACHE_WARNING
        } else {
            NORMAL_WARNING
        };
        if !confirm(warning) {
            return Ok(());
        }
    }
    let ng = builders::load(builder.as_deref())?;
    let opts = PruneOptions {
        all: args.all,
        keep_duration,
        reserved_space: reserved,
        filters: expr,
    };
    let mut tw = TabWriter::default();
    let mut first = true;
    let mut total = 0i64;
    let mut stdout = std::io::stdout();
    for c in clients(&ng).await? {
        c.prune_with(&opts, |r| {
            total += r.size;
            if args.verbose {
                verbose(&mut tw, r);
            } else {
                if first {
                    tw.line(TABLE_HEADER);
                    first = false;
                }
                tw.line(&table_row(r));
            }
            let _ = stdout.write_all(tw.flush().as_bytes());
        })
        .await?;
    }
    tw.line(&format!("Total:\t{}", human_size(total)));
    let _ = stdout.write_all(tw.flush().as_bytes());
    Ok(())
}

/// The Docker CLI's confirmation prompt, on stdout; only `y`/`Y` confirm.
fn confirm(message: &str) -> bool {
    out!("{message} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_sizes_like_docker() {
        assert_eq!(ram_in_bytes("10"), Some(10));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("512mb"), Some(512 << 20));
        assert_eq!(ram_in_bytes("2GiB"), Some(2 << 30));
        assert_eq!(ram_in_bytes("1.5g"), Some(3 << 29));
        assert_eq!(ram_in_bytes("x"), None);
        assert_eq!(ram_in_bytes("10q"), None);
        assert_eq!(ram_in_bytes(""), None);
    }
}
