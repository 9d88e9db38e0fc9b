//! Checks the JSON-RPC envelope of each message POSTed to `/mcp` before the MCP transport reads
//! it, so that a malformed message gets a JSON-RPC error a person can act on.
//!
//! Left to itself, rmcp answers a body that is not JSON, a batch, or a message whose `jsonrpc`
//! is not `"2.0"` with `415 Unsupported Media Type` and a plain-text serde message, and a known
//! method whose `params` do not fit (say `tools/call` without `name`) with `-32601` "method not
//! found" carrying only the method's name: its message type falls back to a custom request when
//! the typed one does not parse. Here:
//! - not JSON: 400, `-32700` parse error with the parser's position, `id: null`;
//! - a batch, a non-object, `jsonrpc` other than `"2.0"`, an `id` that is not a string or a
//!   number, no `method` and no `result`/`error`: 400, `-32600` invalid request, saying which
//!   (with the message's `id` when it has a usable one);
//! - a request for a method MCP defines whose `params` do not deserialize into that method's
//!   parameters: 200, `-32602` invalid params with the deserializer's words, the request's `id`.
//!
//! Everything else goes to the transport untouched (the same bytes). The check parses the
//! envelope with borrowed raw values (the parameters are only parsed again for a method MCP
//! defines), so a well-formed message costs one extra pass over its bytes.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::Request,
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::model::{
    CallToolRequestParams, CompleteRequestParams, GetPromptRequestParams, InitializeRequestParams,
    PaginatedRequestParams, ReadResourceRequestParams, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, value::RawValue};

/// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// The members of a JSON-RPC message the check looks at, unparsed.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    /// `Some("null")` for `"id": null` (a plain `Option` would take that for no id at all).
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Whether `request` is a `POST` of `application/json` (what carries a JSON-RPC message to
/// `/mcp`); middleware that reads the message's text looks at these only.
pub fn is_json_post(request: &Request) -> bool {
    request.method() == Method::POST
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
            })
}

/// Why a message is refused: its JSON-RPC code, words and the id to answer with.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: i64,
    message: String,
    id: Value,
}

impl Refusal {
    fn invalid(message: impl Into<String>, id: Value) -> Self {
        Refusal {
            code: INVALID_REQUEST,
            message: format!("invalid request: {}", message.into()),
            id,
        }
    }

    fn into_response(self) -> Response {
        // A request with a usable id gets its JSON-RPC error as a normal answer; a message that
        // is not one gets 400, as streamable HTTP asks of a body the server cannot accept.
        let status = if self.code == INVALID_PARAMS {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        });
        (status, Json(body)).into_response()
    }
}

/// The middleware: a JSON POST's body is read (already bounded in size and depth by the serving
/// layer), checked, and passed on as the same bytes.
pub(crate) async fn check_envelope(request: Request, next: Next) -> Response {
    if !is_json_post(&request) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        // Over the size or depth limit, or the client went away: the serving layer's guard
        // answers for the limits; this answer stands only for a broken body.
        Err(_) => {
            return crate::http::error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
            .into_response();
        }
    };
    let operation = match check(&bytes) {
        Ok(operation) => operation,
        Err(refusal) => {
            tracing::debug!(
                code = refusal.code,
                message = %refusal.message,
                "MCP message refused before the transport"
            );
            return refusal.into_response();
        }
    };
    match operation {
        Some(operation) => super::observe::operation(operation, parts, bytes, next).await,
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// A request the envelope check let through, as its span and metric name it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Operation {
    pub method: String,
    /// The JSON-RPC id as written (`7`, `"a"`).
    pub id: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
}

