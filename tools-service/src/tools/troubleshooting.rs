//! The `trouble_shoot_device` tool: its parameters and registration. The diagnosis itself, its
//! output and its rendering are in [`crate::troubleshoot`].

use schemars::JsonSchema;
use serde::Deserialize;

use super::{CallContext, Entry, entry, read_only};
use crate::troubleshoot;

pub(super) fn entries() -> Vec<Entry> {
    vec![entry(
        "trouble_shoot_device",
        "Run a remote diagnosis of a customer's line and device (takes about 45 seconds; reports progress). Returns the checks, a conclusion and recommended actions.",
        read_only(),
        |s, a: TroubleShootDevice, ctx: CallContext| async move {
            let progress = ctx
                .progress
                .as_ref()
                .map(|p| p as &dyn troubleshoot::ProgressSink);
            troubleshoot::run(
                &s.storage,
                a.customer_id,
                a.subscription_id,
                a.device,
                s.troubleshoot_step,
                progress,
                &ctx.cancel,
            )
            .await
        },
    )]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TroubleShootDevice {
    /// The customer whose service to diagnose.
    pub customer_id: i64,
    /// Which subscription; default: the customer's first active one.
    pub subscription_id: Option<i64>,
    /// The device, as the customer describes it (e.g. "home router", "iPhone 15").
    pub device: Option<String>,
}
