//! Knowledge-base search: BM25 over the policy documents, optionally blended with embeddings.
//!
//! With no cloud account the ranking is lexical (the `bm25` crate: English stemming and stop
//! words, titles weighted above bodies). When an embedding model is configured, every document
//! is embedded once and the vectors are kept in the store; a query is then ranked both ways and
//! the two rankings are fused by reciprocal rank, so a document near the top of either list
//! rises. If the embedding call for a query fails, the lexical ranking answers alone, because a
//! degraded answer beats no answer for a customer-service agent.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bm25::{Language, SearchEngine, SearchEngineBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use shared::{
    azure::{AzureAuth, AzureAuthError},
    config::AzureDeployment,
};

use crate::{
    domain::KnowledgeDocument,
    store::{KnowledgeData, StoreResult},
};

/// How many times a title is repeated in the indexed text: titles name the topic precisely.
const TITLE_WEIGHT: usize = 3;
/// The usual constant of reciprocal rank fusion; damps the difference between top ranks.
const RRF_K: f32 = 60.0;

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    pub id: i64,
    pub title: String,
    pub category: String,
    /// Relevance; higher is better. Comparable only within one result list.
    pub score: f32,
    pub content: String,
}

/// Turns texts into vectors (Azure OpenAI in production, a scripted server in tests).
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Identifies the model, so vectors of different models are never mixed.
    fn model(&self) -> &str;
    async fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>>;
}

/// The searchable knowledge base, built once at start-up (and after re-seeding).
pub struct KnowledgeIndex {
    documents: HashMap<i64, KnowledgeDocument>,
    lexical: SearchEngine<i64>,
    semantic: Option<Semantic>,
}

struct Semantic {
    embedder: Arc<dyn Embedder>,
    vectors: Vec<(i64, Vec<f32>)>,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeIndex")
            .field("documents", &self.documents.len())
            .field("semantic", &self.semantic.is_some())
            .finish()
    }
}

