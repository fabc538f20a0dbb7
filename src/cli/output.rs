//! Human-readable output: sizes, aligned tables.

/// Bytes as `1.5 MiB` (binary units, one decimal above KiB).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Prints one JSON document on stdout (pretty, newline-terminated).
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    outln!("{text}");
}

/// Unix nanoseconds as RFC 3339 UTC (whole seconds), for JSON.
pub fn rfc3339_ns(ns: i64) -> String {
    crate::clock::Civil::from_unix(ns.div_euclid(1_000_000_000)).rfc3339()
}

/// A table printed with columns aligned; numeric-looking columns are
/// right-aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        let mut numeric = vec![true; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                numeric[i] &= looks_numeric(cell);
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - cell.chars().count();
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A count, a size (`1.5 MiB`) or a duration (`0.2s`): right-aligned.
fn looks_numeric(cell: &str) -> bool {
    let number = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "B", "s"]
        .iter()
        .find_map(|unit| cell.strip_suffix(unit))
        .unwrap_or(cell)
        .trim_end();
    !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn numeric_cells() {
        for yes in ["10", "1.5 MiB", "0 B", "0.2s"] {
            assert!(looks_numeric(yes), "{yes}");
        }
        for no in ["2026-11-27-08-57-22", "home", "", "1m 02s"] {
            assert!(!looks_numeric(no), "{no}");
        }
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["name", "size"]);
        t.row(vec!["a".into(), "10".into()]);
        t.row(vec!["long name".into(), "1000".into()]);
        assert_eq!(
            t.render(),
            "name       size\na            10\nlong name  1000\n"
        );
    }
}
