//! The resources a database exposes (`steward.exposed_resources`), and the statements built from
//! them. Every identifier in a statement comes from this description, quoted; every value a
//! request carries is a parameter, sent as text and cast by the database to the column's type.
//! Nothing here needs a database: the tests are plain.

use serde::Deserialize;

use crate::error::ApiError;
use crate::query::{Cursor, Direction, Filter, ListQuery, Op};

/// One column of a resource.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, NULL)`: valid SQL for a cast.
    #[serde(rename = "type")]
    pub sql_type: String,
    #[serde(default)]
    pub array: bool,
    #[serde(default)]
    pub element: Option<String>,
    pub nullable: bool,
    pub has_default: bool,
    pub writable: bool,
}

/// What JSON a column takes in a request body, from its SQL type (the same mapping as the
/// OpenAPI document's schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Any,
    Array,
    Boolean,
    Integer,
    Number,
    String,
}

impl JsonKind {
    pub fn of(sql_type: &str, array: bool) -> JsonKind {
        if array {
            return JsonKind::Array;
        }
        match sql_type {
            "json" | "jsonb" => JsonKind::Any,
            "boolean" => JsonKind::Boolean,
            "smallint" | "integer" | "bigint" => JsonKind::Integer,
            "numeric" | "real" | "double precision" => JsonKind::Number,
            _ => JsonKind::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JsonKind::Any => "any JSON value",
            JsonKind::Array => "an array",
            JsonKind::Boolean => "a boolean",
            JsonKind::Integer => "an integer",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
        }
    }

    /// Whether `v` is such a value (null is left to the column's NOT NULL).
    pub fn fits(self, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, v) {
            (_, Value::Null) | (JsonKind::Any, _) => true,
            (JsonKind::Array, Value::Array(_)) => true,
            (JsonKind::Boolean, Value::Bool(_)) => true,
            (JsonKind::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (JsonKind::Number, Value::Number(_)) => true,
            (JsonKind::String, Value::String(_)) => true,
            _ => false,
        }
    }
}

impl Column {
    pub fn json_kind(&self) -> JsonKind {
        JsonKind::of(&self.sql_type, self.array)
    }

    /// Whether rows can be compared and ordered by this column (json has no equality).
    pub fn comparable(&self) -> bool {
        self.sql_type != "json" && !self.sql_type.ends_with("json[]")
    }
}

/// One exposed resource.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Resource {
    pub resource: String,
    pub schema: String,
    pub table: String,
    /// `table` or `view`.
    pub kind: String,
    /// The primary key's columns but the tenant column, in key order (empty for a view).
    pub key: Vec<String>,
    /// Every primary key column, the tenant column included where it is one.
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub tenant_column: Option<String>,
    pub versioned: bool,
    #[serde(default)]
    pub soft_delete: bool,
    pub columns: Vec<Column>,
}

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(Option<String>),
    TextArray(Vec<Option<String>>),
}

/// A statement and its parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }
}

