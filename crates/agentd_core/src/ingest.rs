//! Image ingestion: one image result → checked, decoded, sniffed, hashed, stored, its object row written →
//! the [`AttachmentMeta`] the `attachment` event announces.
//!
//! The base64 length is checked against `IMAGE_OUTPUT_MAX_MB` before decoding; the decode is strict; the decoded
//! size is re-checked; the real format is read from the magic bytes (PNG, JPEG, WebP; all else refused) and
//! gives the MIME type and extension; then sha256 → store under a tenant-scoped key → metadata row. A failure
//! after the object was written removes it; a failure before leaves no row.
//!
//! Memory: the base64 is the upstream event's own reads ([`B64`]), decoded across them and hashed as it is
//! decoded, and dropped the moment it is decoded; the CPU work runs on the blocking pool, at most one image
//! per core at once, before waiting for an upload slot — so at most one base64 and one decoded copy of an
//! image exist, and only while it is being handled.

use agentd_db::{AttachmentMeta, Db, NewObject};
use agentd_ids::{ObjectKey, TenantId};
use agentd_responses::B64;
use agentd_storage::BlobStore;
use bytes::Bytes;
use sha2::Digest as _;
use std::sync::Arc;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Why an image was not stored: a stable code for the `image.failed` event and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFailure {
    pub code: &'static str,
    pub reason: String,
}

impl IngestFailure {
    pub(crate) fn new(code: &'static str, reason: impl Into<String>) -> Self {
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
            "too_many_images" => "This turn already stored as many images as allowed (IMAGE_MAX_PER_TURN).",
            "budget_exhausted" => "This tenant's monthly image budget is used up; the image was not stored.",
            "moderation_blocked" => "The image was refused by the model's safety system.",
            "image_failed" => "The model could not generate this image.",
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

    /// The format of base64 text from its first characters (decodes 24 of them, not the image).
    pub fn sniff_b64(b64: &[u8]) -> Option<Self> {
        let head = b64.get(..24).unwrap_or(b64);
        let bytes = base64_simd::STANDARD.decode_to_vec(head).ok()?;
        Self::sniff(&bytes)
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

/// The most base64 characters an image of `max_bytes` can take.
pub(crate) fn max_b64_chars(max_bytes: u64) -> u64 {
    max_bytes.div_ceil(3) * 4
}

/// Length pre-check, strict decode, size re-check, sniff, digest. CPU-bound: run it off the async workers.
pub(crate) fn check_b64(b64: &B64, max_bytes: u64) -> Result<Checked, IngestFailure> {
    // Base64 carries 3 bytes per 4 characters: refuse before allocating anything for an oversize image.
    let max_chars = max_b64_chars(max_bytes);
    if b64.len() as u64 > max_chars {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} base64 characters, limit {max_chars}", b64.len()),
        ));
    }
    let (bytes, sha256) =
        decode_pieces(b64).map_err(|e| IngestFailure::new("invalid_image", format!("base64: {e}")))?;
    checked(Bytes::from(bytes), max_bytes, |_| sha256)
}

/// Strict base64 decode of text held in pieces (the reads of the upstream event, see [`B64`]), hashing the
/// bytes as they come out, while they are still in cache. A 4-character group split between pieces is put
/// together; padding is accepted only at the very end, as for the text in one piece.
fn decode_pieces(b64: &B64) -> Result<(Vec<u8>, String), String> {
    let mut out = Vec::with_capacity(b64.len() / 4 * 3);
    let mut sha = sha2::Sha256::new();
    let mut segment = |seg: &[u8], last: bool, out: &mut Vec<u8>| -> Result<(), String> {
        if !last && seg.ends_with(b"=") {
            return Err("padding before the end".to_owned());
        }
        let from = out.len();
        base64_simd::STANDARD
            .decode_append(seg, out)
            .map_err(|e| e.to_string())?;
        sha.update(&out[from..]);
        Ok(())
    };
    let (mut group, mut held) = ([0u8; 4], 0);
    let mut pieces = b64.chunks().peekable();
    while let Some(mut piece) = pieces.next() {
        let last = pieces.peek().is_none();
        if held > 0 {
            let take = (4 - held).min(piece.len());
            group[held..held + take].copy_from_slice(&piece[..take]);
            (held, piece) = (held + take, &piece[take..]);
            if held < 4 {
                continue;
            }
            segment(&group, last && piece.is_empty(), &mut out)?;
        }
        let whole = if last {
            piece.len()
        } else {
            piece.len() - piece.len() % 4
        };
        segment(&piece[..whole], last, &mut out)?;
        held = piece.len() - whole;
        group[..held].copy_from_slice(&piece[whole..]);
    }
    if held > 0 {
        // An incomplete last group: the decoder says what is wrong with it.
        segment(&group[..held], true, &mut out)?;
    }
    Ok((out, hex::encode(sha.finalize())))
}

