//! A subscription's daily data, voice and SMS usage over a window of dates, with its totals.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use super::{
    Entry, ToolError,
    common::{subscription, today},
    dates, read_only,
    render::{Render, ln},
    store_tool,
};
use crate::{domain::DataUsage, store::Storage};

pub(super) fn entries() -> Vec<Entry> {
    vec![store_tool!(
        "get_data_usage",
        "Daily data, voice and SMS usage of a subscription between two dates (default: the last 30 days); aggregate=true returns only the totals.",
        read_only(),
        DataUsageQuery,
        get_data_usage
    )]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataUsageQuery {
    /// The subscription whose usage to read.
    pub subscription_id: i64,
    /// First day, `YYYY-MM-DD`, from 1900-01-01 to 9999-12-31 (default: 29 days before
    /// `end_date`, so the window is 30 days). At most 366 days after it to `end_date`.
    #[serde(default, deserialize_with = "start_date")]
    pub start_date: Option<NaiveDate>,
    /// Last day, inclusive, `YYYY-MM-DD`, from 1900-01-01 to 9999-12-31 (default: today).
    #[serde(default, deserialize_with = "end_date")]
    pub end_date: Option<NaiveDate>,
    /// Return totals for the range instead of one row per day.
    #[serde(default)]
    pub aggregate: bool,
}

/// Parses a date argument of the supported calendar (see [`super::dates`]).
fn date_field<'de, D: Deserializer<'de>>(
    field: &str,
    deserializer: D,
) -> Result<Option<NaiveDate>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    super::dates::parse_date(field, &text)
        .map(Some)
        .map_err(de::Error::custom)
}

fn start_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    date_field("start_date", d)
}

fn end_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    date_field("end_date", d)
}

pub async fn get_data_usage(
    store: &Storage,
    p: DataUsageQuery,
) -> Result<DataUsageReport, ToolError> {
    let (start, end) = dates::usage_window(p.start_date, p.end_date, today())?;
    let (customer, sub) = subscription(store, p.subscription_id).await?;
    let daily = store
        .customers
        .data_usage(customer, sub.id, start, end)
        .await?;
    // At most 366 stored rows; saturating keeps a corrupted row from panicking the sum.
    let total = |field: fn(&DataUsage) -> i64| {
        daily
            .iter()
            .fold(0_i64, |sum, day| sum.saturating_add(field(day)))
    };
    let data_used_mb = total(|d| d.data_used_mb);
    let totals = UsageTotals {
        days: daily.len() as i64,
        data_used_mb,
        data_used_gb: (data_used_mb as f64 / 100.0).round() / 10.0,
        voice_minutes: total(|d| d.voice_minutes),
        sms_count: total(|d| d.sms_count),
    };
    Ok(DataUsageReport {
        subscription_id: sub.id,
        start_date: start,
        end_date: end,
        data_cap_gb: sub.data_cap_gb,
        totals,
        daily: if p.aggregate { Vec::new() } else { daily },
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageTotals {
    pub days: i64,
    pub data_used_mb: i64,
    /// `data_used_mb` in GB (1 GB = 1000 MB), one decimal.
    pub data_used_gb: f64,
    pub voice_minutes: i64,
    pub sms_count: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DataUsageReport {
    pub subscription_id: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// The plan's monthly cap, for comparison.
    pub data_cap_gb: Option<i64>,
    pub totals: UsageTotals,
    /// One row per day, oldest first; empty when `aggregate` was requested.
    pub daily: Vec<DataUsage>,
}

impl Render for DataUsageReport {
    fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let cap = self
            .data_cap_gb
            .map_or(String::new(), |gb| format!(" (plan cap {gb} GB a month)"));
        ln!(
            &mut out,
            "Usage of subscription {} from {} to {} ({} days): {:.1} GB data{cap}, {} voice minutes, {} SMS",
            self.subscription_id,
            self.start_date,
            self.end_date,
            t.days,
            t.data_used_gb,
            t.voice_minutes,
            t.sms_count
        );
        for d in &self.daily {
            ln!(
                &mut out,
                "- {}: {} MB, {} min, {} SMS",
                d.usage_date,
                d.data_used_mb,
                d.voice_minutes,
                d.sms_count
            );
        }
        out
    }
}
