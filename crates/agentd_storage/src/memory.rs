//! The in-memory backend: a map in the process, for tests and development. Its URLs are signed by agentd
//! ([`UrlSigner`]) and served by the HTTP layer.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use chrono::Utc;

use crate::error::{Result, StorageError};
use crate::{Blob, BlobStore, Provider, SignedUrl, UrlOptions, UrlSigner};
use agentd_ids::{KeyPrefix, ObjectKey};

/// Objects in a map; lost when the process ends.
#[derive(Debug)]
pub struct MemoryStore {
    objects: RwLock<BTreeMap<String, Blob>>,
    signer: UrlSigner,
}

impl MemoryStore {
    /// An empty store whose URLs `signer` signs.
    pub fn new(signer: UrlSigner) -> Self {
        Self {
            objects: RwLock::new(BTreeMap::new()),
            signer,
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for MemoryStore {
    fn provider(&self) -> Provider {
        Provider::Memory
    }

    #[tracing::instrument(level = "debug", name = "memory.put", skip(self, bytes), fields(key = %key, len = bytes.len()))]
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<()> {
        let blob = Blob {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_owned(), blob);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), fields(key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<Blob> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.get(key.as_str()).cloned().ok_or(StorageError::NotFound)
    }

    #[tracing::instrument(level = "debug", skip(self), fields(key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key.as_str());
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), fields(prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64> {
        let mut map = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let doomed: Vec<String> = map
            .range(prefix.as_str().to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            map.remove(k);
        }
        Ok(doomed.len() as u64)
    }

    #[tracing::instrument(level = "debug", skip(self, options), fields(key = %key))]
    async fn signed_url(&self, key: &ObjectKey, options: &UrlOptions) -> Result<SignedUrl> {
        Ok(self.signer.sign(key, options.clamped_ttl(), Utc::now()))
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn ensure_ready(&self) -> Result<()> {
        Ok(())
    }

    fn url_signer(&self) -> Option<&UrlSigner> {
        Some(&self.signer)
    }
}
