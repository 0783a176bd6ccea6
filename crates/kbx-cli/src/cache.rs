//! The build cache of every node of a builder, as `kbx du` and `kbx prune` show it: filters,
//! buildx's tables and verbose records.
//!
//! # Deviation
//! - Times in `--verbose` output (`Created at`) are printed in UTC; buildx uses the local zone.
//! - `prune` does not add the `pruneFilters` of the Docker CLI config file, and has no
//!   `--max-used-space`, `--min-free-space` (BuildKit v0.17+) or `--timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use kbx_buildkit::CacheRecord;
use kbx_opts::GoDuration;
use kbx_store::NodeGroup;

use crate::driver;
use crate::error::Error;
use crate::tabwriter::TabWriter;

/// `--filter KEY=VALUE` values, as the Docker CLI collects them: keys lower-cased, keys and
/// values trimmed, several values per key kept.
pub(crate) fn parse_filters(list: &[String]) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in list.iter().filter(|f| !f.is_empty()) {
        let Some((k, v)) = f.split_once('=') else {
            return Err(Error::msg(format!(
                "invalid argument {f:?} for \"--filter\" flag: bad format of filter (expected name=value)"
            )));
        };
        let values = map.entry(k.trim().to_lowercase()).or_default();
        let v = v.trim().to_owned();
        if !values.contains(&v) {
            values.push(v);
        }
    }
    Ok(map)
}

/// buildx's `toBuildkitPruneInfo`: `until` (or its old name `unused-for`) becomes the keep
/// duration, every other key a BuildKit filter (`id~=`, `key==value`, or `key!=`/`key~=` as
/// written), joined into one expression. kbx joins the keys in sorted order (buildx in Go map
/// order, which is random).
pub(crate) fn prune_info(
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<(Option<Duration>, Vec<String>), Error> {
    if filters.contains_key("until") && filters.contains_key("unused-for") {
        return Err(Error::msg(
            r#"conflicting filters "until" and "unused-for""#,
        ));
    }
    let until_key = if filters.contains_key("unused-for") {
        "unused-for"
    } else {
        "until"
    };
    let keep = match filters.get(until_key).map(Vec::as_slice) {
        None | Some([]) => None,
        Some([v]) => {
            let d = GoDuration::parse(v).map_err(|source| Error::InvalidValue {
                what: format!("{until_key:?} filter expects a duration (e.g., '24h')"),
                source: Box::new(source),
            })?;
            Some(d.to_std().unwrap_or_default())
        }
        Some(_) => {
            return Err(Error::msg(format!(
                "{until_key:?} filter expects only one value"
            )));
        }
    };
    let mut parts = Vec::new();
    for (k, values) in filters {
        if k == until_key {
            continue;
        }
        match values.as_slice() {
            [] => parts.push(k.clone()),
            [v] if k == "id" => parts.push(format!("{k}~={v}")),
            [v] if k.ends_with('!') || k.ends_with('~') => parts.push(format!("{k}={v}")),
            [v] => parts.push(format!("{k}=={v}")),
            _ => return Err(Error::msg(format!("{k:?} filter expects only one value"))),
        }
    }
    let expr = if parts.is_empty() {
        Vec::new()
    } else {
        vec![parts.join(",")]
    };
    Ok((keep, expr))
}

/// Docker's `units.HumanSize`: four significant digits, decimal units.
pub(crate) fn human_size(size: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v.abs() < 1.0 {
        3
    } else {
        3 - (v.abs().log10().floor() as i32).min(3)
    };
    let mut text = format!("{v:.*}", usize::try_from(digits).unwrap_or(0));
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[i])
}

pub(crate) fn ago(t: SystemTime) -> String {
    let d = SystemTime::now().duration_since(t).unwrap_or_default();
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    format!(
        "{} ago",
        kbx_opts::human_duration(GoDuration::from_nanos(nanos))
    )
}

/// Go's `time.Time` `String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(crate) fn go_time(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d %H:%M:%S%.f +0000 UTC")
        .to_string()
}

