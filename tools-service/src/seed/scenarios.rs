//! The nine scenario customers (ids 251-259): each one a typical customer-service case whose
//! facts the tools must expose and the agents must find. Everything is relative to `now`.
//!
//! | id  | case                                                                          |
//! |-----|-------------------------------------------------------------------------------|
//! | 251 | internet plan, 10 GB cap, ~22 GB used, $150 invoice vs usual $60, $50 paid    |
//! | 252 | 1 Gbps line running slow, incident still investigating                        |
//! | 253 | travelling, roaming disabled                                                  |
//! | 254 | account locked 12 minutes ago after failed sign-ins                            |
//! | 255 | Gold, eligible for the Mobile Loyalty Discount; an upcoming promotion too     |
//! | 256 | handset returned 25 days ago, asking about the refund                          |
//! | 257 | several open dropped-call tickets                                              |
//! | 258 | service suspended, invoice >14 days past due, two failed payments             |
//! | 259 | mobile plan, 10 GB cap, ~22 GB used, $150 invoice                             |

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};

use super::{
    Dataset, Ids, catalog,
    random::{
        TicketSpec, incident, invoice, payment, person, security_log, subscription, ticket, usage,
    },
};
use crate::{domain::*, money::Money};

/// Daily data of a heavy month: 22,000 MB over 30 days, so any 30-day window of the last
/// five weeks shows about 22 GB.
const HEAVY_DAILY_MB: i64 = 734;
/// Daily data of an ordinary month: about 6 GB, inside a 10 GB cap.
const NORMAL_DAILY_MB: i64 = 200;

pub(crate) fn customers(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    let today = now.date_naive();
    let years = |y: u64| today - Days::new(365 * y);
    let mut add = |id, first, last, loyalty, address: &str| {
        data.customers.push(person(
            id,
            first,
            last,
            loyalty,
            years(4),
            years(30 + (id as u64 % 10)),
            address.to_owned(),
            format!("+1-555-01{}", id % 100),
        ));
    };
    use LoyaltyLevel::*;
    add(251, "John", "Doe", Silver, "12 Maple Ave, Redmond, WA");
    add(252, "Jane", "Doe", Gold, "48 Harbor St, Seattle, WA");
    add(253, "Mark", "Doe", Bronze, "7 Cedar Ln, Portland, OR");
    add(254, "Alice", "Doe", Gold, "300 Lakeview Dr, Austin, TX");
    add(255, "Ron", "Doe", Gold, "19 Elm St, Denver, CO");
    add(256, "Mary", "Doe", Silver, "5 Pine Rd, Boston, MA");
    add(257, "Tom", "Smith", Silver, "77 Oak Ct, Chicago, IL");
    add(258, "Sara", "Lee", Gold, "221 Riverside Blvd, Atlanta, GA");
    add(259, "Alex", "Brown", Bronze, "9 Sunset Ave, Seattle, WA");

    overage(
        data,
        ids,
        251,
        catalog::INTERNET,
        now,
        Some(Money::dollars(50)),
    );
    slow_internet(data, ids, now);
    roaming_disabled(data, ids, now);
    locked_account(data, ids, now);
    loyal_mobile(data, ids, now);
    returned_handset(data, ids, now);
    dropped_calls(data, ids, now);
    suspended_for_non_payment(data, ids, now);
    overage(data, ids, 259, catalog::MOBILE, now, None);
}

fn at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_hms_opt(hour, 0, 0).expect("valid time").and_utc()
}

/// A plain active plan with `months` of $60 invoices paid on time and ordinary usage.
fn ordinary_plan(
    data: &mut Dataset,
    ids: &mut Ids,
    customer_id: i64,
    product: i64,
    now: DateTime<Utc>,
    months: u64,
) -> i64 {
    let today = now.date_naive();
    let sub = subscription(
        ids,
        customer_id,
        product,
        today - Days::new(400),
        SubscriptionStatus::Active,
        ServiceStatus::Normal,
    );
    let sub_id = sub.id;
    data.subscriptions.push(sub);
    usage(data, sub_id, today, |_| NORMAL_DAILY_MB);
    let fee = if product == catalog::BUNDLE {
        Money::dollars(95)
    } else {
        Money::dollars(60)
    };
    paid_history(data, ids, sub_id, today - Days::new(35), months, fee);
    sub_id
}

/// `months` monthly invoices of `fee` ending at `latest`, each paid in full 10 days after.
fn paid_history(
    data: &mut Dataset,
    ids: &mut Ids,
    subscription_id: i64,
    latest: NaiveDate,
    months: u64,
    fee: Money,
) {
    for month in (0..months).rev() {
        let date = latest - Days::new(30 * month);
        let inv = invoice(
            data,
            ids,
            subscription_id,
            date,
            "Monthly service".into(),
            fee,
        );
        payment(
            data,
            ids,
            inv.id,
            at(date + Days::new(10), 9),
            fee,
            PaymentMethod::CreditCard,
            true,
        );
    }
}

