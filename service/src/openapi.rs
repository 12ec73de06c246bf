//! `/openapi.json`: an OpenAPI 3.1 document built from the resources the default database
//! exposes, made again whenever they change.

use serde_json::{json, Map, Value};

use crate::resources::{Column, JsonKind, Resource};

/// A column's JSON Schema, from its SQL type (JsonKind decides what a body may send).
fn column_schema(c: &Column) -> Value {
    let scalar = |t: &str| -> Value {
        let mut s = match JsonKind::of(t, false) {
            JsonKind::Any => json!({}),
            JsonKind::Boolean => json!({"type": "boolean"}),
            JsonKind::Integer => json!({"type": "integer"}),
            JsonKind::Number => json!({"type": "number"}),
            JsonKind::Array => json!({"type": "array"}),
            JsonKind::String => json!({"type": "string"}),
        };
        let extra = match t {
            "smallint" => json!({"minimum": -32768, "maximum": 32767}),
            "integer" => json!({"format": "int32", "minimum": i32::MIN, "maximum": i32::MAX}),
            "bigint" => json!({"format": "int64", "minimum": i64::MIN, "maximum": i64::MAX}),
            "uuid" => json!({"format": "uuid"}),
            "timestamp with time zone" | "timestamp without time zone" => {
                json!({"format": "date-time"})
            }
            "date" => json!({"format": "date"}),
            _ => json!({}),
        };
        if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
            m.extend(e);
        }
        s
    };
    let mut s = if c.array {
        json!({"type": "array", "items": scalar(c.element.as_deref().unwrap_or("text"))})
    } else {
        scalar(&c.sql_type)
    };
    if c.nullable {
        if let Some(t) = s.get("type").cloned() {
            s["type"] = json!([t, "null"]);
        }
    }
    if let Value::Object(m) = &mut s {
        m.insert(
            "description".into(),
            json!(format!("{} ({})", c.name, c.sql_type)),
        );
    }
    s
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn errors(codes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        let d = match *c {
            "400" => "Bad request (ST400, or a value of the wrong type)",
            "401" => "No valid token (ST401, ST001)",
            "403" => "Tenant not permitted (ST002) or forbidden operation (ST403)",
            "404" => "No such resource or row in your tenant",
            "405" => "The resource is read-only",
            "409" => "Conflict with another row",
            "412" => "If-Match is stale",
            "413" => "Body too large",
            "415" => "Body is not JSON",
            "422" => "Event payload violates its schema (ST422)",
            "428" => "If-Match required (ST428)",
            "503" => "Busy or unavailable: retry after Retry-After",
            "504" => "The request took too long",
            _ => "Error",
        };
        m.insert(c.to_string(), problem(d));
    }
    m
}

fn key_path(r: &Resource) -> String {
    format!("/v1/{}/{{key}}", r.resource)
}

