//! `kbx du`: disk usage of the build cache of every node of a builder, with Buildx 0.29.1's
//! formats: its table, `--verbose` (`pretty`), `json` and templates.

use kbx_buildkit::CacheRecord;

use crate::builders;
use crate::cache::{ago, clients, go_time, human_size, parse_filters, prune_info};
use crate::cli::DuArgs;
use crate::error::Error;
use crate::output::out;
use crate::tabwriter::TabWriter;
use crate::template::{Format, Row, Value, go_json_string};

/// buildx's `duDefaultTableFormat`.
const TABLE: &str = "table {{.ID}}\t{{.Reclaimable}}\t{{.Size}}\t{{.LastUsedAt}}";

/// buildx's `duDefaultPrettyTemplate` (`--verbose`).
const PRETTY: &str = "ID:           {{.ID}}
{{- if .Parents }}
Parents:
{{- range .Parents }}
 - {{.}}
{{- end }}
{{- end }}
Created at:   {{.CreatedAt}}
Mutable:      {{.Mutable}}
Reclaimable:  {{.Reclaimable}}
Shared:       {{.Shared}}
Size:         {{.Size}}
{{- if .Description}}
Description:  {{ .Description }}
{{- end }}
Usage count:  {{.UsageCount}}
{{- if .LastUsedAt}}
Last used:    {{ .LastUsedAt }}
{{- end }}
{{- if .Type}}
Type:         {{ .Type }}
{{- end }}
";

/// The column titles of a `table` format.
const HEADER: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Parents", "PARENTS"),
    ("CreatedAt", "CREATED AT"),
    ("Mutable", "MUTABLE"),
    ("Reclaimable", "RECLAIMABLE"),
    ("Shared", "SHARED"),
    ("Size", "SIZE"),
    ("Description", "DESCRIPTION"),
    ("UsageCount", "USAGE COUNT"),
    ("LastUsedAt", "LAST ACCESSED"),
    ("Type", "TYPE"),
];

/// The format `--format` and `--verbose` ask for, as buildx decides it.
///
/// # Errors
/// Both given, in buildx's words.
fn format_text(given: Option<&str>, verbose: bool) -> Result<&str, Error> {
    match (given, verbose) {
        (Some(f), true) if !f.is_empty() => {
            Err(Error::msg("--format and --verbose cannot be used together"))
        }
        (None | Some(""), true) => Ok(PRETTY),
        (None | Some(""), false) | (Some("table"), _) => Ok(TABLE),
        (Some("pretty"), _) => Ok(PRETTY),
        (Some(f), _) => Ok(f),
    }
}

/// One cache record as a row of `du`'s formats (buildx's `diskusageContext`).
struct DuRow<'a> {
    r: &'a CacheRecord,
    table: bool,
}

impl DuRow<'_> {
    fn value(&self, name: &str, table: bool) -> Option<Value> {
        let r = self.r;
        Some(match name {
            "ID" if table && r.mutable => Value::Str(format!("{}*", r.id)),
            "ID" => Value::Str(r.id.clone()),
            "Parents" => Value::List(r.parents.clone()),
            // Go's zero time when the daemon sent none.
            "CreatedAt" => Value::Str(
                r.created_at
                    .map_or_else(|| "0001-01-01 00:00:00 +0000 UTC".to_owned(), go_time),
            ),
            "Mutable" => Value::Bool(r.mutable),
            "Reclaimable" => Value::Bool(!r.in_use),
            "Shared" => Value::Bool(r.shared),
            "Size" if table && r.shared => Value::Str(format!("{}*", human_size(r.size))),
            "Size" => Value::Str(human_size(r.size)),
            "Description" => Value::Str(r.description.clone()),
            "UsageCount" => Value::Int(r.usage_count),
            "LastUsedAt" => Value::Str(r.last_used_at.map(ago).unwrap_or_default()),
            "Type" => Value::Str(r.record_type.clone()),
            _ => return None,
        })
    }
}

