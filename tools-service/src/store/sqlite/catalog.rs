//! The catalogue (products, promotions) and the knowledge base with its embeddings, in SQLite.

use async_trait::async_trait;

use super::{SqliteStore, rows::*};
use crate::{
    domain::*,
    store::{CatalogData, KnowledgeData, StoreResult},
};

#[async_trait]
impl CatalogData for SqliteStore {
    async fn promotions(&self) -> StoreResult<Vec<Promotion>> {
        let rows = sqlx::query(
            "SELECT id, name, description, product_id, min_loyalty_level, discount_percent, \
             start_date, end_date FROM promotions ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        all(rows, promotion)
    }

    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>> {
        let rows =
            sqlx::query("SELECT * FROM products WHERE ?1 IS NULL OR category = ?1 ORDER BY id")
                .bind(category.map(ProductCategory::as_str))
                .fetch_all(&self.pool)
                .await?;
        all(rows, product)
    }

    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        let row = sqlx::query("SELECT * FROM products WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(product).transpose()
    }
}

#[async_trait]
impl KnowledgeData for SqliteStore {
    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>> {
        let rows =
            sqlx::query("SELECT id, title, category, content FROM knowledge_documents ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        all(rows, knowledge_document)
    }

    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>> {
        let rows = sqlx::query(
            "SELECT document_id, vector FROM document_embeddings WHERE model = ? ORDER BY document_id",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            use sqlx::Row;
            let blob: Vec<u8> = row.try_get("vector")?;
            Ok((row.try_get("document_id")?, blob_to_vector(&blob)))
        })
    }

    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (document_id, vector) in embeddings {
            sqlx::query(
                "INSERT OR REPLACE INTO document_embeddings (document_id, model, vector) \
                 VALUES (?, ?, ?)",
            )
            .bind(document_id)
            .bind(model)
            .bind(vector_to_blob(vector))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