impl KnowledgeIndex {
    /// Indexes the store's documents; with an embedder, embeds those not embedded yet.
    pub async fn build(
        store: &dyn KnowledgeData,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> StoreResult<Self> {
        let docs = store.knowledge_documents().await?;
        let mut index = Self::lexical(docs);
        if let Some(embedder) = embedder {
            match load_vectors(store, embedder.as_ref(), &index.documents).await {
                Ok(vectors) => {
                    index.semantic = Some(Semantic { embedder, vectors });
                }
                Err(error) => {
                    tracing::warn!(%error, "embedding the knowledge base failed; search stays lexical");
                }
            }
        }
        Ok(index)
    }

    /// An index with lexical ranking only.
    pub fn lexical(docs: Vec<KnowledgeDocument>) -> Self {
        let corpus = docs.iter().map(|d| {
            let title = format!("{} ", d.title).repeat(TITLE_WEIGHT);
            bm25::Document::new(d.id, format!("{title}\n{}", d.content))
        });
        let lexical = SearchEngineBuilder::<i64>::with_documents(Language::English, corpus).build();
        KnowledgeIndex {
            documents: docs.into_iter().map(|d| (d.id, d)).collect(),
            lexical,
            semantic: None,
        }
    }

    /// Whether embeddings take part in the ranking.
    pub fn mode(&self) -> &'static str {
        if self.semantic.is_some() {
            "hybrid"
        } else {
            "lexical"
        }
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// The `topk` best documents for `query`, best first.
    pub async fn search(&self, query: &str, topk: usize) -> Vec<SearchHit> {
        let lexical: Vec<(i64, f32)> = self
            .lexical
            .search(query, self.documents.len())
            .into_iter()
            .map(|r| (r.document.id, r.score))
            .collect();
        let ranked = match &self.semantic {
            None => lexical,
            Some(semantic) => match semantic.rank(query).await {
                Ok(vector_ranking) => fuse(&lexical, &vector_ranking),
                Err(error) => {
                    tracing::warn!(%error, "query embedding failed; answering with lexical ranking");
                    lexical
                }
            },
        };
        ranked
            .into_iter()
            .take(topk)
            .filter_map(|(id, score)| {
                let d = self.documents.get(&id)?;
                Some(SearchHit {
                    id,
                    title: d.title.clone(),
                    category: d.category.clone(),
                    score,
                    content: d.content.clone(),
                })
            })
            .collect()
    }
}

impl Semantic {
    async fn rank(&self, query: &str) -> anyhow::Result<Vec<(i64, f32)>> {
        let query = self
            .embedder
            .embed(&[query.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("embedding service returned no vector"))?;
        let mut ranked: Vec<(i64, f32)> = self
            .vectors
            .iter()
            .map(|(id, v)| (*id, cosine(&query, v)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(ranked)
    }
}

/// Embeds documents that have no stored vector for this model, stores them, returns all.
async fn load_vectors(
    store: &dyn KnowledgeData,
    embedder: &dyn Embedder,
    documents: &HashMap<i64, KnowledgeDocument>,
) -> anyhow::Result<Vec<(i64, Vec<f32>)>> {
    let mut vectors = store.document_embeddings(embedder.model()).await?;
    let mut missing: Vec<&KnowledgeDocument> = documents
        .values()
        .filter(|d| !vectors.iter().any(|(id, _)| *id == d.id))
        .collect();
    missing.sort_by_key(|d| d.id);
    if !missing.is_empty() {
        let texts: Vec<String> = missing
            .iter()
            .map(|d| format!("{}\n\n{}", d.title, d.content))
            .collect();
        let embedded = embedder.embed(&texts).await?;
        anyhow::ensure!(
            embedded.len() == missing.len(),
            "embedding service returned {} vectors for {} documents",
            embedded.len(),
            missing.len()
        );
        let fresh: Vec<(i64, Vec<f32>)> = missing.iter().map(|d| d.id).zip(embedded).collect();
        store
            .save_document_embeddings(embedder.model(), &fresh)
            .await?;
        tracing::info!(
            documents = fresh.len(),
            model = embedder.model(),
            "embedded knowledge documents"
        );
        vectors.extend(fresh);
    }
    vectors.retain(|(id, _)| documents.contains_key(id));
    Ok(vectors)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

/// Reciprocal rank fusion of two rankings (best first); documents absent from the lexical
/// ranking (no shared term) still count through their vector rank.
fn fuse(lexical: &[(i64, f32)], semantic: &[(i64, f32)]) -> Vec<(i64, f32)> {
    let mut scores: HashMap<i64, f32> = HashMap::new();
    for ranking in [lexical, semantic] {
        for (rank, (id, _)) in ranking.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(i64, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// Embeddings from an Azure OpenAI deployment (`/openai/deployments/{name}/embeddings`),
/// authenticated with its key or the service's Entra identity.
#[derive(Debug)]
pub struct AzureOpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    auth: AzureAuth,
    model: String,
}

impl AzureOpenAiEmbedder {
    pub fn new(deployment: &AzureDeployment) -> Result<Self, AzureAuthError> {
        Ok(AzureOpenAiEmbedder {
            http: reqwest::Client::new(),
            url: format!(
                "{}/openai/deployments/{}/embeddings?api-version={}",
                deployment.endpoint, deployment.deployment, deployment.api_version
            ),
            auth: AzureAuth::new(&deployment.auth)?,
            model: format!("azure:{}", deployment.deployment),
        })
    }
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[async_trait]
impl Embedder for AzureOpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let (name, value) = self.auth.header().await?;
        let response = self
            .http
            .post(&self.url)
            .header(name, value)
            .json(&serde_json::json!({ "input": texts }))
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("embedding request failed with HTTP {status}");
        }
        let mut body: EmbeddingResponse = response.json().await?;
        body.data.sort_by_key(|item| item.index);
        Ok(body.data.into_iter().map(|item| item.embedding).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::knowledge;

    async fn top(index: &KnowledgeIndex, query: &str) -> String {
        index.search(query, 3).await[0].title.clone()
    }

    #[tokio::test]
    async fn lexical_ranking_finds_the_right_policy() {
        let index = KnowledgeIndex::lexical(knowledge::documents());
        for (query, title) in [
            ("data overage policy", "Data Overage Policy"),
            (
                "how do I unlock my account",
                "Account Unlock Verification Procedure",
            ),
            ("refund for a returned phone", "Returns and Refunds Policy"),
            ("late fee on an overdue invoice", "Late Payment Fees"),
            (
                "SLA credit for an outage",
                "Service Reliability SLA Credit Matrix",
            ),
        ] {
            assert_eq!(top(&index, query).await, title, "{query}");
        }
        let roaming: Vec<String> = index
            .search("roaming", 2)
            .await
            .into_iter()
            .map(|h| h.title)
            .collect();
        assert!(roaming.iter().all(|t| t.contains("Roaming")), "{roaming:?}");
    }

    #[tokio::test]
    async fn different_queries_get_different_results() {
        let index = KnowledgeIndex::lexical(knowledge::documents());
        let a = index.search("slow internet speed", 3).await;
        let b = index.search("payment plan hardship", 3).await;
        assert_ne!(a, b);
        assert!(index.search("zzzz qqqq", 3).await.is_empty());
    }

    #[test]
    fn fusion_rewards_agreement() {
        let lexical = [(1, 9.0), (2, 5.0), (3, 1.0)];
        let semantic = [(2, 0.9), (3, 0.8), (1, 0.1)];
        let fused = fuse(&lexical, &semantic);
        assert_eq!(
            fused[0].0, 2,
            "second in one list and first in the other wins"
        );
        assert_eq!(fused.len(), 3);
    }
}
