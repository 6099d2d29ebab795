//! What makes image bytes acceptable, before anything is stored: the base64 length against
//! `IMAGE_OUTPUT_MAX_MB` before decoding, a strict decode (across the pieces the base64 arrived in, hashing
//! as it goes), the decoded size again, the real format from the magic bytes (PNG, JPEG, WebP; all else
//! refused, and it gives the MIME type and extension), and the sha256. CPU-bound, no I/O: callers run it off
//! the async workers. A refusal is an [`IngestFailure`] with the contract's code.

use agentd_responses::B64;
use bytes::Bytes;
use sha2::Digest as _;

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
