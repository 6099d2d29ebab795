//! Image ingestion: the base64 length is checked against `IMAGE_OUTPUT_MAX_MB` before decoding, the decode is
//! strict, the decoded size is re-checked, the real format is read from the magic bytes (PNG, JPEG, WebP; all
//! else refused) and gives the MIME type and extension, then sha256 → store under a tenant-scoped key →
//! metadata row. A failure after the object was written removes it; a failure before leaves no row.

use agentd_db::{AttachmentMeta, NewObject, Scoped};
use agentd_storage::{BlobStore, ObjectKey, TenantId};
use base64::Engine as _;
use bytes::Bytes;
use sha2::Digest as _;
use std::sync::Arc;
use uuid::Uuid;

/// Why an image was not stored: a stable code for the `image.failed` event and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFailure {
    pub code: &'static str,
    pub reason: String,
}

impl IngestFailure {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// What the client is told.
    pub fn message(&self) -> &'static str {
        match self.code {
            "image_too_large" => "The image is over the size limit (IMAGE_OUTPUT_MAX_MB) and was not stored.",
            "invalid_image" => "The image data was not valid base64 and was not stored.",
            "unsupported_format" => "The image is not PNG, JPEG or WebP and was not stored.",
            _ => "The image could not be stored; the reply goes on without it.",
        }
    }
}

/// A real image format, read from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    /// The format of `bytes` by magic number, if it is one we accept.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }
}

/// Checked image bytes.
pub(crate) struct Checked {
    pub bytes: Bytes,
    pub format: ImageFormat,
    pub sha256: String,
}

/// Length pre-check, strict decode, size re-check, sniff, digest. CPU-bound: run it off the async workers.
pub(crate) fn check_b64(b64: &str, max_bytes: u64) -> Result<Checked, IngestFailure> {
    // Base64 carries 3 bytes per 4 characters: refuse before allocating anything for an oversize image.
    let max_chars = max_bytes.div_ceil(3) * 4;
    if b64.len() as u64 > max_chars {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} base64 characters, limit {max_chars}", b64.len()),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| IngestFailure::new("invalid_image", format!("base64: {e}")))?;
    check_bytes(Bytes::from(bytes), max_bytes)
}

/// Size check, sniff and digest of raw bytes (uploads).
pub(crate) fn check_bytes(bytes: Bytes, max_bytes: u64) -> Result<Checked, IngestFailure> {
    if bytes.len() as u64 > max_bytes {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} bytes, limit {max_bytes}", bytes.len()),
        ));
    }
    let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
        IngestFailure::new("unsupported_format", "not PNG, JPEG or WebP by its magic bytes")
    })?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    Ok(Checked {
        bytes,
        format,
        sha256,
    })
}

/// Where and how an image is stored.
pub(crate) struct Placement<'a> {
    pub tenant: &'a str,
    pub conversation: Option<Uuid>,
    pub tool_call_id: Option<&'a str>,
    pub kind: &'static str,
}

/// Stores checked bytes and records them; the object is removed again if the row cannot be written.
pub(crate) async fn store(
    store: &Arc<dyn BlobStore>,
    scoped: Scoped<'_>,
    at: Placement<'_>,
    checked: Checked,
) -> Result<AttachmentMeta, IngestFailure> {
    let object_id = Uuid::now_v7();
    let tenant = TenantId::new(at.tenant).map_err(|e| IngestFailure::new("storage_failed", e.to_string()))?;
    let oid = object_id.simple().to_string();
    let key = match at.conversation {
        Some(c) => ObjectKey::in_conversation(&tenant, &c.simple().to_string(), &oid, checked.format.ext()),
        None => ObjectKey::upload(&tenant, &oid, checked.format.ext()),
    }
    .map_err(|e| IngestFailure::new("storage_failed", e.to_string()))?;
    let stem = at.tool_call_id.map_or_else(|| oid.clone(), str::to_owned);
    let filename = format!("image-{stem}.{}", checked.format.ext());
    let size = checked.bytes.len() as i64;
    store
        .put(&key, checked.bytes, checked.format.mime())
        .await
        .map_err(|e| IngestFailure::new("storage_failed", format!("put {}: {e}", key.as_str())))?;
    let row = NewObject {
        id: object_id,
        object_key: key.as_str().to_owned(),
        conversation_id: at.conversation,
        tool_call_id: at.tool_call_id.map(str::to_owned),
        kind: at.kind,
        filename: filename.clone(),
        mime_type: checked.format.mime().to_owned(),
        size_bytes: size,
        sha256: checked.sha256,
    };
    if let Err(e) = scoped.insert_object(&row).await {
        if let Err(del) = store.delete(&key).await {
            tracing::error!(key = key.as_str(), error = %del, "could not remove an object whose row failed; it is orphaned");
        }
        return Err(IngestFailure::new("storage_failed", format!("metadata row: {e}")));
    }
    Ok(AttachmentMeta {
        object_id,
        object_key: key.as_str().to_owned(),
        filename,
        mime_type: checked.format.mime().to_owned(),
        size_bytes: size,
        tool_call_id: at.tool_call_id.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn checks_in_order() {
        assert_eq!(check_b64(&b64(PNG), 1024).unwrap().format, ImageFormat::Png);
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        assert_eq!(check_b64(&b64(&jpeg), 1024).unwrap().format.mime(), "image/jpeg");
        let webp = *b"RIFF\x10\0\0\0WEBPVP8L";
        assert_eq!(check_b64(&b64(&webp), 1024).unwrap().format.ext(), "webp");
        assert_eq!(
            check_b64(&b64(b"GIF89a......"), 1024).err().unwrap().code,
            "unsupported_format"
        );
        assert_eq!(
            check_b64("iVBORw0K*not-base64*", 1024).err().unwrap().code,
            "invalid_image"
        );
        assert_eq!(
            check_b64(&format!("{} ", b64(PNG)), 1024).err().unwrap().code,
            "invalid_image",
            "strict: no stray bytes"
        );
        let big = vec![0u8; 4000];
        assert_eq!(
            check_b64(&b64(&big), 1000).err().unwrap().code,
            "image_too_large",
            "refused before decoding"
        );
        let mut png = PNG.to_vec();
        png.resize(1001, 0);
        // 1001 bytes encode to 1336 chars (≤ ceil(1000/3)*4 = 1336): passes the pre-check, fails the re-check.
        assert_eq!(check_b64(&b64(&png), 1000).err().unwrap().code, "image_too_large");
    }
}