/// Size check, sniff and digest of raw bytes (uploads).
pub(crate) fn check_bytes(bytes: Bytes, max_bytes: u64) -> Result<Checked, IngestFailure> {
    checked(bytes, max_bytes, |b| hex::encode(sha2::Sha256::digest(b)))
}

/// Size check, sniff, then `digest` (hex sha256) of the bytes.
fn checked(
    bytes: Bytes,
    max_bytes: u64,
    digest: impl FnOnce(&[u8]) -> String,
) -> Result<Checked, IngestFailure> {
    if bytes.len() as u64 > max_bytes {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} bytes, limit {max_bytes}", bytes.len()),
        ));
    }
    let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
        IngestFailure::new("unsupported_format", "not PNG, JPEG or WebP by its magic bytes")
    })?;
    Ok(Checked {
        sha256: digest(&bytes),
        bytes,
        format,
    })
}

/// Process-wide bounds on image work: decodes at once (one per core) and uploads at once.
pub(crate) struct IngestPool {
    cpu: Semaphore,
    uploads: Semaphore,
}

impl IngestPool {
    /// A CPU slot for checking one image.
    pub(crate) async fn cpu(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.cpu.acquire().await.ok()
    }

    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            cpu: Semaphore::new(cores),
            uploads: Semaphore::new(4),
        }
    }
}

/// Where a turn's images go: handed to the relay, which calls [`Ingest::image`] for each result.
pub(crate) struct Ingest {
    pub store: Arc<dyn BlobStore>,
    pub db: Db,
    pub tenant: TenantId,
    pub conversation: Uuid,
    pub max_bytes: u64,
    pub pool: Arc<IngestPool>,
}

/// Where and how an image is stored.
pub(crate) struct Placement<'a> {
    pub conversation: Option<Uuid>,
    pub tool_call_id: Option<&'a str>,
    pub kind: &'static str,
}

impl Ingest {
    /// Decodes, checks and stores one image result of this turn's conversation.
    pub(crate) async fn image(&self, tool_call_id: &str, b64: B64) -> Result<AttachmentMeta, IngestFailure> {
        let checked = decode(&self.pool, b64, self.max_bytes).await?;
        let at = Placement {
            conversation: Some(self.conversation),
            tool_call_id: Some(tool_call_id),
            kind: "generated",
        };
        store(&self.pool, &self.store, &self.db, &self.tenant, at, checked).await
    }
}

/// [`check_b64`] on the blocking pool, one image per core at once. The base64 is dropped when it is decoded.
pub(crate) async fn decode(pool: &IngestPool, b64: B64, max_bytes: u64) -> Result<Checked, IngestFailure> {
    if b64.len() as u64 > max_b64_chars(max_bytes) {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} base64 characters", b64.len()),
        ));
    }
    let _cpu = pool.cpu().await;
    tokio::task::spawn_blocking(move || check_b64(&b64, max_bytes))
        .await
        .unwrap_or_else(|e| Err(IngestFailure::new("storage_failed", format!("decoder task: {e}"))))
}

