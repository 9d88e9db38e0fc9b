//! Searching the policy and procedure documents of the knowledge base ([`KnowledgeIndex`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Entry, ToolError,
    common::Result,
    entry, read_only,
    render::{Render, ln},
};
use crate::search::{KnowledgeIndex, SearchHit};

/// The longest search query, in characters: a topic, not a document.
const MAX_QUERY_CHARS: usize = 1000;

pub(super) fn entries() -> Vec<Entry> {
    vec![entry(
        "search_knowledge_base",
        "Search the policy and procedure documents (billing, roaming, returns, troubleshooting, ...). Returns the best topk (1-20, default 3) documents in full.",
        read_only(),
        |s, a: SearchKnowledgeBase, _| async move { search_knowledge_base(&s.index, a).await },
    )]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchKnowledgeBase {
    /// What to look for, in plain words (e.g. "data overage policy").
    pub query: String,
    /// How many documents to return (1-20, default 3).
    pub topk: Option<u32>,
}

pub async fn search_knowledge_base(
    index: &KnowledgeIndex,
    p: SearchKnowledgeBase,
) -> Result<SearchResults> {
    let query = p.query.trim();
    if query.is_empty() {
        return Err(ToolError::invalid(
            "query must not be empty; describe the topic in a few words",
        ));
    }
    if query.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(ToolError::invalid(format!(
            "query is longer than {MAX_QUERY_CHARS} characters; shorten it to the topic"
        )));
    }
    let topk = p.topk.unwrap_or(3);
    if !(1..=20).contains(&topk) {
        return Err(ToolError::invalid(format!(
            "topk must be between 1 and 20, got {topk}"
        )));
    }
    let results = index.search(query, topk as usize).await;
    Ok(SearchResults {
        query: query.to_owned(),
        mode: index.mode().to_owned(),
        results,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    pub query: String,
    /// `lexical` (BM25) or `hybrid` (BM25 fused with embeddings).
    pub mode: String,
    pub results: Vec<SearchHit>,
}

impl Render for SearchResults {
    fn render(&self) -> String {
        let mut out = String::new();
        if self.results.is_empty() {
            ln!(
                &mut out,
                "No knowledge-base document matches \"{}\".",
                self.query
            );
        }
        for hit in &self.results {
            ln!(
                &mut out,
                "## {} (document {}, {}, score {:.3})\n{}\n",
                hit.title,
                hit.id,
                hit.category,
                hit.score,
                hit.content
            );
        }
        out
    }
}