/// The `name` of a `tools/call`'s params, borrowed.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// Whether `bytes` is one well-formed JSON-RPC message; if not, why. A request (a message
/// with an id and a method) is described for its span.
fn check(bytes: &Bytes) -> Result<Option<Operation>, Refusal> {
    // One pass for a well-formed message; the body is looked at again only to say why not.
    // Only an object: serde would also read a struct from an array of its members in order.
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let envelope: Envelope = match is_object.then(|| serde_json::from_slice(bytes)) {
        Some(Ok(envelope)) => envelope,
        Some(Err(error)) => return Err(unfit(bytes, Some(error))),
        None => return Err(unfit(bytes, None)),
    };
    let id = match envelope.id {
        None => None,
        Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(id @ (Value::String(_) | Value::Number(_))) => Some(id),
            _ => {
                return Err(Refusal::invalid(
                    "\"id\" must be a string or a number",
                    Value::Null,
                ));
            }
        },
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    if envelope.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(Refusal::invalid("\"jsonrpc\" must be \"2.0\"", answer_id));
    }
    let Some(method) = envelope.method else {
        if envelope.result.is_some() || envelope.error.is_some() {
            // A response to a request of the server's (elicitation, sampling, roots).
            return Ok(None);
        }
        return Err(Refusal::invalid(
            "the message has no \"method\" (nor \"result\" or \"error\")",
            answer_id,
        ));
    };
    let Ok(method) = serde_json::from_str::<std::borrow::Cow<str>>(method.get()) else {
        return Err(Refusal::invalid("\"method\" must be a string", answer_id));
    };
    let Some(id) = id else {
        // A notification gets no answer, so there is nobody to tell about its params.
        return Ok(None);
    };
    match check_params(&method, envelope.params) {
        Some(Err(error)) => Err(Refusal {
            code: INVALID_PARAMS,
            message: format!("invalid params for {method}: {error}"),
            id,
        }),
        Some(Ok(())) | None => {
            let tool = (method == "tools/call")
                .then_some(envelope.params)
                .flatten()
                .and_then(|params| serde_json::from_str::<Named>(params.get()).ok())
                .map(|named| named.name.into_owned());
            Ok(Some(Operation {
                method: method.into_owned(),
                id: id.to_string(),
                tool,
            }))
        }
    }
}

/// Why `bytes` is not a JSON-RPC envelope (`error`: what parsing an object as one said).
fn unfit(bytes: &[u8], error: Option<serde_json::Error>) -> Refusal {
    let value: &RawValue = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            return Refusal {
                code: PARSE_ERROR,
                message: format!("parse error: the body is not valid JSON ({error})"),
                id: Value::Null,
            };
        }
    };
    match value.get().as_bytes().first() {
        // A valid object that is no envelope: a member given twice.
        Some(b'{') => Refusal::invalid(
            error.map_or_else(|| "not a JSON-RPC message".to_owned(), |e| e.to_string()),
            Value::Null,
        ),
        Some(b'[') => Refusal::invalid(
            "a batch (JSON array) is not accepted: send one JSON-RPC message per request",
            Value::Null,
        ),
        _ => Refusal::invalid(
            "the body must be a JSON-RPC message, a JSON object",
            Value::Null,
        ),
    }
}