impl Row for DuRow<'_> {
    fn field(&self, name: &str) -> Option<Value> {
        self.value(name, self.table)
    }

    /// The Docker CLI's `formatter.MarshalJSON`: every field, keys sorted, as in a non-table
    /// format (no `*` marks).
    fn json(&self) -> String {
        let mut keys: Vec<&str> = HEADER.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let body: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                let v = self.value(k, false)?;
                Some(format!("{}:{}", go_json_string(k), v.json()))
            })
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// Runs `kbx du`.
pub(crate) async fn run(args: DuArgs, builder: Option<String>) -> Result<(), Error> {
    let text = format_text(args.format.as_deref(), args.verbose)?;
    let format = Format::parse(text)?;
    let filters = parse_filters(&args.filters)?;
    let (_, expr) = prune_info(&filters)?;
    let ng = builders::load(builder.as_deref())?;
    let mut all = Vec::new();
    for c in clients(&ng).await? {
        let mut records = c.disk_usage_filtered(&expr).await?;
        // The order Buildx 0.29.1 prints a node's records in: smallest first, then by ID.
        records.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.id.cmp(&b.id)));
        all.extend(records);
    }
    let rows: Vec<DuRow<'_>> = all
        .iter()
        .map(|r| DuRow {
            r,
            table: format.is_table(),
        })
        .collect();
    let refs: Vec<&dyn Row> = rows.iter().map(|r| r as &dyn Row).collect();
    let mut out = format.render(HEADER, &refs)?;
    // As buildx: the summary follows its own two formats only, unfiltered.
    if (text == TABLE || text == PRETTY) && filters.is_empty() {
        out.push_str(&summary(&all));
    }
    out!("{out}");
    Ok(())
}

/// The `Shared`/`Private`/`Reclaimable`/`Total` lines.
fn summary(all: &[CacheRecord]) -> String {
    let (mut total, mut reclaimable, mut shared) = (0i64, 0i64, 0i64);
    for r in all {
        if r.size > 0 {
            total += r.size;
            if !r.in_use {
                reclaimable += r.size;
            }
        }
        if r.shared {
            shared += r.size;
        }
    }
    let mut tw = TabWriter::default();
    if shared > 0 {
        tw.line(&format!("Shared:\t{}", human_size(shared)));
        tw.line(&format!("Private:\t{}", human_size(total - shared)));
    }
    tw.line(&format!("Reclaimable:\t{}", human_size(reclaimable)));
    tw.line(&format!("Total:\t{}", human_size(total)));
    tw.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, mutable: bool, shared: bool, parents: &[&str]) -> CacheRecord {
        CacheRecord {
            id: id.to_owned(),
            size: 4096,
            in_use: false,
            mutable,
            record_type: "regular".to_owned(),
            description: "[a 1/1] COPY <x> /".to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            created_at: Some(std::time::UNIX_EPOCH),
            last_used_at: None,
            usage_count: 2,
            shared,
        }
    }

    fn render(given: Option<&str>, verbose: bool, records: &[CacheRecord]) -> String {
        let format = Format::parse(format_text(given, verbose).unwrap()).unwrap();
        let rows: Vec<DuRow<'_>> = records
            .iter()
            .map(|r| DuRow {
                r,
                table: format.is_table(),
            })
            .collect();
        let refs: Vec<&dyn Row> = rows.iter().map(|r| r as &dyn Row).collect();
        format.render(HEADER, &refs).unwrap()
    }

    #[test]
    fn formats_as_buildx_029() {
        let rs = [
            record("a", true, true, &[]),
            record("b", false, false, &["a"]),
        ];
        assert_eq!(
            render(None, false, &rs),
            "ID        RECLAIMABLE   SIZE       LAST ACCESSED\n\
             a*        true          4.096kB*   \n\
             b         true          4.096kB    \n"
        );
        assert_eq!(
            render(Some("json"), false, &rs[1..]),
            "{\"CreatedAt\":\"1970-01-01 00:00:00 +0000 UTC\",\"Description\":\"[a 1/1] COPY \\u003cx\\u003e /\",\"ID\":\"b\",\"LastUsedAt\":\"\",\"Mutable\":false,\"Parents\":[\"a\"],\"Reclaimable\":true,\"Shared\":false,\"Size\":\"4.096kB\",\"Type\":\"regular\",\"UsageCount\":2}\n"
        );
        assert_eq!(
            render(None, true, &rs[1..]),
            "ID:           b\nParents:\n - a\nCreated at:   1970-01-01 00:00:00 +0000 UTC\nMutable:      false\nReclaimable:  true\nShared:       false\nSize:         4.096kB\nDescription:  [a 1/1] COPY <x> /\nUsage count:  2\nType:         regular\n\n"
        );
        assert_eq!(
            render(Some("{{.ID}} {{.Size}}"), false, &rs),
            "a 4.096kB\nb 4.096kB\n"
        );
        assert_eq!(
            format_text(Some("json"), true).unwrap_err().to_string(),
            "--format and --verbose cannot be used together"
        );
    }

    #[test]
    fn summary_counts_shared_and_reclaimable() {
        let rs = [record("a", true, true, &[]), record("b", false, false, &[])];
        assert_eq!(
            summary(&rs),
            "Shared:\t\t4.096kB\nPrivate:\t4.096kB\nReclaimable:\t8.192kB\nTotal:\t\t8.192kB\n"
        );
    }
}
