//! What `tally` prints for people: aligned plain-text tables and `key: value` blocks. Every
//! cell is cleaned of control characters (a title could hold a newline or a terminal escape)
//! and widths are counted in characters, which is exact for the ids and times Tally prints.

use std::io::{self, Write};

/// Columns apart by two spaces, each as wide as its widest cell; the header in capitals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Longer cells are cut to this many characters, ending in `…` (`get` shows them whole).
pub const MAX_CELL_CHARS: usize = 48;

impl Table {
    pub fn new<S: AsRef<str>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers
                .into_iter()
                .map(|h| clean(h.as_ref()).to_uppercase())
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, cells past the last column are dropped.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| cut(&clean(c.as_ref()), MAX_CELL_CHARS))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header, then one line per row; no trailing spaces.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (most, cell) in widths.iter_mut().zip(row) {
                *most = (*most).max(width(cell));
            }
        }
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, (cell, most)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', most - width(cell)));
            }
            writeln!(w, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// `key: value` lines, the values aligned after the longest key.
pub fn write_fields(w: &mut impl Write, fields: &[(String, String)]) -> io::Result<()> {
    let keys: Vec<String> = fields.iter().map(|(k, _)| clean(k)).collect();
    let pad = keys.iter().map(|k| width(k)).max().unwrap_or(0);
    for (key, (_, value)) in keys.iter().zip(fields) {
        let gap = pad - width(key);
        let line = format!("{key}: {}{}", " ".repeat(gap), clean(value));
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A JSON value as a cell: text as is, nothing as `-`, a list of plain values joined by
/// commas, anything else as compact JSON.
pub fn cell(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

/// Control characters (newlines, tabs, escapes) written out as escapes, so a cell stays on
/// its line and cannot drive the terminal.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn cut(text: &str, max: usize) -> String {
    match width(text) > max {
        true => text.chars().take(max - 1).chain(['…']).collect(),
        false => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(table: &Table) -> String {
        let mut out = Vec::new();
        table.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_align_to_their_widest_cell_without_trailing_spaces() {
        let mut t = Table::new(["id", "version", "title"]);
        t.row(["final", "3", "Who wins?"]);
        t.row(["a-much-longer-id", "12", ""]);
        assert_eq!(
            rendered(&t),
            "ID                VERSION  TITLE\n\
             final             3        Who wins?\n\
             a-much-longer-id  12\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = Table::new(["name", "role"]);
        assert!(t.is_empty());
        assert_eq!(rendered(&t), "NAME  ROLE\n");
    }

    #[test]
    fn short_rows_are_padded_and_long_ones_cut_to_the_header() {
        let mut t = Table::new(["a", "b"]);
        t.row(["1"]);
        t.row(["2", "3", "dropped"]);
        assert_eq!(rendered(&t), "A  B\n1\n2  3\n");
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis_counted_in_characters() {
        let mut t = Table::new(["x"]);
        t.row(["é".repeat(MAX_CELL_CHARS + 5)]);
        let line = rendered(&t).lines().nth(1).unwrap().to_owned();
        assert_eq!(line.chars().count(), MAX_CELL_CHARS);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn control_characters_cannot_break_a_line_or_reach_the_terminal() {
        let mut t = Table::new(["title"]);
        t.row(["two\nlines\t\u{1b}[31mred"]);
        assert_eq!(rendered(&t), "TITLE\ntwo\\nlines\\t\\u{1b}[31mred\n");
        let mut out = Vec::new();
        write_fields(&mut out, &[("k".into(), "a\rb".into())]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "k: a\\rb\n");
    }

    #[test]
    fn fields_align_their_values() {
        let mut out = Vec::new();
        let fields = [
            ("id".to_owned(), "final".to_owned()),
            ("version".to_owned(), "3".to_owned()),
            ("title".to_owned(), String::new()),
        ];
        write_fields(&mut out, &fields).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id:      final\nversion: 3\ntitle:\n"
        );
    }

    #[test]
    fn json_values_become_readable_cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("red")), "red");
        assert_eq!(cell(&json!(700)), "700");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!(["red", "blue"])), "red, blue");
        assert_eq!(cell(&json!([{"id": "vip"}])), r#"[{"id":"vip"}]"#);
        assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
    }
}