/// The parameters of a request for a method MCP defines, parsed as that method's; `None` for a
/// method this does not know (the transport answers those).
fn check_params(method: &str, params: Option<&RawValue>) -> Option<Result<(), serde_json::Error>> {
    fn required<P: DeserializeOwned>(params: Option<&RawValue>) -> Result<(), serde_json::Error> {
        // Absent params are an object without members, as far as what is missing goes.
        serde_json::from_str::<P>(params.map_or("{}", RawValue::get)).map(drop)
    }
    fn optional<P: DeserializeOwned>(params: Option<&RawValue>) -> Result<(), serde_json::Error> {
        match params {
            None => Ok(()),
            Some(raw) if raw.get() == "null" => Ok(()),
            Some(raw) => serde_json::from_str::<P>(raw.get()).map(drop),
        }
    }
    Some(match method {
        "initialize" => required::<InitializeRequestParams>(params),
        "tools/call" => required::<CallToolRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            optional::<PaginatedRequestParams>(params)
        }
        "prompts/get" => required::<GetPromptRequestParams>(params),
        "resources/read" => required::<ReadResourceRequestParams>(params),
        "resources/subscribe" => required::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => required::<UnsubscribeRequestParams>(params),
        "completion/complete" => required::<CompleteRequestParams>(params),
        #[allow(deprecated)] // Still part of the protocol versions clients speak today.
        "logging/setLevel" => required::<rmcp::model::SetLevelRequestParams>(params),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_described_by_method_id_and_tool_and_nothing_else() {
        let described = |body: &str| check(&Bytes::copy_from_slice(body.as_bytes())).expect(body);
        assert_eq!(
            described(
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_customer_detail","arguments":{"customer_id":251}}}"#
            ),
            Some(Operation {
                method: "tools/call".into(),
                id: "7".into(),
                tool: Some("get_customer_detail".into()),
            })
        );
        assert_eq!(
            described(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#),
            Some(Operation {
                method: "tools/list".into(),
                id: "\"a\"".into(),
                tool: None,
            })
        );
        // Notifications and responses get no span of their own.
        assert_eq!(
            described(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
        assert_eq!(described(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None);
    }

    fn refused(body: &str) -> Refusal {
        check(&Bytes::copy_from_slice(body.as_bytes())).expect_err(body)
    }

    fn accepted(body: &str) {
        if let Err(refusal) = check(&Bytes::copy_from_slice(body.as_bytes())) {
            panic!("{body} refused: {refusal:?}");
        }
    }

    #[test]
    fn well_formed_messages_pass() {
        accepted(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        accepted(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"cursor":"x"}}"#);
        accepted(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"a":[1,{"b":2}]}}}"#,
        );
        accepted(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        accepted(r#"{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}"#);
        accepted(r#"{"jsonrpc":"2.0","id":4,"method":"vendor/custom","params":[1]}"#);
        accepted(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
        // A notification's params are not checked: nobody would hear about them.
        accepted(r#"{"jsonrpc":"2.0","method":"tools/call","params":{}}"#);
    }

    #[test]
    fn a_body_that_is_not_json_is_a_parse_error_with_its_position() {
        let refusal = refused(r#"{"jsonrpc":"2.0","id":7,"method":"#);
        assert_eq!(refusal.code, PARSE_ERROR);
        assert_eq!(refusal.id, Value::Null);
        assert!(
            refusal.message.contains("line 1 column"),
            "{}",
            refusal.message
        );
        assert_eq!(refused("").code, PARSE_ERROR);
    }

    #[test]
    fn batches_and_other_values_are_invalid_requests() {
        let batch = refused(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#);
        assert_eq!(batch.code, INVALID_REQUEST);
        assert!(batch.message.contains("batch"), "{}", batch.message);
        let members_in_order = refused(r#"["2.0",1,"ping",null,null,null]"#);
        assert!(
            members_in_order.message.contains("batch"),
            "{}",
            members_in_order.message
        );
        for body in ["1", "\"text\"", "null", "true"] {
            assert_eq!(refused(body).code, INVALID_REQUEST, "{body}");
        }
    }

    #[test]
    fn envelope_faults_are_named_and_answered_with_the_id_when_usable() {
        let version = refused(r#"{"jsonrpc":"1.0","id":11,"method":"tools/list"}"#);
        assert_eq!(
            (version.code, version.id.clone()),
            (INVALID_REQUEST, Value::from(11))
        );
        assert!(version.message.contains("\"jsonrpc\" must be \"2.0\""));
        assert_eq!(
            refused(r#"{"id":11,"method":"tools/list"}"#).code,
            INVALID_REQUEST
        );
        let id = refused(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}"#);
        assert_eq!((id.code, id.id), (INVALID_REQUEST, Value::Null));
        assert!(
            refused(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#)
                .message
                .contains("\"id\"")
        );
        let method = refused(r#"{"jsonrpc":"2.0","id":"m","method":42}"#);
        assert_eq!(method.id, Value::from("m"));
        assert!(method.message.contains("\"method\" must be a string"));
        assert!(
            refused(r#"{"jsonrpc":"2.0","id":1}"#)
                .message
                .contains("no \"method\"")
        );
        assert!(
            refused(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#)
                .message
                .contains("duplicate")
        );
    }

    #[test]
    fn params_that_do_not_fit_a_known_method_are_invalid_params_with_the_reason() {
        let missing =
            refused(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"nam":"x"}}"#);
        assert_eq!(
            (missing.code, missing.id.clone()),
            (INVALID_PARAMS, Value::from(10))
        );
        assert!(
            missing.message.contains("tools/call") && missing.message.contains("name"),
            "{}",
            missing.message
        );
        let no_params = refused(r#"{"jsonrpc":"2.0","id":"n","method":"tools/call"}"#);
        assert_eq!(no_params.code, INVALID_PARAMS);
        let wrong_type = refused(
            r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#,
        );
        assert_eq!(wrong_type.code, INVALID_PARAMS);
        let cursor =
            refused(r#"{"jsonrpc":"2.0","id":13,"method":"tools/list","params":{"cursor":5}}"#);
        assert_eq!(cursor.code, INVALID_PARAMS);
        assert_eq!(
            refused(r#"{"jsonrpc":"2.0","id":14,"method":"initialize","params":{}}"#).code,
            INVALID_PARAMS
        );
    }
}
