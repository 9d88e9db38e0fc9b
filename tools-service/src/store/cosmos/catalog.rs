//! The catalogue (products, promotions) and the knowledge base with its embeddings, in Cosmos
//! DB: each kind is one partition of the `catalog` container, read by point reads and
//! single-partition queries.

use async_trait::async_trait;
use azure_data_cosmos::FeedScope;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{CosmosStore, docs::*, load, query, read, sql};
use crate::{
    domain::*,
    store::{CatalogData, KnowledgeData, StoreResult},
};

impl CosmosStore {
    /// Every record of one catalogue partition matching `filter` (more of the `WHERE` clause),
    /// by id.
    async fn catalog_list<T: DeserializeOwned + Send + 'static>(
        &self,
        pk: String,
        filter: &str,
        parameters: &[(&str, Value)],
    ) -> StoreResult<Vec<T>> {
        let text = format!("SELECT VALUE c.data FROM c WHERE c.pk = @pk {filter} ORDER BY c.n");
        let mut all = vec![("@pk", Value::from(pk.clone()))];
        all.extend_from_slice(parameters);
        Ok(query(
            &self.catalog,
            sql(&text, &all)?,
            FeedScope::partition(pk),
            "list catalogue",
        )
        .await?)
    }
}

#[async_trait]
impl CatalogData for CosmosStore {
    async fn promotions(&self) -> StoreResult<Vec<Promotion>> {
        self.catalog_list(PROMOTION.to_owned(), "", &[]).await
    }

    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>> {
        match category {
            None => self.catalog_list(PRODUCT.to_owned(), "", &[]).await,
            Some(category) => {
                self.catalog_list(
                    PRODUCT.to_owned(),
                    "AND c.data.category = @category",
                    &[("@category", category.as_str().into())],
                )
                .await
            }
        }
    }

    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        let found =
            read::<Doc<Product>>(&self.catalog, PRODUCT, &item_id(PRODUCT, id), PRODUCT).await?;
        Ok(found.map(|(doc, _)| doc.data))
    }
}

#[async_trait]
impl KnowledgeData for CosmosStore {
    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>> {
        self.catalog_list(KNOWLEDGE.to_owned(), "", &[]).await
    }

    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>> {
        let stored: Vec<EmbeddingBody> = self
            .catalog_list(embedding_partition(model), "", &[])
            .await?;
        Ok(stored
            .into_iter()
            .map(|e| (e.document_id, e.vector))
            .collect())
    }

    /// Upserts, concurrently: unlike SQLite's transaction, an error can leave some saved, which
    /// only means fewer to compute again.
    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()> {
        let pk = embedding_partition(model);
        let docs = embeddings
            .iter()
            .map(|(document_id, vector)| {
                Doc::new(
                    EMBEDDING,
                    pk.clone(),
                    *document_id,
                    None,
                    EmbeddingBody {
                        document_id: *document_id,
                        vector: vector.clone(),
                    },
                )
            })
            .collect();
        load::upsert_all(&self.catalog, docs).await
    }
}
