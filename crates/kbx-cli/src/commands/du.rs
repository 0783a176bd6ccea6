//! `kbx du`: disk usage of the build cache of every node of a builder, with buildx's tables.

use crate::builders;
use crate::cache::{
    TABLE_HEADER, clients, human_size, parse_filters, prune_info, table_row, verbose,
};
use crate::cli::DuArgs;
use crate::error::Error;
use crate::output::out;
use crate::tabwriter::TabWriter;

/// Runs `kbx du`.
pub(crate) async fn run(args: DuArgs, builder: Option<String>) -> Result<(), Error> {
    let filters = parse_filters(&args.filters)?;
    let (_, expr) = prune_info(&filters)?;
    let ng = builders::load(builder.as_deref())?;
    let mut all = Vec::new();
    for c in clients(&ng).await? {
        all.push(c.disk_usage_filtered(&expr).await?);
    }
    let mut out = String::new();
    let mut tw = TabWriter::default();
    let mut first = true;
    for records in &all {
        if args.verbose {
            for r in records {
                verbose(&mut tw, r);
            }
            out.push_str(&tw.flush());
        } else {
            if first {
                tw.line(TABLE_HEADER);
                first = false;
            }
            for r in records {
                tw.line(&table_row(r));
            }
            out.push_str(&tw.flush());
        }
    }
    if filters.is_empty() {
        let (mut total, mut reclaimable, mut shared) = (0i64, 0i64, 0i64);
        for r in all.iter().flatten() {
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
        if shared > 0 {
            tw.line(&format!("Shared:\t{}", human_size(shared)));
            tw.line(&format!("Private:\t{}", human_size(total - shared)));
        }
        tw.line(&format!("Reclaimable:\t{}", human_size(reclaimable)));
        tw.line(&format!("Total:\t{}", human_size(total)));
        out.push_str(&tw.flush());
    }
    out!("{out}");
    Ok(())
}
