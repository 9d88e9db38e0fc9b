//! The offline planner: how an expert answers when no language model is configured.
//!
//! It recognises the domain intent of the question from keywords ([`intent`]) and the entities
//! it names ([`entities`]: customer, subscription and invoice ids, amounts, dates), runs the
//! investigation that intent calls for through the same MCP tools the model loop uses, with the
//! caller's authority and only the tools the caller may call within the expert's subset
//! ([`probe`]), independent calls in parallel, and writes a factual answer from the results
//! ([`billing`], [`account`], [`product`]): exact amounts, dates and statuses, and the matching
//! policy of the knowledge base. Nothing is canned per customer: a different customer in the
//! same situation gets the same kind of answer with their own facts.
//!
//! A change the investigation calls for (unlocking an account the person asked to have unlocked)
//! is never made in the same turn: the answer ends `needs_confirmation` with the change described
//! ([`crate::agent::PendingWrite`]), as the model loop's does, and [`confirmed`] makes it once the
//! person has confirmed it.
//!
//! Every answer says it was written without a language model. A question the planner does not
//! recognise, or one for another expert, gets a plain statement of what it can answer; a
//! question that needs a customer and names none gets `needs_input` asking for the id.
//!
//! [`answer`] has the signature of [`crate::agent::run`], so the server calls one or the other
//! with the same arguments and reports the same [`Turn`].

mod account;
mod answer;
mod billing;
pub mod entities;
mod facts;
pub mod intent;
mod probe;
mod product;

use std::sync::Mutex;

use serde_json::Value;

use crate::{
    agent::{Confirmed, Ended, Limits, Status, ToolCallRecord, Turn},
    experts::{Domain, EXPERTS, Expert},
    model::Message,
};

use answer::{Answer, Reply};
use entities::Entities;
use intent::{Intent, Recognised};
use probe::{Probe, Stop};

/// Ends every answer of the planner, so nobody takes it for a model's.
pub const OFFLINE_NOTE: &str =
    "(Answered by the offline planner: no language model is configured.)";

/// What the planner runs against: [`crate::agent::Work`], the model loop's context without the
/// model.
pub use crate::agent::Work as Context;

/// Answers `question` as `expert` without a model. `history` (earlier turns of the
/// conversation) supplies the customer id when the question itself does not name one; only
/// `limits.time_budget` applies (the planner makes no model requests, so `steps` is 0).
pub async fn answer(
    ctx: &Context<'_>,
    expert: &Expert,
    history: &[Message],
    question: &str,
    limits: Limits,
) -> Turn {
    let mut entities = entities::extract(question);
    if entities.customer_id.is_none() {
        entities.customer_id = earlier_customer(history);
    }
    let recognised = intent::recognise(expert.domain, question, !entities.amounts.is_empty());
    let intent = match recognised {
        Recognised::Intent(intent) => intent,
        Recognised::Elsewhere(intent) => return plain(Status::Done, elsewhere(expert, intent)),
        Recognised::Unknown => return plain(Status::Done, cannot_help(expert)),
    };
    let customer = match (entities.customer_id, intent) {
        (Some(id), _) => Some(id),
        (None, Intent::Plans) => None,
        (None, _) => return plain(Status::NeedsInput, ask_for_customer(intent)),
    };
    let unlock_asked = intent::asks_to_unlock(question);

    let records = Mutex::new(Vec::new());
    let work = investigate(
        ctx,
        expert,
        intent,
        customer,
        &entities,
        unlock_asked,
        &records,
    );
    let (reply, error) = match ctx.bounded(limits.time_budget, work).await {
        Ended::Finished(Ok(reply)) => (reply, None),
        Ended::Finished(Err(stop)) => (failed(&stop), Some(stop.to_string())),
        Ended::Cancelled => (failed(&Stop::Cancelled), Some(Stop::Cancelled.to_string())),
        Ended::OutOfTime => {
            let why = format!("the planner did not finish within {:?}", limits.time_budget);
            (
                Reply::plain(
                    Status::Error,
                    "I could not finish looking into this in time. Please try again.",
                ),
                Some(why),
            )
        }
    };
    let tool_calls = std::mem::take(&mut *probe::lock(&records));
    // The intent and counts only: the question and the results hold personal data.
    tracing::info!(
        domain = expert.domain.as_str(),
        intent = ?intent,
        status = ?reply.status,
        tool_calls = tool_calls.len(),
        "planner answered"
    );
    Turn {
        status: reply.status,
        answer: reply.text,
        tool_calls,
        error,
        steps: 0,
        pending: reply.pending,
    }
}

/// Makes the change the person confirmed (`confirmed`, proposed by an earlier answer of
/// `expert`) and says how it went.
pub async fn confirmed(
    ctx: &Context<'_>,
    expert: &Expert,
    confirmed: Confirmed<'_>,
    limits: Limits,
) -> Turn {
    let records = Mutex::new(Vec::new());
    let work = async {
        let probe = Probe::new(
            ctx.tools,
            expert.tools,
            ctx.progress.clone(),
            ctx.cancel.clone(),
            &records,
        )
        .await?;
        let found = probe
            .call_confirmed::<Value>(confirmed.tool, Value::Object(confirmed.arguments.clone()))
            .await?;
        let mut answer = Answer::default();
        if let Some(result) = answer.got(found, &format!("that {}", confirmed.action)) {
            answer.say(account::made(confirmed.tool, confirmed.action, &result));
        }
        Ok(answer.finish())
    };
    let (reply, error) = match ctx.bounded(limits.time_budget, work).await {
        Ended::Finished(Ok(reply)) => (reply, None),
        Ended::Finished(Err(stop)) => (failed(&stop), Some(stop.to_string())),
        Ended::Cancelled => (failed(&Stop::Cancelled), Some(Stop::Cancelled.to_string())),
        Ended::OutOfTime => (
            Reply::plain(
                Status::Error,
                "I could not finish the change in time; check whether it was made before \
                 asking again.",
            ),
            Some(format!(
                "the planner did not finish within {:?}",
                limits.time_budget
            )),
        ),
    };
    let tool_calls = std::mem::take(&mut *probe::lock(&records));
    tracing::info!(
        domain = expert.domain.as_str(),
        tool = confirmed.tool,
        status = ?reply.status,
        "planner made a confirmed change"
    );
    Turn {
        status: reply.status,
        answer: reply.text,
        tool_calls,
        error,
        steps: 0,
        pending: None,
    }
}

