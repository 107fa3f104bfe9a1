//! A batch of typed rows as a row source both backends read in one statement: PostgreSQL
//! `unnest` over one array per column, SQLite `json_each` over one JSON array of rows. Each
//! batched statement is written once, naming [`RowBatch::source`] in its `FROM`.

use crate::{Backend, Db};
use sea_orm::Value;
use std::fmt::Write;

/// One column of a [`RowBatch`].
#[derive(Clone, Debug)]
enum Column {
    /// `bigint` ids (bound as `bigint`, compared across widths with `integer` columns).
    Ids(Vec<i64>),
    /// JSON documents as text: `jsonb` on PostgreSQL, text on SQLite.
    Json(Vec<String>),
}

/// Rows of named, typed columns, all of one length.
#[derive(Clone, Debug, Default)]
pub(crate) struct RowBatch {
    columns: Vec<(&'static str, Column)>,
}

impl RowBatch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds an id column.
    pub(crate) fn ids(mut self, name: &'static str, values: impl IntoIterator<Item = i64>) -> Self {
        self.columns
            .push((name, Column::Ids(values.into_iter().collect())));
        self.check_lengths();
        self
    }

    /// Adds a JSON column from JSON texts.
    pub(crate) fn json<'s>(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = &'s str>,
    ) -> Self {
        self.columns.push((
            name,
            Column::Json(values.into_iter().map(str::to_owned).collect()),
        ));
        self.check_lengths();
        self
    }

    fn len(&self) -> usize {
        match self.columns.first() {
            None => 0,
            Some((_, Column::Ids(v))) => v.len(),
            Some((_, Column::Json(v))) => v.len(),
        }
    }

    fn check_lengths(&self) {
        let len = self.len();
        debug_assert!(self.columns.iter().all(|(_, c)| match c {
            Column::Ids(v) => v.len() == len,
            Column::Json(v) => v.len() == len,
        }));
    }

    /// The rows as a parenthesized subquery with one output column per batch column (name
    /// it with `AS alias` after it), and its parameters, numbered from `$first_param`.
    pub(crate) fn source(&self, db: &Db, first_param: usize) -> (String, Vec<Value>) {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        match db.backend() {
            Backend::Postgres => {
                let mut arrays = Vec::with_capacity(self.columns.len());
                let mut outputs = Vec::with_capacity(self.columns.len());
                let mut values = Vec::with_capacity(self.columns.len());
                for (i, (name, column)) in self.columns.iter().enumerate() {
                    let param = first_param + i;
                    match column {
                        Column::Ids(ids) => {
                            arrays.push(format!("${param}::bigint[]"));
                            outputs.push(format!("r.{name}"));
                            values.push(Value::from(ids.clone()));
                        }
                        Column::Json(texts) => {
                            // Bound as text[]: sqlx sends a String array as text, not jsonb.
                            arrays.push(format!("${param}::text[]"));
                            outputs.push(format!("r.{name}::jsonb AS {name}"));
                            values.push(Value::from(texts.clone()));
                        }
                    }
                }
                (
                    format!(
                        "(SELECT {} FROM unnest({}) AS r({}))",
                        outputs.join(", "),
                        arrays.join(", "),
                        names.join(", ")
                    ),
                    values,
                )
            }
            Backend::Sqlite => {
                let outputs: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| format!("value ->> {i} AS {name}"))
                    .collect();
                (
                    format!(
                        "(SELECT {} FROM json_each(${first_param}))",
                        outputs.join(", ")
                    ),
                    vec![Value::from(self.json_rows())],
                )
            }
        }
    }

    /// `[[a, b, "text"], ...]`, one inner array per row.
    fn json_rows(&self) -> String {
        let mut json = String::with_capacity(self.len() * 48 + 2);
        json.push('[');
        for row in 0..self.len() {
            if row > 0 {
                json.push(',');
            }
            json.push('[');
            for (i, (_, column)) in self.columns.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                match column {
                    Column::Ids(ids) => {
                        let _ = write!(json, "{}", ids[row]);
                    }
                    Column::Json(texts) => push_json_string(&mut json, &texts[row]),
                }
            }
            json.push(']');
        }
        json.push(']');
        json
    }
}

/// Appends `text` as a JSON string literal.
pub(crate) fn push_json_string(json: &mut String, text: &str) {
    json.push_str(&serde_json::Value::from(text).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_rows_escape_text_and_keep_ids() {
        let batch = RowBatch::new()
            .ids("id", [1, -2])
            .json("snapshot", [r#"{"a":"x\"y"}"#, "[]"]);
        assert_eq!(batch.json_rows(), r#"[[1,"{\"a\":\"x\\\"y\"}"],[-2,"[]"]]"#);
    }
}