/// Stores checked bytes (one upload slot) and records them; the object is removed again if its row cannot be
/// written.
pub(crate) async fn store(
    pool: &IngestPool,
    store: &Arc<dyn BlobStore>,
    db: &Db,
    tenant: &TenantId,
    at: Placement<'_>,
    checked: Checked,
) -> Result<AttachmentMeta, IngestFailure> {
    let object_id = Uuid::now_v7();
    let oid = object_id.simple().to_string();
    let ext = checked.format.ext();
    let key = match at.conversation {
        Some(c) => ObjectKey::in_conversation(tenant, &c.simple().to_string(), &oid, ext),
        None => ObjectKey::upload(tenant, &oid, ext),
    }
    .map_err(|e| IngestFailure::new("storage_failed", e.to_string()))?;
    let stem = at.tool_call_id.map_or_else(|| oid.clone(), str::to_owned);
    let filename = format!("image-{stem}.{ext}");
    let size = checked.bytes.len() as i64;
    let mime = checked.format.mime();
    {
        let _slot = pool.uploads.acquire().await;
        store
            .put_digested(&key, checked.bytes, mime, &checked.sha256)
            .await
            .map_err(|e| IngestFailure::new("storage_failed", format!("put {key}: {e}")))?;
    }
    let row = NewObject {
        id: object_id,
        object_key: key.clone(),
        conversation_id: at.conversation,
        tool_call_id: at.tool_call_id.map(str::to_owned),
        kind: at.kind,
        filename: filename.clone(),
        mime_type: mime.to_owned(),
        size_bytes: size,
        sha256: checked.sha256,
    };
    if let Err(e) = db.scoped(tenant).insert_object(&row).await {
        if let Err(del) = store.delete(&key).await {
            tracing::error!(key = %key, error = %del, "could not remove an object whose row failed; it is orphaned");
        }
        return Err(IngestFailure::new("storage_failed", format!("metadata row: {e}")));
    }
    Ok(AttachmentMeta {
        object_id,
        object_key: key,
        filename,
        mime_type: mime.to_owned(),
        size_bytes: size,
        tool_call_id: at.tool_call_id.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];

    fn b64(b: &[u8]) -> String {
        base64_simd::STANDARD.encode_to_string(b)
    }

    fn check(text: &str, max_bytes: u64) -> Result<Checked, IngestFailure> {
        check_b64(&B64::from(text), max_bytes)
    }

    /// `text` in pieces of the given sizes (cycling; the last takes what is left).
    fn pieces(text: &str, sizes: &[usize]) -> B64 {
        let all = Bytes::copy_from_slice(text.as_bytes());
        let mut out = Vec::new();
        let mut at = 0;
        for s in sizes.iter().cycle() {
            if at >= all.len() {
                break;
            }
            let end = (at + s).min(all.len());
            out.push(all.slice(at..end));
            at = end;
        }
        B64::from_pieces(out)
    }

    #[test]
    fn checks_in_order() {
        assert_eq!(check(&b64(PNG), 1024).unwrap().format, ImageFormat::Png);
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        assert_eq!(check(&b64(&jpeg), 1024).unwrap().format.mime(), "image/jpeg");
        let webp = *b"RIFF\x10\0\0\0WEBPVP8L";
        assert_eq!(check(&b64(&webp), 1024).unwrap().format.ext(), "webp");
        assert_eq!(
            ImageFormat::sniff_b64(b64(&webp).as_bytes()),
            Some(ImageFormat::Webp)
        );
        assert_eq!(
            check(&b64(b"GIF89a......"), 1024).err().unwrap().code,
            "unsupported_format"
        );
        assert_eq!(
            check("iVBORw0K*not-base64*", 1024).err().unwrap().code,
            "invalid_image"
        );
        assert_eq!(
            check(&format!("{} ", b64(PNG)), 1024).err().unwrap().code,
            "invalid_image",
            "strict: no stray bytes"
        );
        assert_eq!(
            check(&b64(PNG)[..15], 1024).err().unwrap().code,
            "invalid_image",
            "strict: no missing padding"
        );
        let big = vec![0u8; 4000];
        assert_eq!(
            check(&b64(&big), 1000).err().unwrap().code,
            "image_too_large",
            "refused before decoding"
        );
        let mut png = PNG.to_vec();
        png.resize(1001, 0);
        // 1001 bytes encode to 1336 chars (≤ ceil(1000/3)*4 = 1336): passes the pre-check, fails the re-check.
        assert_eq!(check(&b64(&png), 1000).err().unwrap().code, "image_too_large");
    }

    #[test]
    fn base64_in_pieces_decodes_and_hashes_as_in_one_piece() {
        let mut png = PNG.to_vec();
        png.extend((0..=255u8).cycle().take(5000));
        let text = b64(&png);
        let whole = check(&text, 1 << 20).unwrap();
        assert_eq!(whole.bytes, png);
        assert_eq!(whole.sha256, hex::encode(sha2::Sha256::digest(&png)));
        for sizes in [&[1usize][..], &[2], &[3], &[5, 1, 2], &[4096], &[4095, 1, 4]] {
            let got = check_b64(&pieces(&text, sizes), 1 << 20).unwrap();
            assert_eq!(got.bytes, png, "{sizes:?}");
            assert_eq!(got.sha256, whole.sha256, "{sizes:?}");
        }
        // As strict as in one piece, wherever the cuts fall.
        let padded = b64(&PNG[..11]);
        assert!(padded.ends_with('='));
        let twice = format!("{padded}{padded}");
        for sizes in [&[1usize][..], &[3], &[padded.len()], &[7]] {
            assert_eq!(
                check_b64(&pieces(&twice, sizes), 1024).err().unwrap().code,
                "invalid_image",
                "{sizes:?}"
            );
            let short = &text[..text.len() - 1];
            assert_eq!(
                check_b64(&pieces(short, sizes), 1 << 20).err().unwrap().code,
                "invalid_image"
            );
            let spaced = format!("{} ", b64(PNG));
            assert_eq!(
                check_b64(&pieces(&spaced, sizes), 1024).err().unwrap().code,
                "invalid_image"
            );
        }
    }
}
