//! What of a call's arguments the audit trail keeps: ids, amounts, statuses, dates and paging;
//! free text reduced to its length, secrets redacted, the whole capped.

use serde_json::{Map, Value};

/// The most a call's arguments take in an event, encoded.
pub const MAX_ARGUMENTS_BYTES: usize = 2048;
/// Nesting kept; deeper values become `"<nested>"`.
const MAX_DEPTH: usize = 4;
/// Fields kept per object and items per array.
const MAX_FIELDS: usize = 32;
const MAX_ITEMS: usize = 16;
/// Longer keys are cut (a key is the caller's text too).
const MAX_KEY_CHARS: usize = 64;
/// Longer values of id-like fields are reduced to their length as well: no id is this long.
const MAX_KEPT_TEXT_CHARS: usize = 128;
/// Room kept for the marker that says fields were left out.
const MARKER_BYTES: usize = 40;

/// Parts of a key that mark a secret, whatever the value.
const SECRET_KEY_PARTS: [&str; 8] = [
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "authorization",
    "credential",
    "cookie",
];

/// Key names whose text values are kept as they are (enumerations, paging).
const KEPT_TEXT_KEYS: [&str; 13] = [
    "status", "plan", "limit", "cursor", "category", "priority", "method", "currency", "topk",
    "offset", "page", "since", "until",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Ids, amounts, statuses, dates and paging: text an investigation needs and that says nothing
/// in a person's own words.
fn keeps_text(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "id"
        || lower.ends_with("_id")
        || lower.ends_with("_ids")
        || key.ends_with("Id")
        || lower.contains("amount")
        || lower.contains("date")
        || lower.ends_with("_at")
        || lower.ends_with("_on")
        || KEPT_TEXT_KEYS.contains(&lower.as_str())
}

fn chars(text: &str) -> Value {
    Value::String(format!("<{} chars>", text.chars().count()))
}

fn short_key(key: &str) -> String {
    cut(key, MAX_KEY_CHARS)
}

/// `text`, cut to `max` characters (marked with `…`): for what a caller names freely.
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max).collect();
        format!("{kept}…")
    }
}

