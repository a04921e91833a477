//! The HTTP surface, the same under Lambda, the embedded server and tests.
//!
//! - [`routes`] — the route table: path + method → endpoint → function name → handler. Start here to
//!   find any route's code.
//! - [`zenml`] — the ZenML dialect's handlers (`/api/v1/...`); [`mage`] — the Mage dialect's (`/api/...`).
//! - [`auth`], [`errors`] — API keys and the two dialects' error bodies, each decided once.
//! - [`lambda`], [`local`] — adapters from API Gateway events and from a hyper server.

pub mod auth;
pub mod callback;
pub mod errors;
pub mod lambda;
pub mod local;
pub mod mage;
pub mod openapi;
pub mod redact;
pub mod routes;
pub mod wait;
pub mod zenml;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Request bodies over this are answered 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A request as every handler sees it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Path parameters of the matched route (`{id}` → value).
    pub params: Vec<(String, String)>,
}

/// A response as every handler makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn json(status: StatusCode, value: &Value) -> Self {
        ApiResponse {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(value.to_string()),
        }
    }

    pub fn ok(value: &Value) -> Self {
        Self::json(StatusCode::OK, value)
    }
}

impl ApiRequest {
    pub fn new(method: Method, path_and_query: &str, headers: HeaderMap, body: Bytes) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (path_and_query, Vec::new()),
        };
        ApiRequest { method, path: path.to_string(), query, headers, body, params: Vec::new() }
    }

    /// A path parameter of the matched route ("" if the route has none of that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The last value of a query parameter.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a JSON object: 400 (with the parse error's position) if it is not JSON or not an
    /// object. An empty body is an empty object.
    pub fn json_object(&self) -> Result<Map<String, Value>> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(Error::BadRequest(format!(
                "the body must be a JSON object, got {}",
                json_type_name(&other)
            ))),
            Err(e) => Err(Error::BadRequest(format!("the body is not valid JSON: {e}"))),
        }
    }

    /// The body as `T`: 400 if it is not a JSON object, 422 naming the field for an unknown field or a
    /// wrong type.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        from_object(self.json_object()?)
    }
}

/// Turns a JSON object into `T`, 422 naming the offending field.
pub fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T> {
    from_object_at("", object)
}

/// [`from_object`] for an object found at `prefix` (`"settings."`), which the field names start with.
pub fn from_object_at<T: DeserializeOwned>(prefix: &str, object: Map<String, Value>) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            let at = prefix.strip_suffix('.').map_or(String::new(), |p| format!("{p}: "));
            Error::Unprocessable(format!("{at}{}", e.inner()))
        } else {
            Error::Unprocessable(format!("{prefix}{path}: {}", e.inner()))
        }
    })
}

pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits and percent-decodes a query string (`+` is a space, as in forms).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split_and_decoded() {
        let q = parse_query("name=training&version=45&x=a%20b+c&sort_by=desc%3Acreated&bad=%zz&end=%");
        assert_eq!(q[0], ("name".into(), "training".into()));
        assert_eq!(q[2], ("x".into(), "a b c".into()));
        assert_eq!(q[3], ("sort_by".into(), "desc:created".into()));
        assert_eq!(q[4], ("bad".into(), "%zz".into()));
        assert_eq!(q[5], ("end".into(), "%".into()));
    }

    #[test]
    fn bodies_that_are_not_objects_are_400_and_wrong_fields_422() {
        let req = |b: &str| ApiRequest::new(Method::POST, "/x", HeaderMap::new(), Bytes::from(b.to_string()));
        assert!(
            matches!(req("{\"a\":").json_object(), Err(Error::BadRequest(m)) if m.contains("line 1 column"))
        );
        assert!(matches!(req("[1]").json_object(), Err(Error::BadRequest(_))));
        assert_eq!(req("  ").json_object(), Ok(Map::new()));
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let e = req("{\"n\":\"x\"}").json::<T>().unwrap_err().to_string();
        assert!(e.starts_with("n:"), "{e}");
        let e = req("{\"n\":1,\"zz\":2}").json::<T>().unwrap_err().to_string();
        assert!(e.contains("zz"), "{e}");
    }
}
