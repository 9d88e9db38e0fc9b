//! Which of the tools service's tools change something, and how a change is put to the person
//! for confirmation: the exact action in words, one describer per known write tool and a generic
//! one naming the tool and its arguments for any other.
//!
//! A tool is a write unless the tools service marks it read-only (`readOnlyHint: true`): an
//! unknown or unannotated tool is treated as a write, the safe default.

use rmcp::model::Tool;
use serde_json::{Map, Value};

use crate::memory::pending::canonical;

/// Whether calling `tool` may change something, so it must wait for the person's confirmation.
pub fn is_write(tool: &Tool) -> bool {
    tool.annotations
        .as_ref()
        .and_then(|annotations| annotations.read_only_hint)
        != Some(true)
}

/// The longest subject quoted in the words of a ticket; the arguments carry it whole.
const MAX_QUOTED_CHARS: usize = 200;

/// The action of calling `tool` with `arguments`, in words the person can confirm.
pub fn describe(tool: &str, arguments: &Map<String, Value>) -> String {
    let described = match tool {
        "pay_invoice" => pay_invoice(arguments),
        "unlock_account" => unlock_account(arguments),
        "update_subscription" => update_subscription(arguments),
        "create_support_ticket" => create_support_ticket(arguments),
        _ => None,
    };
    described.unwrap_or_else(|| generic(tool, arguments))
}

fn generic(tool: &str, arguments: &Map<String, Value>) -> String {
    format!(
        "Call {tool} with {}",
        canonical(&Value::Object(arguments.clone()))
    )
}

/// An integer argument, as the tools service reads it.
fn id(arguments: &Map<String, Value>, key: &str) -> Option<i64> {
    arguments.get(key)?.as_i64()
}

/// A word argument (`credit_card`) in words (`credit card`).
fn words(value: &Value) -> Option<String> {
    value.as_str().map(|text| text.replace('_', " "))
}

/// A JSON number as dollars, from its own digits (no float in between): `100` and `100.5` are
/// `$100.00` and `$100.50`; a number with more decimals is shown as given, so the person sees
/// exactly what would be sent.
fn dollars(amount: &Value) -> Option<String> {
    let Value::Number(number) = amount else {
        return None;
    };
    let text = number.to_string();
    if text.contains(['e', 'E']) {
        return Some(format!("${text}"));
    }
    let (whole, cents) = text.split_once('.').unwrap_or((&text, ""));
    Some(match cents.len() {
        0..=2 => format!("${whole}.{cents:0<2}"),
        _ => format!("${text}"),
    })
}

fn pay_invoice(arguments: &Map<String, Value>) -> Option<String> {
    let invoice = id(arguments, "invoice_id")?;
    let amount = dollars(arguments.get("amount")?)?;
    // The tools service's default method.
    let method = match arguments.get("method") {
        None | Some(Value::Null) => "credit card".to_owned(),
        Some(method) => words(method)?,
    };
    Some(format!("Pay {amount} on invoice {invoice} by {method}"))
}

fn unlock_account(arguments: &Map<String, Value>) -> Option<String> {
    let customer = id(arguments, "customer_id")?;
    (arguments.len() == 1).then(|| format!("Unlock the online account of customer {customer}"))
}

fn update_subscription(arguments: &Map<String, Value>) -> Option<String> {
    let subscription = id(arguments, "subscription_id")?;
    let updates = arguments.get("updates")?.as_object()?;
    let on_off = |value: &Value| value.as_bool().map(|on| if on { "on" } else { "off" });
    const KNOWN: [&str; 4] = ["product_id", "status", "roaming_enabled", "autopay_enabled"];
    if updates.keys().any(|key| !KNOWN.contains(&key.as_str())) {
        return None;
    }
    // In one fixed order, whatever order the model wrote them in.
    let mut changes = Vec::new();
    for key in KNOWN {
        let Some(value) = updates.get(key).filter(|value| !value.is_null()) else {
            continue;
        };
        changes.push(match key {
            "product_id" => format!("move it to plan (product) {}", value.as_i64()?),
            "status" => format!("set its status to {}", words(value)?),
            "roaming_enabled" => format!("turn roaming {}", on_off(value)?),
            _ => format!("turn automatic payment {}", on_off(value)?),
        });
    }
    if changes.is_empty() {
        return None;
    }
    Some(format!(
        "Change subscription {subscription}: {}",
        changes.join(", ")
    ))
}

