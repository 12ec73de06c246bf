//! What a request's query string and path say, parsed before anything reaches the database:
//! filters, `select`, `order`, `limit`, the `after` cursor, and the key in the path.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The most values an `in.(...)` filter may list.
pub const MAX_IN_VALUES: usize = 1000;
/// The most filters one request may carry.
pub const MAX_FILTERS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    pub fn sql(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }
}

/// A filter's operator and value(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// SQL operator, the name used in the URL, the value.
    Cmp(&'static str, &'static str, String),
    In(Vec<String>),
    IsNull,
    IsBool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub column: String,
    pub op: Op,
}

/// Where the previous page ended: the values of its last row's ordering terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub values: Vec<Option<String>>,
}

#[derive(Serialize, Deserialize)]
struct CursorJson {
    /// The order it was made for, as the request wrote it.
    o: String,
    v: Vec<Option<String>>,
}

impl Cursor {
    /// The opaque text a `Link` header carries.
    pub fn encode(order: &str, values: Vec<Option<String>>) -> String {
        let json = serde_json::to_vec(&CursorJson {
            o: order.to_string(),
            v: values,
        })
        .unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str, order: &str) -> Result<Cursor, ApiError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ApiError::bad_cursor("it is not one this service made"))?;
        let c: CursorJson = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError::bad_cursor("it is not one this service made"))?;
        if c.o != order {
            return Err(ApiError::bad_cursor("it was made for another order"));
        }
        Ok(Cursor { values: c.v })
    }
}

/// GET /v1/{resource}'s query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    pub select: Option<Vec<String>>,
    pub order: Vec<(String, Direction)>,
    /// `order=` as written (empty when absent): cursors are bound to it.
    pub order_text: String,
    pub limit: u32,
    pub after: Option<Cursor>,
    /// The query's pairs but `after`, for the next page's link.
    pub pairs: Vec<(String, String)>,
}

fn once(seen: &mut Vec<&'static str>, name: &'static str) -> Result<(), ApiError> {
    if seen.contains(&name) {
        return Err(ApiError::bad_request(
            format!("query parameter \"{name}\" is given more than once"),
            format!("Give {name}= once."),
        ));
    }
    seen.push(name);
    Ok(())
}

pub fn names(list: &str, what: &str) -> Result<Vec<String>, ApiError> {
    let out: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
    if out.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(
            format!("{what}= has an empty column name"),
            format!("Separate column names with \",\", e.g. {what}=id,name."),
        ));
    }
    Ok(out)
}

/// Parses `in.` values: `(a,b,"c,d")` or `a,b`; a value in double quotes may hold commas and
/// `\"`.
fn in_values(text: &str) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            format!("in.{text} is not a list of values"),
            "Write in.(a,b,c); quote a value that holds a comma: in.(\"a,b\",c).",
        )
    };
    let inner = match text.strip_prefix('(') {
        Some(t) => t.strip_suffix(')').ok_or_else(bad)?,
        None => text,
    };
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad()),
                    Some('\\') => value.push(chars.next().ok_or_else(bad)?),
                    Some('"') => break,
                    Some(c) => value.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(value);
                    break;
                }
                Some(',') => out.push(value),
                Some(_) => return Err(bad()),
            }
        } else {
            let mut ended = true;
            for c in chars.by_ref() {
                if c == ',' {
                    ended = false;
                    break;
                }
                value.push(c);
            }
            out.push(value);
            if ended {
                break;
            }
        }
        if out.len() > MAX_IN_VALUES {
            break;
        }
    }
    if out.len() > MAX_IN_VALUES {
        return Err(ApiError::bad_request(
            format!("in. lists more than {MAX_IN_VALUES} values"),
            "Split the request.",
        ));
    }
    Ok(out)
}

fn filter(column: &str, value: &str) -> Result<Filter, ApiError> {
    let (op, rest) = value.split_once('.').ok_or_else(|| {
        ApiError::bad_request(
            format!("filter {column}={value} has no operator"),
            "Write column=operator.value, operators: eq, neq, lt, lte, gt, gte, in, is.",
        )
    })?;
    let op = match op {
        "eq" => Op::Cmp("=", "eq", rest.into()),
        "neq" => Op::Cmp("<>", "neq", rest.into()),
        "lt" => Op::Cmp("<", "lt", rest.into()),
        "lte" => Op::Cmp("<=", "lte", rest.into()),
        "gt" => Op::Cmp(">", "gt", rest.into()),
        "gte" => Op::Cmp(">=", "gte", rest.into()),
        "in" => Op::In(in_values(rest)?),
        "is" => match rest {
            "null" => Op::IsNull,
            "true" => Op::IsBool(true),
            "false" => Op::IsBool(false),
            _ => {
                return Err(ApiError::bad_request(
                    format!("filter {column}=is.{rest}: is. takes null, true or false"),
                    "Write is.null, is.true or is.false.",
                ))
            }
        },
        other => {
            return Err(ApiError::bad_request(
                format!("filter {column}={value}: unknown operator \"{other}\""),
                "Operators: eq, neq, lt, lte, gt, gte, in, is.",
            ))
        }
    };
    Ok(Filter {
        column: column.to_string(),
        op,
    })
}

