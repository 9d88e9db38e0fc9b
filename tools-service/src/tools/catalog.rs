//! Products and promotions: the product catalogue, one product with the promotions running on
//! it, every promotion, and the promotions a customer qualifies for.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Entry, NoArgs, ToolError,
    common::{CustomerId, Result, customer, today},
    entry, read_only,
    render::{Render, ln},
    store_tool,
};
use crate::{domain::*, store::Storage};

pub(super) fn entries() -> Vec<Entry> {
    vec![
        entry(
            "get_promotions",
            "Every promotion with whether it is active, upcoming or expired today.",
            read_only(),
            |s, _: NoArgs, _| async move { get_promotions(&s.storage).await },
        ),
        store_tool!(
            "get_eligible_promotions",
            "Promotions a customer qualifies for today (loyalty level and subscribed products), and those they will qualify for once started.",
            read_only(),
            CustomerId,
            get_eligible_promotions
        ),
        store_tool!(
            "get_products",
            "The product catalogue, optionally of one category (mobile, internet, bundle, addon).",
            read_only(),
            Products,
            get_products
        ),
        store_tool!(
            "get_product_detail",
            "One product with its price, data cap, overage rate and the promotions running on it.",
            read_only(),
            ProductId,
            get_product_detail
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PromotionView {
    #[serde(flatten)]
    pub promotion: Promotion,
    pub state: PromotionState,
}

fn view(promotion: Promotion, today: NaiveDate) -> PromotionView {
    let state = promotion.state(today);
    PromotionView { promotion, state }
}

fn promotion_line(out: &mut String, p: &PromotionView) {
    let pr = &p.promotion;
    ln!(
        out,
        "- promotion {} \"{}\": {}% off, {} and above, {} to {} [{}] - {}",
        pr.id,
        pr.name,
        pr.discount_percent,
        pr.min_loyalty_level,
        pr.start_date,
        pr.end_date,
        p.state,
        pr.description
    );
}

pub async fn get_promotions(store: &Storage) -> Result<Promotions> {
    let today = today();
    let promotions = store
        .catalog
        .promotions()
        .await?
        .into_iter()
        .map(|p| view(p, today))
        .collect();
    Ok(Promotions { today, promotions })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Promotions {
    pub today: NaiveDate,
    pub promotions: Vec<PromotionView>,
}

impl Render for Promotions {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(&mut out, "Promotions as of {}:", self.today);
        for p in &self.promotions {
            promotion_line(&mut out, p);
        }
        out
    }
}

/// Eligible: running today, the customer's tier is at least the promotion's, and the promotion
/// is for any product or for a product the customer subscribes to (not cancelled).
pub async fn get_eligible_promotions(store: &Storage, p: CustomerId) -> Result<EligiblePromotions> {
    let today = today();
    let (customer, subscriptions, promotions) = tokio::try_join!(
        customer(store, p.customer_id),
        async { Ok(store.customers.subscriptions(p.customer_id).await?) },
        async { Ok(store.catalog.promotions().await?) },
    )?;
    let products: Vec<i64> = subscriptions
        .iter()
        .filter(|s| s.status != SubscriptionStatus::Cancelled)
        .map(|s| s.product_id)
        .collect();
    let mut eligible = Vec::new();
    let mut upcoming = Vec::new();
    for promotion in promotions {
        let qualifies = customer.loyalty_level >= promotion.min_loyalty_level
            && promotion.product_id.is_none_or(|id| products.contains(&id));
        if !qualifies {
            continue;
        }
        match promotion.state(today) {
            PromotionState::Active => eligible.push(view(promotion, today)),
            PromotionState::Upcoming => upcoming.push(view(promotion, today)),
            PromotionState::Expired => {}
        }
    }
    Ok(EligiblePromotions {
        customer_id: customer.id,
        loyalty_level: customer.loyalty_level,
        today,
        eligible,
        upcoming,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EligiblePromotions {
    pub customer_id: i64,
    pub loyalty_level: LoyaltyLevel,
    pub today: NaiveDate,
    /// Running today, and the customer meets every condition.
    pub eligible: Vec<PromotionView>,
    /// The customer would qualify, but the promotion has not started yet.
    pub upcoming: Vec<PromotionView>,
}

impl Render for EligiblePromotions {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(
            &mut out,
            "Customer {} ({} loyalty) is eligible today for {} promotion(s):",
            self.customer_id,
            self.loyalty_level,
            self.eligible.len()
        );
        for p in &self.eligible {
            promotion_line(&mut out, p);
        }
        if !self.upcoming.is_empty() {
            ln!(
                &mut out,
                "Not yet started (cannot be applied before the start date):"
            );
            for p in &self.upcoming {
                promotion_line(&mut out, p);
            }
        }
        out
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Products {
    /// Only products of this category.
    pub category: Option<ProductCategory>,
}

pub async fn get_products(store: &Storage, p: Products) -> Result<ProductList> {
    Ok(ProductList {
        products: store.catalog.products(p.category).await?,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

fn product_line(out: &mut String, p: &Product) {
    let cap = p
        .data_cap_gb
        .map(|gb| format!(", {gb} GB data"))
        .unwrap_or_default();
    let speed = p
        .speed_tier
        .as_deref()
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    ln!(
        out,
        "- product {}: {} ({}) {}/month{cap}{speed} - {}",
        p.id,
        p.name,
        p.category,
        p.monthly_fee,
        p.description
    );
}

impl Render for ProductList {
    fn render(&self) -> String {
        let mut out = String::new();
        for p in &self.products {
            product_line(&mut out, p);
        }
        out
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductId {
    /// The product's id.
    pub product_id: i64,
}

pub async fn get_product_detail(store: &Storage, p: ProductId) -> Result<ProductDetail> {
    let product = store
        .catalog
        .product(p.product_id)
        .await?
        .ok_or(ToolError::not_found("product", p.product_id))?;
    let today = today();
    let active_promotions = store
        .catalog
        .promotions()
        .await?
        .into_iter()
        .filter(|promo| {
            promo.product_id == Some(product.id) && promo.state(today) == PromotionState::Active
        })
        .map(|promo| view(promo, today))
        .collect();
    Ok(ProductDetail {
        product,
        active_promotions,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductDetail {
    #[serde(flatten)]
    pub product: Product,
    /// Promotions on this product running today.
    pub active_promotions: Vec<PromotionView>,
}

impl Render for ProductDetail {
    fn render(&self) -> String {
        let mut out = String::new();
        product_line(&mut out, &self.product);
        if let Some(rate) = self.product.overage_per_gb {
            ln!(&mut out, "Data above the cap costs {rate} per GB.");
        }
        for p in &self.active_promotions {
            promotion_line(&mut out, p);
        }
        out
    }
}