/// 251 and 259: a 10 GB plan, ~22 GB used over the last five weeks, so the invoice of 5 days
/// ago is $60 + 12 GB x $7.50 = $150 against a usual $60.
fn overage(
    data: &mut Dataset,
    ids: &mut Ids,
    customer_id: i64,
    product: i64,
    now: DateTime<Utc>,
    paid: Option<Money>,
) {
    let today = now.date_naive();
    let sub = subscription(
        ids,
        customer_id,
        product,
        today - Days::new(600),
        SubscriptionStatus::Active,
        ServiceStatus::Normal,
    );
    let sub_id = sub.id;
    data.subscriptions.push(sub);
    usage(data, sub_id, today, |days_ago| {
        if days_ago < 35 {
            HEAVY_DAILY_MB
        } else {
            NORMAL_DAILY_MB
        }
    });
    let latest = today - Days::new(5);
    paid_history(
        data,
        ids,
        sub_id,
        latest - Days::new(30),
        6,
        Money::dollars(60),
    );
    let inv = invoice(
        data,
        ids,
        sub_id,
        latest,
        "Monthly service + data overage (12 GB)".into(),
        Money::dollars(150),
    );
    if let Some(amount) = paid {
        payment(
            data,
            ids,
            inv.id,
            at(latest + Days::new(2), 14),
            amount,
            PaymentMethod::CreditCard,
            true,
        );
    }
}

/// 252: a 1 Gbps internet line flagged slow, with an open incident under investigation.
fn slow_internet(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    let sub_id = ordinary_plan(data, ids, 252, catalog::INTERNET, now, 8);
    if let Some(sub) = data.subscriptions.iter_mut().find(|s| s.id == sub_id) {
        sub.speed_tier = Some("1 Gbps".into());
        sub.service_status = ServiceStatus::Slow;
    }
    incident(
        data,
        ids,
        sub_id,
        now - Duration::hours(30),
        "Degraded throughput on the fibre aggregation node serving the customer's area; \
         engineers are investigating",
        IncidentStatus::Investigating,
    );
    incident(
        data,
        ids,
        sub_id,
        now - Duration::days(70),
        "Planned maintenance on the access network",
        IncidentStatus::Resolved,
    );
}

/// 253: a mobile line with roaming disabled, about to travel.
fn roaming_disabled(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    ordinary_plan(data, ids, 253, catalog::MOBILE, now, 10);
}

/// 254: five failed sign-ins, then the account locked 12 minutes ago.
fn locked_account(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    ordinary_plan(data, ids, 254, catalog::MOBILE, now, 9);
    security_log(
        data,
        ids,
        254,
        SecurityEventType::Login,
        now - Duration::days(3),
        "Successful sign-in from the Contoso app",
    );
    for minutes in [20, 18, 16, 14, 13] {
        security_log(
            data,
            ids,
            254,
            SecurityEventType::FailedLogin,
            now - Duration::minutes(minutes),
            "Sign-in failed: wrong password",
        );
    }
    security_log(
        data,
        ids,
        254,
        SecurityEventType::AccountLocked,
        now - Duration::minutes(12),
        "Account locked after 5 failed sign-in attempts",
    );
}

/// 255: a Gold mobile customer, eligible for the active 10% Mobile Loyalty Discount.
fn loyal_mobile(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    ordinary_plan(data, ids, 255, catalog::MOBILE, now, 12);
}

/// 256: a handset delivered 40 days ago and returned 25 days ago.
fn returned_handset(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    let today = now.date_naive();
    ordinary_plan(data, ids, 256, catalog::MOBILE, now, 8);
    data.orders.push(Order {
        id: ids.order(),
        customer_id: 256,
        product_id: None,
        item: "Contoso Phone X handset".into(),
        order_date: today - Days::new(40),
        amount: Money::from_cents(79_900),
        status: OrderStatus::Returned,
        returned_on: Some(today - Days::new(25)),
    });
    data.orders.push(Order {
        id: ids.order(),
        customer_id: 256,
        product_id: None,
        item: "Phone case".into(),
        order_date: today - Days::new(40),
        amount: Money::from_cents(2_900),
        status: OrderStatus::Delivered,
        returned_on: None,
    });
}

/// 257: three open dropped-call tickets in the last three weeks, and an older resolved one.
fn dropped_calls(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    let sub_id = ordinary_plan(data, ids, 257, catalog::MOBILE, now, 10);
    for (days, status) in [
        (90, TicketStatus::Closed),
        (20, TicketStatus::Open),
        (12, TicketStatus::InProgress),
        (4, TicketStatus::Open),
    ] {
        let opened = now - Duration::days(days);
        ticket(
            data,
            ids,
            TicketSpec {
                customer_id: 257,
                subscription_id: Some(sub_id),
                category: TicketCategory::CallDrop,
                priority: TicketPriority::High,
                status,
                subject: "Calls dropping mid-conversation".into(),
                description: "Customer reports calls dropping after 1-2 minutes at home.".into(),
                opened_at: opened,
                closed_at: (!status.is_open()).then(|| opened + Duration::days(2)),
            },
        );
    }
}

/// 258: an invoice 20 days past due after two failed payments; the line is suspended.
fn suspended_for_non_payment(data: &mut Dataset, ids: &mut Ids, now: DateTime<Utc>) {
    let today = now.date_naive();
    let sub = subscription(
        ids,
        258,
        catalog::MOBILE,
        today - Days::new(500),
        SubscriptionStatus::Suspended,
        ServiceStatus::Normal,
    );
    let sub_id = sub.id;
    data.subscriptions.push(sub);
    usage(data, sub_id, today, |days_ago| {
        if days_ago < 6 { 0 } else { NORMAL_DAILY_MB }
    });
    let unpaid_date = today - Days::new(50);
    paid_history(
        data,
        ids,
        sub_id,
        unpaid_date - Days::new(30),
        8,
        Money::dollars(60),
    );
    let inv = invoice(
        data,
        ids,
        sub_id,
        unpaid_date,
        "Monthly service".into(),
        Money::dollars(60),
    );
    for days in [30, 33] {
        payment(
            data,
            ids,
            inv.id,
            at(unpaid_date + Days::new(days), 8),
            Money::dollars(60),
            PaymentMethod::DebitCard,
            false,
        );
    }
}