/// One record in `--verbose` form: `Key:\tvalue` lines and an empty line.
pub(crate) fn verbose(tw: &mut TabWriter, r: &CacheRecord) {
    tw.line(&format!("ID:\t{}", r.id));
    if !r.parents.is_empty() {
        tw.line(&format!("Parent:\t{}", r.parents.join(",")));
    }
    // Go's zero time when the daemon sent none.
    let created = r
        .created_at
        .map_or_else(|| "0001-01-01 00:00:00 +0000 UTC".to_owned(), go_time);
    tw.line(&format!("Created at:\t{created}"));
    tw.line(&format!("Mutable:\t{}", r.mutable));
    tw.line(&format!("Reclaimable:\t{}", !r.in_use));
    tw.line(&format!("Shared:\t{}", r.shared));
    tw.line(&format!("Size:\t{}", human_size(r.size)));
    if !r.description.is_empty() {
        tw.line(&format!("Description:\t{}", r.description));
    }
    tw.line(&format!("Usage count:\t{}", r.usage_count));
    if let Some(t) = r.last_used_at {
        tw.line(&format!("Last used:\t{}", ago(t)));
    }
    if !r.record_type.is_empty() {
        tw.line(&format!("Type:\t{}", r.record_type));
    }
    tw.line("");
}

/// The header of the cache table.
pub(crate) const TABLE_HEADER: &str = "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED";

/// One record as a row of the cache table (`*` marks mutable and shared records).
pub(crate) fn table_row(r: &CacheRecord) -> String {
    let mut id = r.id.clone();
    if r.mutable {
        id.push('*');
    }
    let mut size = human_size(r.size);
    if r.shared {
        size.push('*');
    }
    let last = r.last_used_at.map(ago).unwrap_or_default();
    format!("{id:<40}\t{:<5}\t{size:<10}\t{last}", !r.in_use)
}

/// A client for every node of the builder, in order.
pub(crate) async fn clients(ng: &NodeGroup) -> Result<Vec<kbx_buildkit::Client>, Error> {
    let mut out = Vec::new();
    for n in ng.nodes() {
        out.push(driver::connect(ng, n, b"", None).await?.client);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(list: &[&str]) -> Result<BTreeMap<String, Vec<String>>, Error> {
        parse_filters(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn sizes_like_docker_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(12_345), "12.35kB");
        assert_eq!(human_size(3_200_000), "3.2MB");
        assert_eq!(human_size(999_999), "1000kB");
        assert_eq!(human_size(5_000_000_000), "5GB");
    }

    #[test]
    fn filters_become_buildkit_expressions() {
        let f =
            filters(&["type=regular", "id=abc", "description~=ctx", "Until = 24h"]).expect("ok");
        let (keep, expr) = prune_info(&f).expect("ok");
        assert_eq!(keep, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(expr, ["description~=ctx,id~=abc,type==regular"]);
        assert_eq!(
            prune_info(&filters(&[]).expect("ok")).expect("ok").1.len(),
            0
        );
        let err = |list: &[&str]| {
            let f = filters(list);
            match f {
                Err(e) => e.to_string(),
                Ok(f) => prune_info(&f).expect_err("an error").to_string(),
            }
        };
        assert_eq!(
            err(&["nope"]),
            "invalid argument \"nope\" for \"--filter\" flag: bad format of filter (expected name=value)"
        );
        assert_eq!(
            err(&["until=1h", "unused-for=2h"]),
            "conflicting filters \"until\" and \"unused-for\""
        );
        assert_eq!(
            err(&["until=x"]),
            "\"until\" filter expects a duration (e.g., '24h'): time: invalid duration \"x\""
        );
        assert_eq!(
            err(&["type=a", "type=b"]),
            "\"type\" filter expects only one value"
        );
    }

    #[test]
    fn go_time_strings() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(86_400 + 61, 500_000_000);
        assert_eq!(go_time(t), "1970-01-02 00:01:01.5 +0000 UTC");
        assert_eq!(
            go_time(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 +0000 UTC"
        );
    }
}