/// `"name"`, with embedded quotes doubled: safe for any identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (standard_conforming_strings, or E'' when it holds a backslash).
pub fn literal(s: &str) -> String {
    let quoted = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

impl Resource {
    pub fn is_view(&self) -> bool {
        self.kind == "view"
    }

    pub fn relation(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn known(&self, name: &str) -> Result<&Column, ApiError> {
        self.column(name).ok_or_else(|| {
            ApiError::bad_request(
                format!("resource \"{}\" has no column \"{name}\"", self.resource),
                format!(
                    "Columns of {}: {}.",
                    self.resource,
                    self.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    fn key_columns(&self) -> Vec<&Column> {
        self.key.iter().filter_map(|k| self.column(k)).collect()
    }

    /// The row as JSON, its columns in table order: `(SELECT row_to_json(x.*) FROM (SELECT
    /// t."a", t."b") x)` (`x.*`: the row, even when a column is named x).
    fn row_json(&self, columns: &[&Column]) -> String {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("t.{}", ident(&c.name)))
            .collect();
        format!(
            "(SELECT pg_catalog.row_to_json(x.*) FROM (SELECT {}) x)::text",
            list.join(", ")
        )
    }

    /// What a row's ETag is made of: its version, or (unversioned) a digest of all its exposed
    /// columns.
    fn etag_expr(&self) -> String {
        if self.versioned {
            "t.\"version\"::text".into()
        } else {
            let all: Vec<&Column> = self.columns.iter().collect();
            format!("pg_catalog.md5({})", self.row_json(&all))
        }
    }

    fn selected<'a>(&'a self, select: &Option<Vec<String>>) -> Result<Vec<&'a Column>, ApiError> {
        match select {
            None => Ok(self.columns.iter().collect()),
            Some(names) => {
                let mut out: Vec<&Column> = Vec::new();
                for n in names {
                    let c = self.known(n)?;
                    if !out.iter().any(|o| o.name == c.name) {
                        out.push(c);
                    }
                }
                // Table order, whatever order select= named them in.
                out.sort_by_key(|c| self.columns.iter().position(|x| x.name == c.name));
                Ok(out)
            }
        }
    }

    fn cast(&self, st: &mut Statement, c: &Column, value: Option<String>) -> String {
        let p = st.bind(Param::Text(value));
        format!("CAST({p} AS {})", c.sql_type)
    }

    fn key_condition(&self, st: &mut Statement, key: &[String]) -> Result<String, ApiError> {
        let cols = self.key_columns();
        if cols.is_empty() {
            return Err(ApiError::not_found(
                format!(
                    "resource \"{}\" is a view: its rows have no key",
                    self.resource
                ),
                format!("List its rows with GET /v1/{} and filters.", self.resource),
            ));
        }
        if key.len() != cols.len() {
            return Err(ApiError::bad_request(
                format!(
                    "a key of resource \"{}\" has {} part(s) ({}), this one has {}",
                    self.resource,
                    cols.len(),
                    self.key.join(", "),
                    key.len()
                ),
                "Separate a composite key's parts with \",\", and percent-encode any \",\" or \"/\" inside a part.",
            ));
        }
        let mut parts = Vec::new();
        for (c, v) in cols.iter().zip(key) {
            let cast = self.cast(st, c, Some(v.clone()));
            parts.push(format!("t.{} = {cast}", ident(&c.name)));
        }
        Ok(parts.join(" AND "))
    }

    fn filter_condition(&self, st: &mut Statement, f: &Filter) -> Result<String, ApiError> {
        let c = self.known(&f.column)?;
        let col = format!("t.{}", ident(&c.name));
        let comparable = |op: &str| {
            if c.comparable() {
                Ok(())
            } else {
                Err(ApiError::bad_request(
                    format!(
                        "column \"{}\" of resource \"{}\" has type {}, which cannot be compared with {op}",
                        c.name, self.resource, c.sql_type
                    ),
                    "Filter on another column, or use is.null.",
                ))
            }
        };
        Ok(match &f.op {
            Op::Cmp(sym, name, value) => {
                comparable(name)?;
                let cast = self.cast(st, c, Some(value.clone()));
                format!("{col} {sym} {cast}")
            }
            Op::In(values) => {
                comparable("in")?;
                if c.array {
                    return Err(ApiError::bad_request(
                        format!("column \"{}\" is an array: in. does not apply", c.name),
                        "Use eq. with an array literal, e.g. eq.{a,b}.",
                    ));
                }
                let p = st.bind(Param::TextArray(
                    values.iter().map(|v| Some(v.clone())).collect(),
                ));
                format!("{col} = ANY (CAST({p} AS {}[]))", c.sql_type)
            }
            Op::IsNull => format!("{col} IS NULL"),
            Op::IsBool(b) => {
                if c.sql_type != "boolean" {
                    return Err(ApiError::bad_request(
                        format!(
                            "column \"{}\" has type {}: is.{b} applies to boolean columns",
                            c.name, c.sql_type
                        ),
                        "Use is.null, or eq. with a value.",
                    ));
                }
                format!("{col} IS {}", if *b { "TRUE" } else { "FALSE" })
            }
        })
    }

    /// GET /v1/{resource}: a page of rows, and the values the next page's cursor is made of.
    /// Each result row: the row's JSON, then one text value per ordering term.
    pub fn list(&self, q: &ListQuery) -> Result<(Statement, Vec<(String, Direction)>), ApiError> {
        let mut st = Statement::default();
        let cols = self.selected(&q.select)?;
        let mut conds = Vec::new();
        for f in &q.filters {
            conds.push(self.filter_condition(&mut st, f)?);
        }
        // The order asked for, then the key (ascending) so that the order is total and the
        // cursor names exactly one row.
        let mut order: Vec<(String, Direction)> = Vec::new();
        for (name, dir) in &q.order {
            let c = self.known(name)?;
            if !c.comparable() {
                return Err(ApiError::bad_request(
                    format!(
                        "column \"{}\" has type {}: rows cannot be ordered by it",
                        c.name, c.sql_type
                    ),
                    "Order by another column.",
                ));
            }
            if !order.iter().any(|(n, _)| n == name) {
                order.push((name.clone(), *dir));
            }
        }
        for k in &self.key {
            if !order.iter().any(|(n, _)| n == k) {
                order.push((k.clone(), Direction::Asc));
            }
        }
        if let Some(cursor) = &q.after {
            conds.push(self.keyset(&mut st, &order, cursor)?);
        }
        let mut sql = format!("SELECT {}", self.row_json(&cols));
        for (name, _) in &order {
            sql.push_str(&format!(", t.{}::text", ident(name)));
        }
        sql.push_str(&format!(" FROM {} t", self.relation()));
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if !order.is_empty() {
            let terms: Vec<String> = order
                .iter()
                .map(|(n, d)| format!("t.{} {}", ident(n), d.sql()))
                .collect();
            sql.push_str(" ORDER BY ");
            sql.push_str(&terms.join(", "));
        }
        // One more than the page: whether there is a next page.
        sql.push_str(&format!(" LIMIT {}", u64::from(q.limit) + 1));
        st.sql = sql;
        Ok((st, order))
    }

    /// Rows strictly after the cursor in `order` (ASC sorts NULLs last, DESC first, as
    /// PostgreSQL does): the OR over each term of "equal on the terms before it, after on it".
    fn keyset(
        &self,
        st: &mut Statement,
        order: &[(String, Direction)],
        cursor: &Cursor,
    ) -> Result<String, ApiError> {
        if cursor.values.len() != order.len() {
            return Err(ApiError::bad_cursor("it was made for another order"));
        }
        let mut branches = Vec::new();
        let mut equal: Vec<String> = Vec::new();
        for ((name, dir), value) in order.iter().zip(&cursor.values) {
            let c = self.known(name)?;
            let col = format!("t.{}", ident(name));
            let (after, same) = match (dir, value) {
                (Direction::Asc, None) => (None, format!("{col} IS NULL")),
                (Direction::Desc, None) => {
                    (Some(format!("{col} IS NOT NULL")), format!("{col} IS NULL"))
                }
                (Direction::Asc, Some(v)) => {
                    let cast = self.cast(st, c, Some(v.clone()));
                    (
                        Some(format!("({col} > {cast} OR {col} IS NULL)")),
                        format!("{col} = {cast}"),
                    )
                }
                (Direction::Desc, Some(v)) => {
                    let cast = self.cast(st, c, Some(v.clone()));
                    (Some(format!("{col} < {cast}")), format!("{col} = {cast}"))
                }
            };
            if let Some(after) = after {
                let mut b = equal.clone();
                b.push(after);
                branches.push(format!("({})", b.join(" AND ")));
            }
            equal.push(same);
        }
        if branches.is_empty() {
            return Ok("false".into());
        }
        Ok(format!("({})", branches.join(" OR ")))
    }

    /// GET /v1/{resource}/{key}: the row's JSON and its ETag.
    pub fn get(&self, key: &[String], select: &Option<Vec<String>>) -> Result<Statement, ApiError> {
        let mut st = Statement::default();
        let cols = self.selected(select)?;
        let cond = self.key_condition(&mut st, key)?;
        st.sql = format!(
            "SELECT {}, {} FROM {} t WHERE {cond}",
            self.row_json(&cols),
            self.etag_expr(),
            self.relation()
        );
        Ok(st)
    }

    /// 405 for a view: it is read-only.
    pub fn read_only(&self) -> Result<(), ApiError> {
        if self.is_view() {
            return Err(ApiError::method_not_allowed(
                "GET",
                format!("resource \"{}\" is a view: it is read-only", self.resource),
                "Write to the tables the view reads.",
            ));
        }
        Ok(())
    }

    /// The columns a body names: each must be exposed and writable.
    fn body_columns(
        &self,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<&Column>, ApiError> {
        let mut cols = Vec::new();
        for name in body.keys() {
            let c = self.column(name).ok_or_else(|| {
                ApiError::bad_request(
                    format!("resource \"{}\" has no column \"{name}\"", self.resource),
                    format!(
                        "Writable columns of {}: {}.",
                        self.resource,
                        self.writable().join(", ")
                    ),
                )
            })?;
            if !c.writable {
                return Err(ApiError::bad_request(
                    format!(
                        "column \"{name}\" of resource \"{}\" is not writable",
                        self.resource
                    ),
                    if self.versioned && name == "version" {
                        "The version is stated with If-Match, never written.".to_string()
                    } else {
                        format!("Writable columns: {}.", self.writable().join(", "))
                    },
                ));
            }
            let kind = c.json_kind();
            if !kind.fits(&body[name]) {
                return Err(ApiError::bad_request(
                    format!(
                        "column \"{name}\" of resource \"{}\" has type {}: the body gives it {}, not {}",
                        self.resource,
                        c.sql_type,
                        json_type(&body[name]),
                        kind.name()
                    ),
                    "Send each value as the type GET /openapi.json gives it (dates, times and UUIDs as strings).",
                ));
            }
            cols.push(c);
        }
        cols.sort_by_key(|c| self.columns.iter().position(|x| x.name == c.name));
        Ok(cols)
    }

    fn writable(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.writable)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// POST /v1/{resource}: the new row's JSON, ETag and key parts.
    pub fn insert(
        &self,
        body: &serde_json::Map<String, serde_json::Value>,
        body_text: String,
    ) -> Result<Statement, ApiError> {
        self.read_only()?;
        let mut st = Statement::default();
        let cols = self.body_columns(body)?;
        let all: Vec<&Column> = self.columns.iter().collect();
        let mut returning = vec![self.row_json(&all), self.etag_expr()];
        for k in &self.key {
            returning.push(format!("t.{}::text", ident(k)));
        }
        let rel = self.relation();
        st.sql = if cols.is_empty() {
            format!(
                "INSERT INTO {rel} AS t DEFAULT VALUES RETURNING {}",
                returning.join(", ")
            )
        } else {
            let p = st.bind(Param::Text(Some(body_text)));
            let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
            let values: Vec<String> = cols
                .iter()
                .map(|c| format!("r.{}", ident(&c.name)))
                .collect();
            format!(
                "INSERT INTO {rel} AS t ({}) SELECT {} FROM pg_catalog.jsonb_populate_record(NULL::{rel}, CAST({p} AS jsonb)) r RETURNING {}",
                names.join(", "),
                values.join(", "),
                returning.join(", ")
            )
        };
        Ok(st)
    }

    /// PATCH /v1/{resource}/{key} with `If-Match: "<etag>"` (None for `*`). Result rows: the
    /// changed row's JSON and new ETag, `true`; or nothing changed: NULL, the current ETag
    /// (NULL when there is no such row), `false`.
    pub fn update(
        &self,
        key: &[String],
        etag: Option<&str>,
        body: &serde_json::Map<String, serde_json::Value>,
        body_text: String,
    ) -> Result<Statement, ApiError> {
        self.read_only()?;
        let mut st = Statement::default();
        let cols = self.body_columns(body)?;
        if cols.is_empty() {
            return Err(ApiError::bad_request(
                format!(
                    "the body names no column of resource \"{}\" to change",
                    self.resource
                ),
                format!(
                    "Send the columns to change, e.g. {{\"{}\": ...}}.",
                    self.writable().first().copied().unwrap_or("column")
                ),
            ));
        }
        let rel = self.relation();
        let p = st.bind(Param::Text(Some(body_text)));
        let mut names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
        let mut values: Vec<String> = cols
            .iter()
            .map(|c| format!("r.{}", ident(&c.name)))
            .collect();
        let cond = self.key_condition(&mut st, key)?;
        let mut where_ = cond.clone();
        match (etag, self.versioned) {
            (Some(v), true) => {
                // Stating the version is steward's check (ST409 when stale).
                let p = st.bind(Param::Text(Some(v.to_string())));
                names.push("\"version\"".into());
                values.push(format!("CAST({p} AS bigint)"));
            }
            (Some(v), false) => {
                let p = st.bind(Param::Text(Some(v.to_string())));
                where_ = format!("{where_} AND {} = {p}", self.etag_expr());
            }
            (None, _) => {}
        }
        let all: Vec<&Column> = self.columns.iter().collect();
        // A single column is still a row: (a) = (SELECT ...) needs the sub-select form.
        st.sql = format!(
            "WITH w AS (UPDATE {rel} AS t SET ({}) = (SELECT {} FROM pg_catalog.jsonb_populate_record(NULL::{rel}, CAST({p} AS jsonb)) r) WHERE {where_} RETURNING {} AS j, {} AS e) \
             SELECT w.j, w.e, true FROM w \
             UNION ALL SELECT NULL, (SELECT {} FROM {rel} t WHERE {cond}), false WHERE NOT EXISTS (SELECT 1 FROM w)",
            names.join(", "),
            values.join(", "),
            self.row_json(&all),
            self.etag_expr(),
            self.etag_expr(),
        );
        Ok(st)
    }

    /// DELETE /v1/{resource}/{key} with `If-Match` (None for `*`). Result rows as `update`.
    pub fn delete(&self, key: &[String], etag: Option<&str>) -> Result<Statement, ApiError> {
        self.read_only()?;
        let mut st = Statement::default();
        let rel = self.relation();
        let cond = self.key_condition(&mut st, key)?;
        let mut where_ = cond.clone();
        if let Some(v) = etag {
            let p = st.bind(Param::Text(Some(v.to_string())));
            where_ = if self.versioned {
                format!("{where_} AND t.\"version\" = CAST({p} AS bigint)")
            } else {
                format!("{where_} AND {} = {p}", self.etag_expr())
            };
        }
        st.sql = format!(
            "WITH w AS (DELETE FROM {rel} AS t WHERE {where_} RETURNING NULL::text AS j, {} AS e) \
             SELECT w.j, w.e, true FROM w \
             UNION ALL SELECT NULL, (SELECT {} FROM {rel} t WHERE {cond}), false WHERE NOT EXISTS (SELECT 1 FROM w)",
            self.etag_expr(),
            self.etag_expr(),
        );
        Ok(st)
    }

    /// GET /v1/{resource}/{key}/history: the row's audit records, oldest first, showing only the
    /// exposed columns of the row.
    pub fn history(&self, key: &[String]) -> Result<Statement, ApiError> {
        let mut st = Statement::default();
        let cols = self.key_columns();
        if cols.is_empty() || self.is_view() {
            return Err(ApiError::not_found(
                format!(
                    "resource \"{}\" is a view: it has no history",
                    self.resource
                ),
                "History is kept for the rows of governed tables.",
            ));
        }
        if key.len() != cols.len() {
            // The same message as every other key route.
            self.key_condition(&mut st, key)?;
        }
        let rel = st.bind(Param::Text(Some(self.relation())));
        // The row's whole primary key, as the log keys it: the tenant column (when it is part
        // of the key) is the caller's tenant.
        let mut parts = Vec::new();
        for name in &self.primary_key {
            if Some(name) == self.tenant_column.as_ref() {
                parts.push(format!("{}, steward.current_tenant()", literal(name)));
            } else if let Some(i) = self.key.iter().position(|k| k == name) {
                let cast = self.cast(&mut st, cols[i], Some(key[i].clone()));
                parts.push(format!("{}, {cast}", literal(name)));
            }
        }
        let names = st.bind(Param::TextArray(
            self.columns.iter().map(|c| Some(c.name.clone())).collect(),
        ));
        let project = |col: &str| {
            format!(
                "(SELECT pg_catalog.jsonb_object_agg(e.k, e.v) FROM pg_catalog.jsonb_each(h.{col}) e(k, v) WHERE e.k = ANY (CAST({names} AS text[])))"
            )
        };
        st.sql = format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
               'id', h.id, 'occurred_at', h.occurred_at, 'actor', h.actor, 'reason', h.reason, \
               'request_id', h.request_id, 'action', h.action, 'old_row', {}, 'new_row', {}, \
               'changed', CASE pg_catalog.jsonb_typeof(h.changed) \
                 WHEN 'array' THEN (SELECT pg_catalog.jsonb_agg(c) FROM pg_catalog.jsonb_array_elements_text(h.changed) c WHERE c = ANY (CAST({names} AS text[]))) \
                 WHEN 'object' THEN (SELECT pg_catalog.jsonb_object_agg(e.k, e.v) FROM pg_catalog.jsonb_each(h.changed) e(k, v) WHERE e.k = ANY (CAST({names} AS text[]))) \
                 ELSE h.changed END) ORDER BY h.id), '[]')::text, count(*) \
             FROM steward.history(CAST({rel} AS regclass), pg_catalog.jsonb_build_object({})) h",
            project("old_row"),
            project("new_row"),
            parts.join(", ")
        );
        Ok(st)
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_list;

    fn projects() -> Resource {
        serde_json::from_value(serde_json::json!({
            "resource": "projects", "schema": "app", "table": "pro\"jects", "kind": "table",
            "key": ["id"], "versioned": true,
            "columns": [
                {"name": "id", "type": "bigint", "nullable": false, "has_default": true, "writable": false},
                {"name": "name", "type": "text", "nullable": false, "has_default": false, "writable": true},
                {"name": "meta", "type": "json", "nullable": true, "has_default": false, "writable": true},
                {"name": "version", "type": "bigint", "nullable": false, "has_default": true, "writable": false}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(projects().relation(), "\"app\".\"pro\"\"jects\"");
    }

    #[test]
    fn values_are_parameters_never_text() {
        let r = projects();
        let q = parse_list(
            "name=eq.x'; DROP TABLE t; --&id=in.(1,2)&order=name.desc&limit=5",
            100,
            1000,
        )
        .unwrap();
        let (st, order) = r.list(&q).unwrap();
        assert!(!st.sql.contains("DROP"), "{}", st.sql);
        assert!(
            st.sql.contains("t.\"name\" = CAST($1 AS text)"),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains("t.\"id\" = ANY (CAST($2 AS bigint[]))"),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .ends_with("ORDER BY t.\"name\" DESC, t.\"id\" ASC LIMIT 6"),
            "{}",
            st.sql
        );
        assert_eq!(order.len(), 2);
        assert_eq!(
            st.params[0],
            Param::Text(Some("x'; DROP TABLE t; --".into()))
        );
    }

    #[test]
    fn unknown_columns_and_uncomparable_types_are_refused() {
        let r = projects();
        for q in [
            "nope=eq.1",
            "select=id,nope",
            "order=nope",
            "meta=eq.{}",
            "order=meta",
            "name=is.true",
        ] {
            let parsed = parse_list(q, 100, 1000).unwrap();
            let e = r.list(&parsed).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{q}");
        }
    }

    #[test]
    fn the_keyset_condition_handles_directions_and_nulls() {
        let r = projects();
        let order = vec![
            ("name".to_string(), Direction::Desc),
            ("id".to_string(), Direction::Asc),
        ];
        let mut st = Statement::default();
        let c = r
            .keyset(
                &mut st,
                &order,
                &Cursor {
                    values: vec![None, Some("7".into())],
                },
            )
            .unwrap();
        assert_eq!(
            c,
            "((t.\"name\" IS NOT NULL) OR (t.\"name\" IS NULL AND (t.\"id\" > CAST($1 AS bigint) OR t.\"id\" IS NULL)))"
        );
        assert!(r
            .keyset(&mut st, &order, &Cursor { values: vec![None] })
            .is_err());
    }

    #[test]
    fn writes_name_only_writable_columns() {
        let r = projects();
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        let st = r
            .insert(&body(serde_json::json!({"name": "x"})), "{}".into())
            .unwrap();
        assert!(
            st.sql.starts_with(
                "INSERT INTO \"app\".\"pro\"\"jects\" AS t (\"name\") SELECT r.\"name\""
            ),
            "{}",
            st.sql
        );
        for bad in [
            serde_json::json!({"id": 1}),
            serde_json::json!({"version": 3}),
            serde_json::json!({"tenant_id": "x"}),
        ] {
            assert_eq!(
                r.insert(&body(bad), "{}".into())
                    .unwrap_err()
                    .status
                    .as_u16(),
                400
            );
        }
        let st = r
            .update(
                &["5".into()],
                Some("3"),
                &body(serde_json::json!({"name": "y"})),
                "{}".into(),
            )
            .unwrap();
        assert!(
            st.sql
                .contains("SET (\"name\", \"version\") = (SELECT r.\"name\", CAST($3 AS bigint)"),
            "{}",
            st.sql
        );
        assert_eq!(
            r.update(
                &["5".into()],
                Some("3"),
                &body(serde_json::json!({})),
                "{}".into()
            )
            .unwrap_err()
            .status
            .as_u16(),
            400
        );
        assert_eq!(
            r.get(&["1".into(), "2".into()], &None)
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
    }
}
