//! The in-memory backend: a map in the process, for tests and development. Its URLs are signed by agentd
//! ([`UrlSigner`]) and served by the HTTP layer.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use chrono::Utc;

use crate::error::{Result, StorageError};
use crate::key::{KeyPrefix, ObjectKey};
use crate::{Blob, BlobStore, BoxFuture, Provider, SignedUrl, UrlOptions, UrlSigner};

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

impl BlobStore for MemoryStore {
    fn provider(&self) -> Provider {
        Provider::Memory
    }

    fn put<'a>(
        &'a self,
        key: &'a ObjectKey,
        bytes: Bytes,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        tracing::debug!(key = %key, len = bytes.len(), "memory.put");
        let blob = Blob {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_owned(), blob);
        Box::pin(async { Ok(()) })
    }

    #[tracing::instrument(level = "debug", skip(self), fields(key = %key))]
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Blob>> {
        let found = self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_str())
            .cloned();
        Box::pin(async move { found.ok_or(StorageError::NotFound) })
    }

    #[tracing::instrument(level = "debug", skip(self), fields(key = %key))]
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key.as_str());
        Box::pin(async { Ok(()) })
    }

    #[tracing::instrument(level = "debug", skip(self), fields(prefix = %prefix))]
    fn delete_prefix<'a>(&'a self, prefix: &'a KeyPrefix) -> BoxFuture<'a, Result<u64>> {
        let mut map = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let doomed: Vec<String> = map
            .range(prefix.as_str().to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            map.remove(k);
        }
        let n = doomed.len() as u64;
        Box::pin(async move { Ok(n) })
    }

    #[tracing::instrument(level = "debug", skip(self, options), fields(key = %key))]
    fn signed_url<'a>(
        &'a self,
        key: &'a ObjectKey,
        options: &'a UrlOptions,
    ) -> BoxFuture<'a, Result<SignedUrl>> {
        let url = self.signer.sign(key, options.clamped_ttl(), Utc::now());
        Box::pin(async move { Ok(url) })
    }

    fn check(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn ensure_ready(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn url_signer(&self) -> Option<&UrlSigner> {
        Some(&self.signer)
    }
}
