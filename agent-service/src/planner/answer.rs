//! The answer the planner writes: sentences of what it found, then what it could not check and
//! why, then the change it wants confirmed (if any), then the statement that no language model
//! wrote it.

use serde_json::json;

use crate::agent::{PendingWrite, Status};

use super::{
    OFFLINE_NOTE,
    facts::Search,
    probe::{Found, Probe, Stop},
};

/// How a turn of the planner ended, before it is made an [`crate::agent::Turn`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: Status,
    pub text: String,
    /// With status `needs_confirmation`: the write waiting for the person's confirmation.
    pub pending: Option<PendingWrite>,
}

impl Reply {
    /// A reply that is one statement (a question for the person, or why it cannot help).
    pub fn plain(status: Status, text: impl Into<String>) -> Reply {
        Reply {
            status,
            text: format!("{}\n\n{OFFLINE_NOTE}", text.into()),
            pending: None,
        }
    }
}

/// An answer being written.
#[derive(Debug, Default)]
pub struct Answer {
    paragraphs: Vec<String>,
    /// What could not be checked, and why.
    gaps: Vec<String>,
    /// A change to ask the person to confirm; the answer ends `needs_confirmation`.
    pending: Option<PendingWrite>,
}

impl Answer {
    pub fn say(&mut self, paragraph: impl Into<String>) {
        self.paragraphs.push(paragraph.into());
    }

    /// The value found, or `None` with the reason noted as something not checked.
    pub fn got<T>(&mut self, found: Found<T>, what: &str) -> Option<T> {
        match found {
            Found::Got(value) => Some(value),
            Found::Missing(why) => {
                self.gaps.push(format!("I could not check {what}: {why}."));
                None
            }
        }
    }

    /// Ends the answer asking the person to confirm `pending` (which is not made).
    pub fn ask_to_confirm(&mut self, pending: PendingWrite) {
        self.pending = Some(pending);
    }

    /// Adds what `other` found and could not check after what this one has.
    pub fn absorb(&mut self, other: Answer) {
        self.paragraphs.extend(other.paragraphs);
        self.gaps.extend(other.gaps);
        if other.pending.is_some() {
            self.pending = other.pending;
        }
    }

    pub fn finish(self) -> Reply {
        let mut text = self.paragraphs.join("\n\n");
        let mut push = |part: &str| {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(part);
        };
        if !self.gaps.is_empty() {
            push(&self.gaps.join("\n"));
        }
        let Some(pending) = self.pending else {
            return Reply::plain(Status::Done, text);
        };
        push(&pending.question());
        Reply {
            pending: Some(pending),
            ..Reply::plain(Status::NeedsConfirmation, text)
        }
    }
}

/// Searches the knowledge base for `query` and cites the `topk` best documents with a few of
/// their stated facts.
pub async fn cite_policy(
    probe: &Probe<'_>,
    answer: &mut Answer,
    query: &str,
    topk: u32,
) -> Result<(), Stop> {
    let found = probe
        .call::<Search>(
            "search_knowledge_base",
            json!({"query": query, "topk": topk}),
        )
        .await?;
    if let Some(search) = answer.got(found, "the knowledge base") {
        answer.say(policy_paragraph(&search));
    }
    Ok(())
}

/// "Policy: <title>: <fact>; <fact>." for each document found.
pub fn policy_paragraph(search: &Search) -> String {
    if search.results.is_empty() {
        return "The knowledge base has no policy document on this.".to_owned();
    }
    search
        .results
        .iter()
        .map(|doc| {
            let facts = doc.key_facts(3);
            if facts.is_empty() {
                format!("Policy \"{}\".", doc.title)
            } else {
                format!("Policy \"{}\": {}.", doc.title, facts.join("; "))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "1 thing" / "2 things".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::facts::Document;

    #[test]
    fn an_answer_lists_findings_then_gaps_then_the_offline_note() {
        let mut answer = Answer::default();
        answer.say("Invoice 7 is $150.00.");
        assert_eq!(answer.got(Found::Got(3), "usage"), Some(3));
        assert_eq!(
            answer.got::<i32>(Found::Missing("not allowed".into()), "the security logs"),
            None
        );
        let reply = answer.finish();
        assert_eq!(reply.status, Status::Done);
        assert_eq!(
            reply.text,
            format!(
                "Invoice 7 is $150.00.\n\nI could not check the security logs: not allowed.\n\n{OFFLINE_NOTE}"
            )
        );
    }

    #[test]
    fn an_answer_with_a_change_to_confirm_asks_for_it_last() {
        let mut answer = Answer::default();
        answer.say("The account of customer 254 is locked.");
        answer.ask_to_confirm(PendingWrite::new(
            "unlock_account",
            json!({"customer_id": 254})
                .as_object()
                .cloned()
                .expect("object"),
        ));
        let reply = answer.finish();
        assert_eq!(reply.status, Status::NeedsConfirmation);
        assert_eq!(
            reply.pending.as_ref().map(|p| p.action.as_str()),
            Some("Unlock the online account of customer 254")
        );
        assert!(
            reply
                .text
                .starts_with("The account of customer 254 is locked.\n\nI need your confirmation"),
            "{}",
            reply.text
        );
        assert!(reply.text.ends_with(OFFLINE_NOTE));
    }

    #[test]
    fn policies_are_cited_by_title_with_their_facts() {
        let search = Search {
            results: vec![Document {
                title: "Data Overage Policy".into(),
                content: "- **$7.50 per additional GB**.\nNo facts here.".into(),
            }],
        };
        assert_eq!(
            policy_paragraph(&search),
            "Policy \"Data Overage Policy\": $7.50 per additional GB."
        );
        assert!(policy_paragraph(&Search { results: vec![] }).contains("no policy"));
        assert_eq!(count(1, "ticket", "tickets"), "1 ticket");
        assert_eq!(count(3, "ticket", "tickets"), "3 tickets");
    }
}
