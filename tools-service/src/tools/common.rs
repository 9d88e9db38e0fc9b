//! What the areas share: the result type of an operation, paging bounds, today's date, the
//! customer-id argument, and the look-ups that resolve a record to its customer.
//!
//! A subscription or invoice named alone is first resolved to its customer (`owner`); every
//! read and write after that names the customer.

use chrono::{NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::ToolError;
use crate::{
    domain::{Customer, Subscription},
    store::{Owned, Storage},
};

pub(super) type Result<T> = std::result::Result<T, ToolError>;

pub(super) const MAX_PAGE: u32 = 500;
pub(super) const DEFAULT_PAGE: u32 = 50;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerId {
    /// The customer's id.
    pub customer_id: i64,
}

pub(super) fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub(super) fn bounded(value: Option<u32>, default: u32, max: u32, field: &str) -> Result<u32> {
    match value.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(ToolError::invalid(format!(
            "{field} must be between 1 and {max}, got {n}"
        ))),
    }
}

pub(super) async fn customer(store: &Storage, id: i64) -> Result<Customer> {
    store
        .customers
        .customer(id)
        .await?
        .ok_or(ToolError::not_found("customer", id))
}

/// The customer `of` belongs to; not found if `of` does not exist.
pub(super) async fn owner(store: &Storage, of: Owned) -> Result<i64> {
    store
        .customers
        .owner(of)
        .await?
        .ok_or_else(|| of.not_found().into())
}

/// A subscription named alone, and its customer.
pub(super) async fn subscription(store: &Storage, id: i64) -> Result<(i64, Subscription)> {
    let of = Owned::Subscription(id);
    let customer = owner(store, of).await?;
    let subscription = store
        .customers
        .subscription(customer, id)
        .await?
        .ok_or_else(|| ToolError::from(of.not_found()))?;
    Ok((customer, subscription))
}

/// A stored free-text field: trimmed, 1 to `max` characters, and no control characters other
/// than line breaks and tabs (a NUL or an escape sequence in a ticket is never what a person
/// typed, and would reach every screen and model that later shows the ticket).
pub(crate) fn text_field(value: String, field: &str, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ToolError::invalid(format!("{field} must not be empty")));
    }
    if trimmed.chars().nth(max).is_some() {
        return Err(ToolError::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ToolError::invalid(format!(
            "{field} contains the control character {:?}; remove it",
            c
        )));
    }
    Ok(trimmed.to_owned())
}
