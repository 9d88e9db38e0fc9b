//! Account investigations: a locked account (an unlock proposed for the person's confirmation
//! only when the question asks for it and the caller may), and service problems (slow internet,
//! dropped calls) diagnosed remotely.

use chrono::Utc;
use serde_json::json;

use super::{
    answer::{Answer, Reply, cite_policy, count},
    facts::{
        AccountUnlocked, CustomerDetail, Diagnosis, SecurityLogs, Subscription, SubscriptionDetail,
        Tickets,
    },
    intent::Problem,
    probe::{Probe, Stop},
};

const UNLOCK: &str = "unlock_account";
/// The answer to a request to unlock from a caller without the role to.
const NOT_ALLOWED_TO_UNLOCK: &str = "You asked me to unlock the account, but you are not \
allowed to: unlocking an account needs the security role, which your sign-in does not have. I \
have not unlocked it. Someone with the security role can ask the account expert to unlock it.";

/// A locked account or sign-in trouble: the security log, whether the account is locked and
/// since when, the unlock proposed for confirmation (only if `unlock_asked` and the caller may),
/// and the verification procedure.
pub async fn locked(probe: &Probe<'_>, customer: i64, unlock_asked: bool) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let mut policy = Answer::default();
    let (logs, cited) = tokio::join!(
        probe.call::<SecurityLogs>(
            "get_security_logs",
            json!({"customer_id": customer, "limit": 10})
        ),
        cite_policy(probe, &mut policy, "account unlock verification", 1),
    );
    cited?;
    let Some(logs) = answer.got(logs?, &format!("the security log of customer {customer}")) else {
        // Reading security logs and unlocking are both the security role's: a caller without
        // it learns first that they may not unlock, not merely that the log was out of reach.
        if unlock_asked && !probe.can(UNLOCK) {
            answer.say(NOT_ALLOWED_TO_UNLOCK);
        } else if unlock_asked {
            answer.say(
                "Without the security log I cannot confirm the account is locked, so I have \
                 not unlocked it.",
            );
        }
        answer.absorb(policy);
        return Ok(answer.finish());
    };
    let now = Utc::now();
    match logs.locked_since {
        Some(since) if logs.account_locked => answer.say(format!(
            "The account of customer {} is locked since {} ({} ago).",
            logs.customer_id,
            since.format("%Y-%m-%d %H:%M UTC"),
            count(
                usize::try_from((now - since).num_minutes()).unwrap_or(0),
                "minute",
                "minutes"
            )
        )),
        _ => answer.say(format!(
            "The account of customer {} is not locked{}.",
            logs.customer_id,
            if unlock_asked {
                ", so there is nothing to unlock"
            } else {
                ""
            }
        )),
    }
    if !logs.entries.is_empty() {
        let recent: Vec<String> = logs
            .entries
            .iter()
            .take(6)
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.occurred_at.format("%Y-%m-%d %H:%M UTC"),
                    e.event_type,
                    e.description
                )
            })
            .collect();
        answer.say(format!(
            "Latest security events, newest first:\n- {}",
            recent.join("\n- ")
        ));
    }
    if logs.account_locked {
        match (unlock_asked, probe.can(UNLOCK)) {
            (true, true) => {
                // Made only once the person confirms it (see `planner::confirmed`).
                if let Some(unlock) = probe.propose(UNLOCK, json!({"customer_id": customer})) {
                    answer.ask_to_confirm(unlock);
                }
            }
            (true, false) => answer.say(NOT_ALLOWED_TO_UNLOCK),
            (false, true) => answer.say(
                "I can unlock the account once the customer's identity is verified: ask me to \
                 unlock it.",
            ),
            (false, false) => answer.say(
                "Unlocking it needs the security role, which your sign-in does not have; someone \
                 with that role can ask the account expert to unlock it.",
            ),
        }
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

/// The sentence saying a confirmed change (`action`, by `tool`) was made, from its result.
pub fn made(tool: &str, action: &str, result: &serde_json::Value) -> String {
    match serde_json::from_value::<AccountUnlocked>(result.clone()) {
        Ok(done) if tool == UNLOCK => format!(
            "As you confirmed, I unlocked the account of customer {} at {}.",
            done.customer_id,
            done.unlocked_at.format("%Y-%m-%d %H:%M UTC")
        ),
        _ => format!("As you confirmed, done: {action}."),
    }
}

/// A service problem: the line concerned, its service status and open incidents, the open
/// support tickets, a remote diagnosis (its progress relayed), and the matching guide.
pub async fn service(
    probe: &Probe<'_>,
    customer: i64,
    subscription: Option<i64>,
    problem: Problem,
) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let found = probe
        .call::<CustomerDetail>("get_customer_detail", json!({"customer_id": customer}))
        .await?;
    let Some(detail) = answer.got(found, &format!("customer {customer}")) else {
        return Ok(answer.finish());
    };
    let Some(line) = pick_line(&detail.subscriptions, subscription, problem) else {
        answer.say(format!(
            "Customer {} ({}) has no subscription in service to look into.",
            detail.id,
            detail.name()
        ));
        return Ok(answer.finish());
    };
    let query = match problem {
        Problem::Calls => "dropped call investigation",
        Problem::Internet => "slow internet troubleshooting",
        Problem::General => "service reliability SLA credit",
    };
    let mut policy = Answer::default();
    let (diagnosis, tickets, line_detail, cited) = tokio::join!(
        probe.call::<Diagnosis>(
            "trouble_shoot_device",
            json!({"customer_id": customer, "subscription_id": line.id})
        ),
        probe.call::<Tickets>(
            "get_support_tickets",
            json!({"customer_id": customer, "open_only": true})
        ),
        probe.call::<SubscriptionDetail>(
            "get_subscription_detail",
            json!({"subscription_id": line.id})
        ),
        cite_policy(probe, &mut policy, query, 1),
    );
    cited?;

    let speed = line
        .speed_tier
        .as_deref()
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    answer.say(format!(
        "Subscription {} of {} (customer {}): {} ({}{speed}), service status {}, subscription {}.",
        line.id,
        detail.name(),
        detail.id,
        line.product_name,
        line.product_category,
        line.service_status,
        line.status
    ));
    if let Some(line_detail) = answer.got(
        line_detail?,
        &format!("the incidents of subscription {}", line.id),
    ) {
        let open: Vec<String> = line_detail
            .incidents
            .iter()
            .filter(|i| i.status != "resolved")
            .map(|i| {
                format!(
                    "incident {} reported {}: {} [{}]",
                    i.id,
                    i.reported_at.format("%Y-%m-%d %H:%M UTC"),
                    i.description,
                    i.status
                )
            })
            .collect();
        answer.say(if open.is_empty() {
            format!(
                "No open network incident affects subscription {}.",
                line_detail.id
            )
        } else {
            format!(
                "Open network {}: {}.",
                if open.len() == 1 {
                    "incident"
                } else {
                    "incidents"
                },
                open.join("; ")
            )
        });
    }
    if let Some(tickets) = answer.got(tickets?, "the support tickets") {
        answer.say(if tickets.tickets.is_empty() {
            "There is no open support ticket.".to_owned()
        } else {
            let list: Vec<String> = tickets
                .tickets
                .iter()
                .map(|t| {
                    format!(
                        "ticket {} opened {}: [{}] {} ({} priority, {})",
                        t.id,
                        t.opened_at.date_naive(),
                        t.category,
                        t.subject,
                        t.priority,
                        t.status
                    )
                })
                .collect();
            format!(
                "{}: {}.",
                count(list.len(), "open support ticket", "open support tickets"),
                list.join("; ")
            )
        });
    }
    if let Some(diagnosis) = answer.got(diagnosis?, "the remote diagnosis") {
        let mut text = format!(
            "The remote diagnosis of subscription {} ({}, service status {}) concluded: {}.",
            diagnosis.subscription_id,
            diagnosis.product_name,
            diagnosis.service_status,
            diagnosis.conclusion.trim_end_matches('.')
        );
        if !diagnosis.recommended_actions.is_empty() {
            text.push_str(&format!(
                "\nRecommended actions:\n- {}",
                diagnosis.recommended_actions.join("\n- ")
            ));
        }
        answer.say(text);
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

/// The line a problem is about: the one named, else one in service of the kind the problem
/// concerns (phones for calls, lines for internet), preferring one whose service is not normal.
fn pick_line(
    subscriptions: &[Subscription],
    named: Option<i64>,
    problem: Problem,
) -> Option<&Subscription> {
    if let Some(id) = named {
        return subscriptions.iter().find(|s| s.id == id);
    }
    let kinds: &[&str] = match problem {
        Problem::Calls => &["mobile", "bundle"],
        Problem::Internet => &["internet", "bundle"],
        Problem::General => &["mobile", "internet", "bundle"],
    };
    let in_service = |s: &&Subscription| s.status != "cancelled" && s.product_category != "addon";
    let of_kind = |s: &&Subscription| kinds.contains(&s.product_category.as_str());
    let troubled = |s: &&Subscription| s.service_status != "normal";
    let candidates: Vec<&Subscription> = subscriptions.iter().filter(in_service).collect();
    candidates
        .iter()
        .find(|s| of_kind(s) && troubled(s))
        .or_else(|| candidates.iter().find(|s| of_kind(s)))
        .or_else(|| candidates.iter().find(|s| troubled(s)))
        .or_else(|| candidates.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: i64, category: &str, status: &str, service: &str) -> Subscription {
        Subscription {
            id,
            product_name: format!("Contoso {category}"),
            product_category: category.into(),
            status: status.into(),
            service_status: service.into(),
            roaming_enabled: false,
            speed_tier: None,
        }
    }

    #[test]
    fn the_line_of_the_problem_is_chosen() {
        let lines = [
            line(1, "mobile", "cancelled", "outage"),
            line(2, "addon", "active", "normal"),
            line(3, "mobile", "active", "normal"),
            line(4, "internet", "active", "slow"),
        ];
        let pick = |named, problem| pick_line(&lines, named, problem).map(|s| s.id);
        assert_eq!(pick(None, Problem::Calls), Some(3));
        assert_eq!(pick(None, Problem::Internet), Some(4));
        assert_eq!(pick(None, Problem::General), Some(4));
        assert_eq!(pick(Some(1), Problem::Internet), Some(1));
        assert_eq!(pick(Some(99), Problem::Internet), None);
        assert!(pick_line(&lines[..2], None, Problem::Calls).is_none());
    }
}