/// The arguments of a call as the audit trail keeps them: numbers, booleans and nulls as they
/// are; text only under id-, amount-, status-, date- or paging-like keys (`customer_id`,
/// `amount`, `status`, `start_date`, `cursor`, ...), else `"<N chars>"` (a question, a ticket's
/// description, a search query); any value under a secret-looking key (`token`, `secret`,
/// `password`, `key`, ...) `"<redacted>"`. Objects and arrays are redacted the same way, up to a
/// depth, and the result is at most [`MAX_ARGUMENTS_BYTES`] encoded: fields that do not fit are
/// left out and counted under `"…"`.
pub fn redact_arguments(arguments: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    let mut used = 2; // the braces
    let mut left_out = 0usize;
    for (index, (key, value)) in arguments.iter().enumerate() {
        if index >= MAX_FIELDS {
            left_out = arguments.len() - index;
            break;
        }
        let key = short_key(key);
        let mut value = redact_value(&key, value, 1);
        let mut size = encoded_len(&key, &value);
        if used + size + MARKER_BYTES > MAX_ARGUMENTS_BYTES && !is_scalar(&value) {
            // A large nested value: say how large rather than lose the field.
            value = Value::String(format!("<{} bytes>", size));
            size = encoded_len(&key, &value);
        }
        if used + size + MARKER_BYTES > MAX_ARGUMENTS_BYTES {
            left_out += 1;
            continue;
        }
        used += size;
        out.insert(key, value);
    }
    if left_out > 0 {
        out.insert(
            "…".to_owned(),
            Value::String(format!("<{left_out} more fields>")),
        );
    }
    Value::Object(out)
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// Bytes `"key":value,` takes in the encoded object.
fn encoded_len(key: &str, value: &Value) -> usize {
    Value::String(key.to_owned()).to_string().len() + value.to_string().len() + 2
}

fn redact_value(key: &str, value: &Value, depth: usize) -> Value {
    if is_secret_key(key) {
        return Value::String("<redacted>".to_owned());
    }
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        Value::String(text) => {
            if keeps_text(key) && text.chars().count() <= MAX_KEPT_TEXT_CHARS {
                value.clone()
            } else {
                chars(text)
            }
        }
        _ if depth >= MAX_DEPTH => Value::String("<nested>".to_owned()),
        Value::Array(items) => {
            // Items stand for the key they are listed under (`invoice_ids: [..]`).
            let mut kept: Vec<Value> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|item| redact_value(key, item, depth + 1))
                .collect();
            if items.len() > MAX_ITEMS {
                kept.push(Value::String(format!(
                    "<{} more items>",
                    items.len() - MAX_ITEMS
                )));
            }
            Value::Array(kept)
        }
        Value::Object(fields) => {
            let mut kept: Map<String, Value> = fields
                .iter()
                .take(MAX_FIELDS)
                .map(|(k, v)| {
                    let k = short_key(k);
                    let v = redact_value(&k, v, depth + 1);
                    (k, v)
                })
                .collect();
            if fields.len() > MAX_FIELDS {
                kept.insert(
                    "…".to_owned(),
                    Value::String(format!("<{} more fields>", fields.len() - MAX_FIELDS)),
                );
            }
            Value::Object(kept)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::testing::object;

    #[test]
    fn ids_amounts_and_enumerations_are_kept() {
        let args = object(json!({
            "customer_id": 251, "invoice_id": "INV-7", "amount": 12.5, "method": "card",
            "status": "suspended", "start_date": "2026-01-01", "limit": 10, "cursor": "c42",
            "aggregate": true, "open_only": false, "conversationId": "abc", "topk": 3,
            "subscription_id": null
        }));
        assert_eq!(redact_arguments(&args), Value::Object(args));
    }

    #[test]
    fn free_text_is_reduced_to_its_length() {
        let args = object(json!({
            "question": "Why is my bill so high? I am customer 251.",
            "description": "Too high", "subject": "Bill", "query": "roaming", "device": "Pixel 9",
            "customer_id": 251
        }));
        assert_eq!(
            redact_arguments(&args),
            json!({
                "question": "<42 chars>", "description": "<8 chars>", "subject": "<4 chars>",
                "query": "<7 chars>", "device": "<7 chars>", "customer_id": 251
            })
        );
    }

    #[test]
    fn secrets_are_redacted_whatever_their_type() {
        let args = object(json!({
            "access_token": "eyJhbGciOi...", "api_key": 1234, "Password": {"x": 1},
            "client_secret": ["a"], "authorization": "Bearer x", "customer_id": 251
        }));
        assert_eq!(
            redact_arguments(&args),
            json!({
                "access_token": "<redacted>", "api_key": "<redacted>", "Password": "<redacted>",
                "client_secret": "<redacted>", "authorization": "<redacted>", "customer_id": 251
            })
        );
    }

    #[test]
    fn nested_objects_and_arrays_are_redacted_alike() {
        let args = object(json!({
            "subscription_id": 7,
            "updates": {"status": "active", "roaming_enabled": true, "note": "call me", "token": "t"},
            "invoice_ids": ["a1", "a2"],
            "notes": ["first note", {"deep": {"deeper": {"deepest": 1}}}]
        }));
        assert_eq!(
            redact_arguments(&args),
            json!({
                "subscription_id": 7,
                "updates": {"status": "active", "roaming_enabled": true, "note": "<7 chars>", "token": "<redacted>"},
                "invoice_ids": ["a1", "a2"],
                "notes": ["<10 chars>", {"deep": {"deeper": "<nested>"}}]
            })
        );
    }

    #[test]
    fn a_long_value_under_an_id_key_is_not_kept() {
        let long = "x".repeat(MAX_KEPT_TEXT_CHARS + 1);
        let args = object(json!({"customer_id": long}));
        assert_eq!(
            redact_arguments(&args),
            json!({"customer_id": format!("<{} chars>", MAX_KEPT_TEXT_CHARS + 1)})
        );
    }

    #[test]
    fn a_hostile_payload_stays_within_the_cap() {
        // Many fields with long keys and id-like values, a huge array, a huge key.
        let mut args = Map::new();
        for i in 0..500 {
            args.insert(
                format!("{}_{i}_id", "k".repeat(100)),
                Value::String("v".repeat(100)),
            );
        }
        args.insert("a_customer_id".into(), json!(251));
        args.insert("items".into(), Value::Array(vec![json!(1); 100_000]));
        let redacted = redact_arguments(&args);
        let encoded = redacted.to_string();
        assert!(
            encoded.len() <= MAX_ARGUMENTS_BYTES,
            "{} bytes",
            encoded.len()
        );
        // The first (sorted) fields survive; what did not fit is counted.
        assert_eq!(redacted["a_customer_id"], 251);
        assert!(
            redacted["…"]
                .as_str()
                .is_some_and(|s| s.contains("more fields"))
        );
        let big_array = object(json!({"ids": vec![1; 100_000]}));
        let redacted = redact_arguments(&big_array);
        assert_eq!(
            redacted["ids"].as_array().map(Vec::len),
            Some(MAX_ITEMS + 1)
        );
        assert!(redacted.to_string().len() <= MAX_ARGUMENTS_BYTES);
        let wide = object(json!({"x": {"a": "b".repeat(3000)}}));
        assert!(redact_arguments(&wide).to_string().len() <= MAX_ARGUMENTS_BYTES);
    }
}