/// The document, from the resources in name order.
pub fn document(resources: &[&Resource], version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".into(),
        json!({"type": "object", "required": ["type", "title", "status", "sqlstate"],
               "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                              "status": {"type": "integer"}, "detail": {"type": "string"},
                              "sqlstate": {"type": "string"}, "hint": {"type": "string"}}}),
    );
    let common = [
        "400", "401", "403", "404", "409", "412", "413", "415", "422", "428", "503", "504",
    ];
    for r in resources {
        let name = &r.resource;
        let row_schema = format!("#/components/schemas/{name}");
        let mut props = Map::new();
        for c in &r.columns {
            props.insert(c.name.clone(), column_schema(c));
        }
        schemas.insert(
            name.clone(),
            json!({"type": "object", "properties": props.clone()}),
        );
        let mut input = Map::new();
        let mut required = Vec::new();
        for c in r.columns.iter().filter(|c| c.writable) {
            input.insert(c.name.clone(), column_schema(c));
            if !c.nullable && !c.has_default {
                required.push(c.name.clone());
            }
        }
        schemas.insert(
            format!("{name}-input"),
            json!({"type": "object", "properties": input.clone(), "additionalProperties": false, "required": required}),
        );
        schemas.insert(
            format!("{name}-patch"),
            json!({"type": "object", "properties": input, "additionalProperties": false, "minProperties": 1}),
        );
        let mut list_params = vec![
            json!({"name": "select", "in": "query", "schema": {"type": "string"}, "description": "Columns to return, comma-separated."}),
            json!({"name": "order", "in": "query", "schema": {"type": "string"}, "description": "column.asc or column.desc, comma-separated."}),
            json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}),
            json!({"name": "after", "in": "query", "schema": {"type": "string"}, "description": "The cursor of the Link header's next page."}),
        ];
        for c in &r.columns {
            list_params.push(json!({"name": c.name, "in": "query", "schema": {"type": "string"},
                "description": "Filter: eq.v, neq.v, lt.v, lte.v, gt.v, gte.v, in.(a,b), is.null, is.true, is.false"}));
        }
        let mut list_responses = errors(&common);
        list_responses.insert("200".into(), json!({
            "description": "A page of rows; Link names the next page",
            "headers": {"Link": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": row_schema}}}}}));
        let mut collection = Map::new();
        collection.insert(
            "get".into(),
            json!({"operationId": format!("list-{name}"), "parameters": list_params, "responses": list_responses}),
        );
        if !r.is_view() {
            let mut post_responses = errors(&common);
            post_responses.insert("201".into(), json!({
                "description": "Created", "headers": {"Location": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": row_schema}}}}));
            collection.insert("post".into(), json!({
                "operationId": format!("create-{name}"),
                "parameters": [{"name": "X-Steward-Reason", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}-input")}}}},
                "responses": post_responses}));
        }
        paths.insert(format!("/v1/{name}"), Value::Object(collection));
        if r.key.is_empty() {
            continue;
        }
        let key_param = json!({"name": "key", "in": "path", "required": true, "schema": {"type": "string"},
            "description": format!("{} (percent-encoded, comma-separated)", r.key.join(", "))});
        let mut item = Map::new();
        let mut get_responses = errors(&common);
        get_responses.insert(
            "200".into(),
            json!({"description": "The row", "headers": {"ETag": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": row_schema}}}}),
        );
        get_responses.insert("304".into(), json!({"description": "Not modified"}));
        item.insert("get".into(), json!({"operationId": format!("get-{name}"),
            "parameters": [key_param, {"name": "select", "in": "query", "schema": {"type": "string"}},
                           {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
            "responses": get_responses}));
        let if_match = json!({"name": "If-Match", "in": "header", "required": true, "schema": {"type": "string"}});
        let reason =
            json!({"name": "X-Steward-Reason", "in": "header", "schema": {"type": "string"}});
        let mut patch_responses = errors(&common);
        patch_responses.insert(
            "200".into(),
            json!({"description": "Changed", "headers": {"ETag": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": row_schema}}}}),
        );
        item.insert("patch".into(), json!({"operationId": format!("update-{name}"),
            "parameters": [key_param, if_match, reason],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}-patch")}}}},
            "responses": patch_responses}));
        let mut delete_responses = errors(&common);
        delete_responses.insert("204".into(), json!({"description": "Deleted"}));
        item.insert(
            "delete".into(),
            json!({"operationId": format!("delete-{name}"),
            "parameters": [key_param, if_match, reason], "responses": delete_responses}),
        );
        paths.insert(key_path(r), Value::Object(item));
        let mut history_responses = errors(&common);
        history_responses.insert("200".into(), json!({"description": "The row's audit records, oldest first",
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}));
        paths.insert(format!("{}/history", key_path(r)), json!({"get": {
            "operationId": format!("history-{name}"), "parameters": [key_param], "responses": history_responses}}));
    }
    paths.insert("/healthz".into(), json!({"get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "The process is up"}}}}));
    paths.insert(
        "/readyz".into(),
        json!({"get": {"operationId": "readyz", "security": [], "responses": {
        "200": {"description": "The database answers with the expected extension version"},
        "503": problem("Not ready")}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "steward", "version": version,
                 "description": "Resources a DBA exposed with steward.expose(); every request runs in the tenant its bearer token names."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas
        }
    })
}
