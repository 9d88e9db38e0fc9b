//! The knowledge base's policy documents, compiled into the binary from `knowledge/*.md`.
//!
//! Each file starts with a small front matter block (`title:` and `category:` lines between
//! `---` lines) followed by the Markdown body. Adding a document is adding a file and a line to
//! [`SOURCES`].

use crate::domain::KnowledgeDocument;

const SOURCES: &[&str] = &[
    include_str!("knowledge/01-invoice-adjustment.md"),
    include_str!("knowledge/02-slow-internet-troubleshooting.md"),
    include_str!("knowledge/03-international-roaming-options.md"),
    include_str!("knowledge/04-account-unlock-verification.md"),
    include_str!("knowledge/05-promotion-eligibility-rules.md"),
    include_str!("knowledge/06-returns-and-refunds.md"),
    include_str!("knowledge/07-billing-dispute-escalation.md"),
    include_str!("knowledge/08-late-payment-fees.md"),
    include_str!("knowledge/09-call-dropping-troubleshooting.md"),
    include_str!("knowledge/10-sms-issues-troubleshooting.md"),
    include_str!("knowledge/11-data-overage-policy.md"),
    include_str!("knowledge/12-payment-failure-reinstatement.md"),
    include_str!("knowledge/13-financial-hardship-payment-plans.md"),
    include_str!("knowledge/14-dropped-call-investigation.md"),
    include_str!("knowledge/15-sla-credit-matrix.md"),
    include_str!("knowledge/16-autopay-discount-terms.md"),
    include_str!("knowledge/17-roaming-activation-cutoff.md"),
];

/// The documents, with ids in file order from 1.
pub fn documents() -> Vec<KnowledgeDocument> {
    SOURCES
        .iter()
        .zip(1..)
        .map(|(source, id)| parse(id, source).unwrap_or_else(|e| panic!("document {id}: {e}")))
        .collect()
}

fn parse(id: i64, source: &str) -> Result<KnowledgeDocument, String> {
    let rest = source.strip_prefix("---\n").ok_or("missing front matter")?;
    let (front, body) = rest
        .split_once("\n---\n")
        .ok_or("unterminated front matter")?;
    let field = |key: &str| {
        front
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .ok_or(format!("missing {key}"))
    };
    Ok(KnowledgeDocument {
        id,
        title: field("title")?,
        category: field("category")?,
        content: body.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_parses_with_a_unique_title() {
        let docs = documents();
        assert_eq!(docs.len(), 17);
        let mut titles: Vec<_> = docs.iter().map(|d| d.title.as_str()).collect();
        titles.sort_unstable();
        titles.dedup();
        assert_eq!(titles.len(), docs.len());
        assert!(docs.iter().all(|d| d.content.len() > 500));
    }

    #[test]
    fn scenario_facts_are_in_the_policies() {
        let text: String = documents().iter().map(|d| d.content.as_str()).collect();
        for fact in [
            "15 days",
            "7-10 business days",
            "30-day return window",
            "3 days",
        ] {
            assert!(text.contains(fact), "{fact}");
        }
    }
}