fn create_support_ticket(arguments: &Map<String, Value>) -> Option<String> {
    let customer = id(arguments, "customer_id")?;
    let category = words(arguments.get("category")?)?;
    let priority = match arguments.get("priority") {
        None | Some(Value::Null) => "normal".to_owned(),
        Some(priority) => words(priority)?,
    };
    let subject = arguments.get("subject")?.as_str()?;
    let mut quoted: String = subject.chars().take(MAX_QUOTED_CHARS).collect();
    if quoted.len() < subject.len() {
        quoted.push_str("...");
    }
    let about = match arguments.get("subscription_id") {
        None | Some(Value::Null) => String::new(),
        Some(line) => format!(" about subscription {}", line.as_i64()?),
    };
    Some(format!(
        "Open a {priority}-priority {category} ticket for customer {customer}{about}: \"{quoted}\""
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::{JsonObject, ToolAnnotations};
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn only_tools_marked_read_only_are_reads() {
        let bare = Tool::new("t", "a tool", Arc::new(JsonObject::new()));
        assert!(is_write(&bare), "no annotations: a write");
        let read = bare
            .clone()
            .with_annotations(ToolAnnotations::new().read_only(true));
        assert!(!is_write(&read));
        let write = bare.with_annotations(ToolAnnotations::new().read_only(false));
        assert!(is_write(&write));
    }

    #[test]
    fn each_known_write_is_described_exactly() {
        assert_eq!(
            describe(
                "pay_invoice",
                &object(json!({"invoice_id": 3754, "amount": 100}))
            ),
            "Pay $100.00 on invoice 3754 by credit card"
        );
        assert_eq!(
            describe(
                "pay_invoice",
                &object(json!({"invoice_id": 7, "amount": 12.5, "method": "bank_transfer"}))
            ),
            "Pay $12.50 on invoice 7 by bank transfer"
        );
        // More decimals than cents: shown as sent, not rounded into something else.
        assert_eq!(
            describe(
                "pay_invoice",
                &object(json!({"invoice_id": 7, "amount": 5000.004}))
            ),
            "Pay $5000.004 on invoice 7 by credit card"
        );
        assert_eq!(
            describe("unlock_account", &object(json!({"customer_id": 254}))),
            "Unlock the online account of customer 254"
        );
        assert_eq!(
            describe(
                "update_subscription",
                &object(
                    json!({"subscription_id": 12, "updates": {"roaming_enabled": true, "status": "suspended", "product_id": 3}})
                )
            ),
            "Change subscription 12: move it to plan (product) 3, set its status to suspended, \
             turn roaming on"
        );
        assert_eq!(
            describe(
                "create_support_ticket",
                &object(
                    json!({"customer_id": 251, "category": "billing", "priority": "high",
                               "subject": "Refund the overage", "description": "..."})
                )
            ),
            "Open a high-priority billing ticket for customer 251: \"Refund the overage\""
        );
    }

    #[test]
    fn anything_else_is_named_with_its_arguments() {
        assert_eq!(
            describe("wipe_everything", &object(json!({"b": 1, "a": "x"}))),
            r#"Call wipe_everything with {"a":"x","b":1}"#
        );
        // A known write whose arguments do not fit its describer falls back, never guesses.
        assert_eq!(
            describe(
                "pay_invoice",
                &object(json!({"invoice_id": "3754", "amount": 1}))
            ),
            r#"Call pay_invoice with {"amount":1,"invoice_id":"3754"}"#
        );
        assert_eq!(
            describe(
                "unlock_account",
                &object(json!({"customer_id": 1, "also": 2}))
            ),
            r#"Call unlock_account with {"also":2,"customer_id":1}"#
        );
    }
}
