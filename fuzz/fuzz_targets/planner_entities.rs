//! The offline planner's reading of a question: entity extraction (customer, subscription and
//! invoice ids, amounts, dates) and intent recognition, on any text a caller can send an expert.
//!
//! Checks, besides no panic: every id found is written in the question (its digits, once the
//! thousands separators are dropped), amounts are never negative, every date found is written in
//! the question as `YYYY-MM-DD`, and intent recognition and the unlock test answer for every
//! expert domain.
#![no_main]

use agent_service::{
    experts::Domain,
    planner::{entities, intent},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A question reaches the planner as a JSON string: always UTF-8.
    let Ok(question) = std::str::from_utf8(data) else {
        return;
    };
    let found = entities::extract(question);

    let digits: String = question.chars().filter(|c| *c != ',').collect();
    for id in [found.customer_id, found.subscription_id, found.invoice_id]
        .into_iter()
        .flatten()
    {
        assert!(id >= 0, "negative id {id} from {question:?}");
        assert!(
            digits.contains(&id.to_string()),
            "id {id} is not written in {question:?}"
        );
    }
    for amount in &found.amounts {
        assert!(*amount >= 0, "negative amount {amount} from {question:?}");
    }
    for date in &found.dates {
        let written = date.format("%Y-%m-%d").to_string();
        assert!(
            question.contains(&written),
            "date {written} is not written in {question:?}"
        );
    }

    let mentions_amount = !found.amounts.is_empty();
    for domain in [Domain::Billing, Domain::Account, Domain::Product] {
        match intent::recognise(domain, question, mentions_amount) {
            intent::Recognised::Intent(i) => assert!(i.domains().contains(&domain)),
            intent::Recognised::Elsewhere(i) => assert!(!i.domains().contains(&domain)),
            intent::Recognised::Unknown => {}
        }
    }
    let _ = intent::asks_to_unlock(question);
});
