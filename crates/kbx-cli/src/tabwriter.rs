//! Go's `text/tabwriter` as buildx's `du` and `prune` use it: `NewWriter(out, 1, 8, 1, '\t', 0)`
//! (minimum width 1, tab width 8, padding 1, padded with tabs). Text is buffered until
//! [`TabWriter::flush`], and columns are aligned within the flushed text only, so where the
//! caller flushes changes the output exactly as in Go.

/// Buffers tab-separated lines and aligns them on flush.
#[derive(Debug)]
pub(crate) struct TabWriter {
    lines: Vec<Vec<String>>,
    params: Params,
}

/// `NewWriter`'s minimum width, padding and padding character (the tab width is 8).
#[derive(Debug, Clone, Copy)]
struct Params {
    min_width: usize,
    padding: usize,
    tabs: bool,
}

const TAB_WIDTH: usize = 8;

impl Default for TabWriter {
    /// `NewWriter(out, 1, 8, 1, '\t', 0)`, as buildx's own tables.
    fn default() -> Self {
        TabWriter {
            lines: Vec::new(),
            params: Params {
                min_width: 1,
                padding: 1,
                tabs: true,
            },
        }
    }
}

impl TabWriter {
    /// `NewWriter(out, 10, 1, 3, ' ', 0)`, as the Docker CLI's `formatter.Context` writes
    /// `table` formats.
    pub(crate) fn docker_table() -> Self {
        TabWriter {
            lines: Vec::new(),
            params: Params {
                min_width: 10,
                padding: 3,
                tabs: false,
            },
        }
    }

    /// Adds one line (without its newline); `\t` ends a cell.
    pub(crate) fn line(&mut self, text: &str) {
        self.lines
            .push(text.split('\t').map(str::to_owned).collect());
    }

    /// The aligned text of every buffered line; the buffer is emptied.
    pub(crate) fn flush(&mut self) -> String {
        let lines = std::mem::take(&mut self.lines);
        let mut out = String::new();
        let mut widths = Vec::new();
        format(&lines, 0, lines.len(), &mut widths, self.params, &mut out);
        out
    }
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Go's recursive column-block formatting: a block is a run of lines that have a tab-terminated
/// cell in the current column; its width is the widest cell plus padding.
fn format(
    lines: &[Vec<String>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    params: Params,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, params, out);
        line0 = this;
        let mut w = params.min_width;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(&lines[this][column]) + params.padding);
            this += 1;
        }
        widths.push(w);
        format(lines, line0, this, widths, params, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, params, out);
}

fn write_lines(
    lines: &[Vec<String>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    params: Params,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() && j < widths.len() && !params.tabs {
                out.push_str(&" ".repeat(widths[j].saturating_sub(width(cell))));
            } else if j + 1 < line.len() && j < widths.len() {
                // Padding with tabs: the cell is widened to a multiple of the tab width.
                let cellw = widths[j].div_ceil(TAB_WIDTH) * TAB_WIDTH;
                let n = cellw.saturating_sub(width(cell));
                out.push_str(&"\t".repeat(n.div_ceil(TAB_WIDTH)));
            }
        }
        out.push('\n');
    }
}

/// Go `text/tabwriter` with padding 3: every cell but the last of a row is padded.
pub(crate) fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_go_with_tab_padding() {
        let mut tw = TabWriter::default();
        tw.line("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED");
        tw.line(&format!("{:<40}\t{:<5}\t{:<10}\t", "abc", "true", "1.2kB"));
        let text = tw.flush();
        assert_eq!(
            text,
            format!(
                "ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED\n{:<40}\ttrue \t\t1.2kB     \t\n",
                "abc"
            )
        );
        // A later flush aligns on its own lines only.
        tw.line(&format!("{:<40}\t{:<5}\t{:<10}\t", "abc", "false", "0B"));
        assert_eq!(tw.flush(), format!("{:<40}\tfalse\t0B        \t\n", "abc"));

        tw.line("Reclaimable:\t1B");
        tw.line("Total:\t2B");
        assert_eq!(tw.flush(), "Reclaimable:\t1B\nTotal:\t\t2B\n");
        // An empty line ends a column block.
        tw.line("ID:\tx");
        tw.line("");
        tw.line("Description:\ty");
        assert_eq!(tw.flush(), "ID:\tx\n\nDescription:\ty\n");
    }

    #[test]
    fn docker_tables_pad_with_spaces_to_ten_columns_at_least() {
        let mut tw = TabWriter::docker_table();
        tw.line("BUILD ID\tNAME\tSTATUS\t");
        tw.line("mma7tscpfkcd5bz4axnc2hq3g\tctx\tCompleted\t");
        assert_eq!(
            tw.flush(),
            "BUILD ID                    NAME      STATUS      \n\
             mma7tscpfkcd5bz4axnc2hq3g   ctx       Completed   \n"
        );
    }

    #[test]
    fn tabwriter_pads_like_go() {
        let rows: Vec<Vec<String>> = [
            [
                "NAME/NODE",
                "DRIVER/ENDPOINT",
                "STATUS",
                "BUILDKIT",
                "PLATFORMS",
            ],
            ["kube2", "kubernetes", "", "", ""],
            [
                " \\_ kube20",
                " \\_ kubernetes:///kube2?deployment=x&kubeconfig=",
                "stopped",
                "",
                "",
            ],
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
        let text = tabwrite(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME/NODE    DRIVER/ENDPOINT "),
            "{text}"
        );
        assert!(lines[1].starts_with("kube2        kubernetes "), "{text}");
        assert!(
            lines[2].starts_with(
                " \\_ kube20    \\_ kubernetes:///kube2?deployment=x&kubeconfig=   stopped    "
            ),
            "{text}"
        );
        assert!(lines[1].ends_with(' '), "trailing padding as in buildx");
    }
}
