//! Product investigations: promotions a customer is eligible for, using the phone abroad,
//! device returns and refunds, and plans.

use chrono::{Datelike, NaiveDate, Utc, Weekday};
use serde_json::json;

use super::{
    answer::{Answer, Reply, cite_policy, count},
    facts::{CustomerDetail, EligiblePromotions, Orders, Product, Products, Promotion, Promotions},
    probe::{Probe, Stop},
};

/// The promotions a customer is eligible for today and those that have not started yet.
pub async fn promotions(probe: &Probe<'_>, customer: i64) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let mut policy = Answer::default();
    let (eligible, cited) = tokio::join!(
        probe.call::<EligiblePromotions>(
            "get_eligible_promotions",
            json!({"customer_id": customer})
        ),
        cite_policy(probe, &mut policy, "promotion eligibility rules", 1),
    );
    cited?;
    match answer.got(
        eligible?,
        &format!("which promotions customer {customer} is eligible for"),
    ) {
        Some(found) => {
            answer.say(if found.eligible.is_empty() {
                format!(
                    "Customer {customer} ({} loyalty) is not eligible for any promotion running today.",
                    found.loyalty_level
                )
            } else {
                format!(
                    "Customer {customer} ({} loyalty) is eligible today for {}:\n- {}",
                    found.loyalty_level,
                    count(found.eligible.len(), "promotion", "promotions"),
                    lines(&found.eligible)
                )
            });
            if !found.upcoming.is_empty() {
                answer.say(format!(
                    "Not started yet, so it cannot be applied before its start date:\n- {}",
                    lines(&found.upcoming)
                ));
            }
        }
        None => {
            // Without the eligibility check, the running promotions are still worth listing.
            let all = probe
                .call::<Promotions>("get_promotions", json!({}))
                .await?;
            if let Some(all) = answer.got(all, "the promotions") {
                let current: Vec<Promotion> = all
                    .promotions
                    .into_iter()
                    .filter(|p| p.state != "expired")
                    .collect();
                answer.say(format!(
                    "Promotions running or coming up (eligibility not checked):\n- {}",
                    lines(&current)
                ));
            }
        }
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

fn lines(promotions: &[Promotion]) -> String {
    promotions
        .iter()
        .map(|p| {
            format!(
                "\"{}\": {}% off, {} and above, {} to {} ({}) - {}",
                p.name,
                p.discount_percent,
                p.min_loyalty_level,
                p.start_date,
                p.end_date,
                p.state,
                p.description
            )
        })
        .collect::<Vec<_>>()
        .join("\n- ")
}

/// Using the phone abroad: whether roaming is on for each line, the roaming add-on, and the
/// roaming options and activation cut-off.
pub async fn roaming(probe: &Probe<'_>, customer: i64) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let mut policy = Answer::default();
    let (detail, addons, cited) = tokio::join!(
        probe.call::<CustomerDetail>("get_customer_detail", json!({"customer_id": customer})),
        probe.call::<Products>("get_products", json!({"category": "addon"})),
        cite_policy(
            probe,
            &mut policy,
            "international roaming options activation cut-off",
            2
        ),
    );
    cited?;
    if let Some(detail) = answer.got(detail?, &format!("customer {customer}")) {
        let phones: Vec<String> = detail
            .subscriptions
            .iter()
            .filter(|s| s.status != "cancelled" && s.product_category != "addon")
            .map(|s| {
                format!(
                    "subscription {} ({}, {}): roaming is {}",
                    s.id,
                    s.product_name,
                    s.status,
                    if s.roaming_enabled { "on" } else { "off" }
                )
            })
            .collect();
        answer.say(if phones.is_empty() {
            format!(
                "{} (customer {}) has no subscription in service.",
                detail.name(),
                detail.id
            )
        } else {
            format!(
                "{} (customer {}): {}.",
                detail.name(),
                detail.id,
                phones.join("; ")
            )
        });
    }
    if let Some(addons) = answer.got(addons?, "the roaming add-ons") {
        let roaming: Vec<&Product> = addons
            .products
            .iter()
            .filter(|p| {
                let text = format!("{} {}", p.name, p.description).to_lowercase();
                text.contains("roam") || text.contains("international")
            })
            .collect();
        if roaming.is_empty() {
            answer.say("The catalogue has no roaming add-on.");
        } else {
            answer.say(format!(
                "Roaming add-on: {}",
                roaming
                    .iter()
                    .map(|p| product_line(p))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

/// A device sent back: the customer's returned orders, how long ago, and the refund policy.
pub async fn returns(probe: &Probe<'_>, customer: i64) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let mut policy = Answer::default();
    let (orders, cited) = tokio::join!(
        probe.call::<Orders>("get_customer_orders", json!({"customer_id": customer})),
        cite_policy(probe, &mut policy, "returns and refunds policy", 1),
    );
    cited?;
    if let Some(orders) = answer.got(orders?, &format!("the orders of customer {customer}")) {
        let today = Utc::now().date_naive();
        let returned: Vec<String> = orders
            .orders
            .iter()
            .filter(|o| o.status == "returned")
            .map(|o| match o.returned_on {
                Some(on) => format!(
                    "order {} ({}, {}), ordered {}, was returned on {}, {} ({}) ago",
                    o.id,
                    o.item,
                    o.amount,
                    o.order_date,
                    on,
                    count(
                        usize::try_from((today - on).num_days()).unwrap_or(0),
                        "day",
                        "days"
                    ),
                    count(business_days(on, today), "business day", "business days")
                ),
                None => format!(
                    "order {} ({}, {}), ordered {}, is marked returned",
                    o.id, o.item, o.amount, o.order_date
                ),
            })
            .collect();
        if returned.is_empty() {
            let latest: Vec<String> = orders
                .orders
                .iter()
                .take(3)
                .map(|o| format!("order {} ({}, {}): {}", o.id, o.item, o.amount, o.status))
                .collect();
            answer.say(format!(
                "Customer {customer} has no returned order.{}",
                if latest.is_empty() {
                    String::new()
                } else {
                    format!(" Latest orders: {}.", latest.join("; "))
                }
            ));
        } else {
            answer.say(format!(
                "Customer {customer}: {}. The order records do not show the refund payment \
                 itself; the policy below says when it is due.",
                returned.join("; ")
            ));
        }
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

/// Plans and products: the customer's current plans (when the question names the customer)
/// and the catalogue.
pub async fn plans(probe: &Probe<'_>, customer: Option<i64>) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let detail = async {
        match customer {
            Some(id) => Some(
                probe
                    .call::<CustomerDetail>("get_customer_detail", json!({"customer_id": id}))
                    .await,
            ),
            None => None,
        }
    };
    let (detail, products) =
        tokio::join!(detail, probe.call::<Products>("get_products", json!({})));
    if let Some(found) = detail
        && let Some(detail) = answer.got(found?, "the customer's current plans")
    {
        let current: Vec<String> = detail
            .subscriptions
            .iter()
            .filter(|s| s.status != "cancelled")
            .map(|s| format!("subscription {}: {} ({})", s.id, s.product_name, s.status))
            .collect();
        answer.say(format!(
            "{} (customer {}, {} loyalty) has: {}.",
            detail.name(),
            detail.id,
            detail.loyalty_level,
            if current.is_empty() {
                "no subscription in service".to_owned()
            } else {
                current.join("; ")
            }
        ));
    }
    if let Some(products) = answer.got(products?, "the product catalogue") {
        answer.say(format!(
            "The catalogue:\n- {}",
            products
                .products
                .iter()
                .map(product_line)
                .collect::<Vec<_>>()
                .join("\n- ")
        ));
    }
    Ok(answer.finish())
}

fn product_line(p: &Product) -> String {
    let cap = p
        .data_cap_gb
        .map(|gb| format!(", {gb} GB data"))
        .unwrap_or_default();
    format!(
        "product {} \"{}\" ({}), {}/month{cap} - {}",
        p.id, p.name, p.category, p.monthly_fee, p.description
    )
}

/// Weekdays after `from` up to and including `to`.
fn business_days(from: NaiveDate, to: NaiveDate) -> usize {
    from.iter_days()
        .skip(1)
        .take_while(|d| *d <= to)
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_days_skip_weekends() {
        let day = |s: &str| s.parse::<NaiveDate>().expect("date");
        // Friday 2026-11-20 to Friday 2026-11-27: five weekdays after it.
        assert_eq!(business_days(day("2026-11-20"), day("2026-11-27")), 5);
        assert_eq!(business_days(day("2026-11-27"), day("2026-11-27")), 0);
        assert_eq!(business_days(day("2026-11-27"), day("2026-11-20")), 0);
    }
}