/// Parses a list request's query string (still percent-encoded).
pub fn parse_list(query: &str, default_limit: u32, max_limit: u32) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        filters: Vec::new(),
        select: None,
        order: Vec::new(),
        order_text: String::new(),
        limit: default_limit,
        after: None,
        pairs: Vec::new(),
    };
    let mut seen = Vec::new();
    let mut after_text = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match k.as_str() {
            "select" => {
                once(&mut seen, "select")?;
                q.select = Some(names(&v, "select")?);
            }
            "order" => {
                once(&mut seen, "order")?;
                for term in names(&v, "order")? {
                    let (col, dir) = match term.rsplit_once('.') {
                        Some((c, "asc")) => (c, Direction::Asc),
                        Some((c, "desc")) => (c, Direction::Desc),
                        Some((_, d)) if !d.is_empty() && !term.contains('"') => {
                            return Err(ApiError::bad_request(
                                format!("order term \"{term}\": direction \"{d}\" is neither asc nor desc"),
                                "Write order=column.asc or order=column.desc.",
                            ))
                        }
                        _ => (term.as_str(), Direction::Asc),
                    };
                    q.order.push((col.to_string(), dir));
                }
                q.order_text = v.clone();
            }
            "limit" => {
                once(&mut seen, "limit")?;
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=max_limit).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            format!("limit={v} is not a whole number from 1 to {max_limit}"),
                            format!("Ask for at most {max_limit} rows a page, and follow the Link header for the next."),
                        )
                    })?;
            }
            "after" => {
                once(&mut seen, "after")?;
                after_text = Some(v);
                continue;
            }
            _ => {
                if q.filters.len() >= MAX_FILTERS {
                    return Err(ApiError::bad_request(
                        format!("more than {MAX_FILTERS} filters"),
                        "Combine filters with in.(...).",
                    ));
                }
                q.filters.push(filter(&k, &v)?);
            }
        }
        q.pairs.push((k, v));
    }
    if let Some(text) = after_text {
        q.after = Some(Cursor::decode(&text, &q.order_text)?);
    }
    Ok(q)
}

/// Splits a `{key}` path segment (still percent-encoded) into its parts: split on `,` first, then
/// each part percent-decoded, so that an encoded `%2C` stays inside its part.
pub fn parse_key(raw: &str) -> Result<Vec<String>, ApiError> {
    raw.split(',')
        .map(|part| {
            let decoded = percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map_err(|_| {
                    ApiError::bad_request(
                        format!("key part \"{part}\" is not UTF-8 once percent-decoded"),
                        "Percent-encode the key's parts as UTF-8.",
                    )
                })?;
            if decoded.is_empty() {
                return Err(ApiError::bad_request(
                    format!("key \"{raw}\" has an empty part"),
                    "A key names every part of the primary key, separated by \",\".",
                ));
            }
            if decoded.contains('\0') {
                return Err(ApiError::bad_request(
                    "a key part holds a NUL character",
                    "Remove it: no key can hold one.",
                ));
            }
            Ok(decoded.into_owned())
        })
        .collect()
}

/// Percent-encodes a key part for a URL (everything but unreserved characters).
pub fn encode_key_part(part: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(part, SET).to_string()
}

/// A query string from pairs.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_options() {
        let q = parse_list("name=eq.a%20b&id=in.(1,%222,3%22)&done=is.true&select=id,name&order=name.desc,id&limit=20", 100, 1000).unwrap();
        assert_eq!(
            q.filters[0],
            Filter {
                column: "name".into(),
                op: Op::Cmp("=", "eq", "a b".into())
            }
        );
        assert_eq!(q.filters[1].op, Op::In(vec!["1".into(), "2,3".into()]));
        assert_eq!(q.filters[2].op, Op::IsBool(true));
        assert_eq!(q.select, Some(vec!["id".into(), "name".into()]));
        assert_eq!(
            q.order,
            vec![
                ("name".into(), Direction::Desc),
                ("id".into(), Direction::Asc)
            ]
        );
        assert_eq!(q.limit, 20);
        // A value may hold dots: only the first one ends the operator.
        let q = parse_list("v=eq.1.5", 100, 1000).unwrap();
        assert_eq!(q.filters[0].op, Op::Cmp("=", "eq", "1.5".into()));
    }

    #[test]
    fn refusals_are_400() {
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=99999999999999999999",
            "limit=-1",
            "limit=x",
            "limit=1&limit=2",
            "select=a&select=b",
            "order=a.sideways",
            "select=a,,b",
            "name=like.x",
            "name=x",
            "done=is.maybe",
            "id=in.(\"1",
            "after=%%%",
            "after=bm90anNvbg",
        ] {
            let e = parse_list(bad, 100, 1000).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn cursors_are_bound_to_their_order() {
        let c = Cursor::encode("name.desc", vec![Some("x".into()), None]);
        let q = parse_list(&format!("order=name.desc&after={c}"), 100, 1000).unwrap();
        assert_eq!(q.after.unwrap().values, vec![Some("x".into()), None]);
        assert!(parse_list(&format!("order=name&after={c}"), 100, 1000).is_err());
        assert!(
            !parse_list(&format!("after={c}&order=name.desc"), 100, 1000)
                .unwrap()
                .pairs
                .iter()
                .any(|(k, _)| k == "after")
        );
    }

    #[test]
    fn keys_split_before_decoding() {
        assert_eq!(
            parse_key("a%2Cb,c").unwrap(),
            vec!["a,b".to_string(), "c".into()]
        );
        assert_eq!(
            parse_key("%2F..%2Fetc").unwrap(),
            vec!["/../etc".to_string()]
        );
        assert!(parse_key("a,,b").is_err());
        assert!(parse_key("%FF").is_err());
        assert!(parse_key("a%00").is_err());
        assert_eq!(encode_key_part("a,b/ c"), "a%2Cb%2F%20c");
    }
}
