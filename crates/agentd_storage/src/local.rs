//! The local-disk backend: objects are files under a root directory (default `var/objects`), written atomically
//! (temporary file, fsync, rename). The content type sits in a sidecar file `{object}.meta`, which can never be
//! an object key because object file names contain exactly one dot. URLs are signed by agentd ([`UrlSigner`]).
//!
//! Keys are validated ([`ObjectKey`]), so a key can never leave the root directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::Utc;
use tokio::io::AsyncWriteExt;

use crate::error::{Result, StorageError};
use crate::{Blob, BlobStore, BlobStream, Provider, SignedUrl, UrlOptions, UrlSigner};
use agentd_ids::{KeyPrefix, ObjectKey};

const META_SUFFIX: &str = ".meta";
const TMP_DIR: &str = ".tmp";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Objects as files under a root directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    signer: UrlSigner,
    counter: AtomicU64,
}

impl LocalStore {
    /// A store under `root`; call [`BlobStore::ensure_ready`] to create the directory.
    pub fn new(root: impl Into<PathBuf>, signer: UrlSigner) -> Self {
        Self {
            root: root.into(),
            signer,
            counter: AtomicU64::new(0),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn meta_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(format!("{}{META_SUFFIX}", key.as_str()))
    }

    fn temp_path(&self) -> Result<PathBuf> {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd)
            .map_err(|_| StorageError::Other("the system random generator failed".to_owned()))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}-{}", std::process::id(), hex::encode(rnd))))
    }

    /// Writes `bytes` to a temporary file, flushes it to disk and renames it over `target`.
    async fn write_atomic(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_path()?;
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, target).await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_error("write", e));
        }
        Ok(())
    }
}

/// Counts object files (not sidecars) below `dir`.
async fn count_objects(dir: PathBuf) -> std::io::Result<u64> {
    let mut stack = vec![dir];
    let mut n = 0;
    while let Some(dir) = stack.pop() {
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_type().await?.is_dir() {
                stack.push(entry.path());
            } else if !entry.file_name().to_string_lossy().ends_with(META_SUFFIX) {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn io_error(what: &str, e: std::io::Error) -> StorageError {
    StorageError::Other(format!("local storage {what} failed: {e}"))
}

#[async_trait::async_trait]
impl BlobStore for LocalStore {
    fn provider(&self) -> Provider {
        Provider::Filesystem
    }

    #[tracing::instrument(level = "debug", name = "local.put", skip(self, bytes), fields(key = %key, len = bytes.len()))]
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<()> {
        let data = self.data_path(key);
        if let Some(dir) = data.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error("create directory", e))?;
        }
        // The sidecar first: the data rename is the commit point.
        self.write_atomic(&self.meta_path(key), content_type.as_bytes())
            .await?;
        self.write_atomic(&data, &bytes).await
    }

    #[tracing::instrument(level = "debug", name = "local.get", skip(self), fields(key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<Blob> {
        let bytes = match tokio::fs::read(self.data_path(key)).await {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(io_error("read", e)),
        };
        let content_type = match tokio::fs::read_to_string(self.meta_path(key)).await {
            Ok(ct) => ct,
            Err(_) => DEFAULT_CONTENT_TYPE.to_owned(),
        };
        Ok(Blob { bytes, content_type })
    }

    #[tracing::instrument(level = "debug", name = "local.get_stream", skip(self), fields(key = %key))]
    async fn get_stream(&self, key: &ObjectKey) -> Result<BlobStream> {
        // An open file keeps its bytes even if the object is replaced (renamed over) or deleted meanwhile.
        let file = match tokio::fs::File::open(self.data_path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(io_error("open", e)),
        };
        let len = file.metadata().await.ok().map(|m| m.len());
        let content_type = match tokio::fs::read_to_string(self.meta_path(key)).await {
            Ok(ct) => ct,
            Err(_) => DEFAULT_CONTENT_TYPE.to_owned(),
        };
        Ok(BlobStream {
            len,
            content_type,
            body: Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)),
        })
    }

    #[tracing::instrument(level = "debug", name = "local.delete", skip(self), fields(key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        for path in [self.data_path(key), self.meta_path(key)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("delete", e)),
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "local.delete_prefix", skip(self), fields(prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64> {
        let dir = self.root.join(prefix.as_str());
        let count = match count_objects(dir.clone()).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("list", e)),
        };
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error("delete", e)),
        }
    }

    async fn signed_url(&self, key: &ObjectKey, options: &UrlOptions) -> Result<SignedUrl> {
        Ok(self.signer.sign(key, options.clamped_ttl(), Utc::now()))
    }

    async fn check(&self) -> Result<()> {
        match tokio::fs::metadata(self.root.join(TMP_DIR)).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StorageError::Config(
                "the storage root is not a directory".to_owned(),
            )),
            Err(e) => Err(StorageError::Unavailable(format!(
                "storage root not usable: {}",
                e.kind()
            ))),
        }
    }

    #[tracing::instrument(level = "debug", name = "local.ensure_ready", skip(self), fields(root = %self.root.display()))]
    async fn ensure_ready(&self) -> Result<()> {
        tokio::fs::create_dir_all(self.root.join(TMP_DIR))
            .await
            .map_err(|e| StorageError::Config(format!("cannot create the storage root: {}", e.kind())))?;
        self.check().await
    }

    fn url_signer(&self) -> Option<&UrlSigner> {
        Some(&self.signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_ids::TenantId;

    #[tokio::test]
    async fn writes_atomically_and_keeps_sidecars_out_of_listings() {
        let dir = tempfile::tempdir().unwrap();
        let signer = UrlSigner::random("http://127.0.0.1:1", "/v1/files").unwrap();
        let store = LocalStore::new(dir.path().join("objects"), signer);
        store.ensure_ready().await.unwrap();
        let t = TenantId::parse("t").unwrap();
        let key = ObjectKey::in_conversation(&t, "c", "o", "png").unwrap();
        store
            .put(&key, Bytes::from_static(b"png"), "image/png")
            .await
            .unwrap();
        let file = store.root().join("tenants/t/conversations/c/o.png");
        assert_eq!(std::fs::read(&file).unwrap(), b"png");
        assert_eq!(
            std::fs::read_to_string(file.with_extension("png.meta")).unwrap(),
            "image/png"
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(store.root().join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(store.delete_prefix(&KeyPrefix::tenant(&t)).await.unwrap(), 1);
        assert!(!store.root().join("tenants/t").exists());
    }
}
