//! The product catalogue and the promotions, the same for every data set.

use chrono::{Days, NaiveDate};

use crate::{domain::*, money::Money};

pub const MOBILE: i64 = 1;
pub const INTERNET: i64 = 2;
pub const BUNDLE: i64 = 3;
pub const ROAMING_ADDON: i64 = 4;

/// Price of each GB above a plan's cap (see the Data Overage Policy document).
pub const OVERAGE_PER_GB: Money = Money::from_cents(750);

pub fn products() -> Vec<Product> {
    vec![
        Product {
            id: MOBILE,
            name: "Contoso Mobile 10GB".into(),
            category: ProductCategory::Mobile,
            description: "Mobile plan: unlimited calls and texts, 10 GB of data a month.".into(),
            monthly_fee: Money::dollars(60),
            data_cap_gb: Some(10),
            overage_per_gb: Some(OVERAGE_PER_GB),
            speed_tier: None,
        },
        Product {
            id: INTERNET,
            name: "Contoso Internet Flex".into(),
            category: ProductCategory::Internet,
            description: "Home internet with 10 GB of data a month; speed tier chosen per line \
                          (300 Mbps, 500 Mbps or 1 Gbps)."
                .into(),
            monthly_fee: Money::dollars(60),
            data_cap_gb: Some(10),
            overage_per_gb: Some(OVERAGE_PER_GB),
            speed_tier: Some("300 Mbps".into()),
        },
        Product {
            id: BUNDLE,
            name: "Contoso Home + Mobile Bundle".into(),
            category: ProductCategory::Bundle,
            description: "Home internet and a mobile line on one bill, 50 GB of shared data."
                .into(),
            monthly_fee: Money::dollars(95),
            data_cap_gb: Some(50),
            overage_per_gb: Some(OVERAGE_PER_GB),
            speed_tier: Some("500 Mbps".into()),
        },
        Product {
            id: ROAMING_ADDON,
            name: "International Roaming Add-on".into(),
            category: ProductCategory::Addon,
            description: "Use your mobile line abroad: 5 GB of roaming data a month. Activate at \
                          least 3 days before travel."
                .into(),
            monthly_fee: Money::dollars(25),
            data_cap_gb: Some(5),
            overage_per_gb: None,
            speed_tier: None,
        },
    ]
}

/// Promotions relative to `today`: three running, two expired, one that starts in 20 days.
pub fn promotions(today: NaiveDate) -> Vec<Promotion> {
    let ago = |d: u64| today - Days::new(d);
    let ahead = |d: u64| today + Days::new(d);
    let promo = |id, name: &str, description: &str, product_id, min, pct, start, end| Promotion {
        id,
        name: name.into(),
        description: description.into(),
        product_id,
        min_loyalty_level: min,
        discount_percent: pct,
        start_date: start,
        end_date: end,
    };
    use LoyaltyLevel::*;
    vec![
        promo(
            1,
            "Mobile Loyalty Discount",
            "10% off the monthly mobile plan fee for Gold and Platinum customers.",
            Some(MOBILE),
            Gold,
            10,
            ago(30),
            ahead(60),
        ),
        promo(
            2,
            "Internet Speed Boost",
            "15% off home internet for Silver customers and above.",
            Some(INTERNET),
            Silver,
            15,
            ago(10),
            ahead(80),
        ),
        promo(
            3,
            "Bundle Welcome Offer",
            "20% off the first months of the Home + Mobile Bundle.",
            Some(BUNDLE),
            Bronze,
            20,
            ago(45),
            ahead(45),
        ),
        promo(
            4,
            "Summer Roaming Saver",
            "25% off the International Roaming Add-on for summer travel.",
            Some(ROAMING_ADDON),
            Bronze,
            25,
            ago(200),
            ago(110),
        ),
        promo(
            5,
            "Spring Data Bonus",
            "5% off any plan for customers who joined in spring.",
            None,
            Bronze,
            5,
            ago(260),
            ago(200),
        ),
        promo(
            6,
            "Holiday Mobile Upgrade",
            "20% off the mobile plan over the holidays for Gold customers and above.",
            Some(MOBILE),
            Gold,
            20,
            ahead(20),
            ahead(80),
        ),
    ]
}