/// Runs the investigation of `intent`, recording the calls made in `records` as they end.
async fn investigate(
    ctx: &Context<'_>,
    expert: &Expert,
    intent: Intent,
    customer: Option<i64>,
    entities: &Entities,
    unlock_asked: bool,
    records: &Mutex<Vec<ToolCallRecord>>,
) -> Result<Reply, Stop> {
    let probe = Probe::new(
        ctx.tools,
        expert.tools,
        ctx.progress.clone(),
        ctx.cancel.clone(),
        records,
    )
    .await?;
    run(&probe, intent, customer, entities, unlock_asked).await
}

async fn run(
    probe: &Probe<'_>,
    intent: Intent,
    customer: Option<i64>,
    entities: &Entities,
    unlock_asked: bool,
) -> Result<Reply, Stop> {
    let Some(customer) = customer else {
        return product::plans(probe, None).await;
    };
    match intent {
        Intent::Bill => billing::explain_bill(probe, customer, entities).await,
        Intent::Overdue => billing::overdue(probe, customer).await,
        Intent::Payments => billing::payments(probe, customer, entities).await,
        Intent::Return => product::returns(probe, customer).await,
        Intent::Locked => account::locked(probe, customer, unlock_asked).await,
        Intent::Service(problem) => {
            account::service(probe, customer, entities.subscription_id, problem).await
        }
        Intent::Promotions => product::promotions(probe, customer).await,
        Intent::Roaming => product::roaming(probe, customer).await,
        Intent::Plans => product::plans(probe, Some(customer)).await,
    }
}

/// The customer id named in the person's earlier messages, latest first.
fn earlier_customer(history: &[Message]) -> Option<i64> {
    history.iter().rev().find_map(|message| match message {
        Message::User(text) => entities::extract(text).customer_id,
        _ => None,
    })
}

fn plain(status: Status, text: String) -> Turn {
    Turn::ended(status, Reply::plain(status, text).text, None)
}

fn failed(stop: &Stop) -> Reply {
    let text = match stop {
        Stop::Cancelled => "The request was cancelled.",
        Stop::Tools(_) | Stop::Upstream(_) => {
            "I could not work on your question because a service I depend on failed. Please \
             try again in a moment."
        }
    };
    Reply::plain(Status::Error, text)
}

fn ask_for_customer(intent: Intent) -> String {
    format!(
        "Which customer is this about? Please give the customer id (for example \"I am \
         customer 1042\") so I can look into {}.",
        intent.topic()
    )
}

/// What the expert of `domain` can look into, as one sentence.
fn repertoire(domain: Domain) -> String {
    let topics: Vec<&str> = intent::answered_by(domain)
        .into_iter()
        .map(Intent::topic)
        .collect();
    format!(
        "As the {} expert I can look into {}.",
        domain.as_str(),
        topics.join("; ")
    )
}

fn elsewhere(expert: &Expert, intent: Intent) -> String {
    let other = EXPERTS
        .into_iter()
        .find(|e| intent.domains().contains(&e.domain));
    let whom = other.map_or_else(
        || "another expert".to_owned(),
        |e| format!("the {} expert ({})", e.domain.as_str(), e.tool),
    );
    format!(
        "I cannot help with that here: it looks like a question about {}, which {whom} \
         answers. {}",
        intent.topic(),
        repertoire(expert.domain)
    )
}

fn cannot_help(expert: &Expert) -> String {
    format!(
        "I cannot help with that question: I did not recognise what it is about. {} Ask about \
         one of these and give your customer id, or ask the operator to configure a language \
         model for free-form questions.",
        repertoire(expert.domain)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experts::{ACCOUNT, BILLING};

    #[test]
    fn the_customer_comes_from_the_latest_earlier_message_that_names_one() {
        let history = [
            Message::User("I am customer 251".into()),
            Message::Assistant {
                text: Some("customer 999".into()),
                tool_calls: vec![],
            },
            Message::User("and customer 252 too".into()),
            Message::User("thanks".into()),
        ];
        assert_eq!(earlier_customer(&history), Some(252));
        assert_eq!(earlier_customer(&history[..2]), Some(251));
        assert_eq!(earlier_customer(&[]), None);
    }

    #[test]
    fn plain_answers_name_what_the_expert_can_do_and_the_offline_planner() {
        let turn = plain(Status::Done, elsewhere(&BILLING, Intent::Locked));
        assert!(
            turn.answer.contains("ask_account_expert"),
            "{}",
            turn.answer
        );
        assert!(turn.answer.contains("billing expert"), "{}", turn.answer);
        assert!(turn.answer.ends_with(OFFLINE_NOTE));
        let unknown = cannot_help(&ACCOUNT);
        assert!(unknown.contains("locked accounts"), "{unknown}");
        assert!(unknown.contains("language model"), "{unknown}");
        assert!(ask_for_customer(Intent::Bill).contains("customer id"));
    }
}
