//! Real image bytes without an image library: a stored-deflate PNG (gradient), a DC-only baseline JPEG
//! (8×8 block mosaic) and a lossless VP8L WebP (solid colour), each decodable by ordinary decoders.
//! Big images are real PNG pixels, or ignorable padding segments/chunks for JPEG/WebP. Results are cached
//! as base64 per (format, size, variant, padding) so multi-MB images cost once per process; the cache holds
//! at most [`CACHE_MAX_BYTES`] and forgets the oldest entries first. A cached image is one shared buffer
//! ([`B64`]): events carry it, and `splice.rs` writes it, without copying it.

use std::sync::OnceLock;

use agentd_responses::B64;
use base64::Engine as _;

/// Output format of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    /// From a tool's `output_format` (PNG when absent or unknown).
    pub fn from_name(name: Option<&str>) -> Self {
        match name {
            Some("jpeg") | Some("jpg") => Self::Jpeg,
            Some("webp") => Self::Webp,
            _ => Self::Png,
        }
    }
}

mod cache;

use cache::cache;
pub use cache::{CACHE_MAX_BYTES, cached_bytes};

/// Base64 of an image (a clone shares the text). `min_bytes` > 0 asks for a file of at least that many bytes
/// (big mode).
pub fn image_b64(format: Format, width: u32, height: u32, variant: u32, min_bytes: usize) -> B64 {
    let key = (format, width, height, variant, min_bytes);
    if let Ok(c) = cache().lock()
        && let Some(hit) = c.map.get(&key)
    {
        return hit.clone();
    }
    let bytes = encode(format, width, height, variant, min_bytes);
    let b64 = B64::from(base64::engine::general_purpose::STANDARD.encode(bytes));
    if let Ok(mut c) = cache().lock() {
        c.insert(key, b64.clone());
    }
    b64
}

/// Raw bytes of an image (uncached).
pub fn encode(format: Format, width: u32, height: u32, variant: u32, min_bytes: usize) -> Vec<u8> {
    let width = width.max(1);
    let height = height.max(1);
    match format {
        Format::Png => {
            if min_bytes > 0 {
                // Real pixels: pick a square whose raw RGB rows reach min_bytes.
                let side = ((min_bytes as f64 / 3.0).sqrt().ceil() as u32).max(1);
                png(side, side, variant)
            } else {
                png(width, height, variant)
            }
        }
        Format::Jpeg => jpeg(width.min(65_535), height.min(65_535), variant, min_bytes),
        Format::Webp => webp(width.min(16_384), height.min(16_384), variant, min_bytes),
    }
}

fn base_color(variant: u32) -> [u8; 3] {
    let v = variant.wrapping_mul(2_654_435_761);
    [
        (v >> 24) as u8 | 0x20,
        (v >> 16) as u8 | 0x20,
        (v >> 8) as u8 | 0x20,
    ]
}

fn pixel(x: u32, y: u32, w: u32, h: u32, variant: u32) -> [u8; 3] {
    let [r, g, b] = base_color(variant);
    let fx = (x * 255 / w.max(1)) as u8;
    let fy = (y * 255 / h.max(1)) as u8;
    [r ^ fx, g ^ fy, b.wrapping_add(fx / 2).wrapping_add(fy / 2)]
}

fn crc_table() -> &'static [u32; 256] {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, slot) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    })
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let t = crc_table();
    let mut c = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            c = t[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xFFFF_FFFF
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

fn png(w: u32, h: u32, variant: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity((w as usize * 3 + 1) * h as usize);
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&pixel(x, y, w, h, variant));
        }
    }
    // zlib stream of stored deflate blocks.
    let mut z = Vec::with_capacity(raw.len() + raw.len() / 65_535 * 5 + 16);
    z.extend_from_slice(&[0x78, 0x01]);
    let blocks: Vec<&[u8]> = if raw.is_empty() {
        vec![&[]]
    } else {
        raw.chunks(65_535).collect()
    };
    let last = blocks.len() - 1;
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i == last));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in raw.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive filters, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// MSB-first bit writer with JPEG 0xFF byte stuffing.
struct JpegBits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl JpegBits {
    fn put(&mut self, value: u32, bits: u32) {
        for i in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                let byte = self.acc as u8;
                self.out.push(byte);
                if byte == 0xFF {
                    self.out.push(0);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }
    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

fn jpeg_segment(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn jpeg(w: u32, h: u32, variant: u32, min_bytes: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    jpeg_segment(&mut out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    // Padding for big mode: comment segments, skipped by decoders.
    let mut pad = min_bytes;
    while pad > 0 {
        let n = pad.min(65_000);
        jpeg_segment(&mut out, 0xFE, &vec![b'.'; n]);
        pad -= n;
    }
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    jpeg_segment(&mut out, 0xDB, &dqt);
    let (wb, hb) = ((w as u16).to_be_bytes(), (h as u16).to_be_bytes());
    let sof = [
        8, hb[0], hb[1], wb[0], wb[1], 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0,
    ];
    jpeg_segment(&mut out, 0xC0, &sof);
    // DC table 0: categories 0..=11 all with 4-bit codes (code = category). AC table 0: only EOB, code "0".
    let mut dht = vec![0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dht.extend(0u8..12);
    dht.extend_from_slice(&[0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    jpeg_segment(&mut out, 0xC4, &dht);
    jpeg_segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]);

    let mut bits = JpegBits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    let mut pred = [0i32; 3];
    for by in 0..h.div_ceil(8) {
        for bx in 0..w.div_ceil(8) {
            let (cx, cy) = ((bx * 8 + 4).min(w - 1), (by * 8 + 4).min(h - 1));
            let [r, g, b] = pixel(cx, cy, w, h, variant).map(f64::from);
            let ycc = [
                0.299 * r + 0.587 * g + 0.114 * b,
                128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b,
                128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b,
            ];
            for (c, value) in ycc.iter().enumerate() {
                let dc = (8.0 * (value - 128.0)).round().clamp(-1024.0, 1016.0) as i32;
                let diff = dc - pred[c];
                pred[c] = dc;
                let cat = 32 - diff.unsigned_abs().leading_zeros();
                bits.put(cat, 4);
                if cat > 0 {
                    let v = if diff >= 0 { diff } else { diff + (1 << cat) - 1 };
                    bits.put(v as u32, cat);
                }
                bits.put(0, 1); // EOB
            }
        }
    }
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// LSB-first bit writer for VP8L.
#[derive(Default)]
struct LsbBits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl LsbBits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn webp(w: u32, h: u32, variant: u32, min_bytes: usize) -> Vec<u8> {
    let [r, g, b] = base_color(variant);
    let mut bits = LsbBits::default();
    bits.put(w - 1, 14);
    bits.put(h - 1, 14);
    bits.put(0, 1); // alpha unused
    bits.put(0, 3); // version
    bits.put(0, 1); // no transform
    bits.put(0, 1); // no colour cache
    bits.put(0, 1); // no meta prefix codes
    // Five single-symbol "simple" prefix codes (green, red, blue, alpha, distance): 0 bits per pixel.
    for symbol in [u32::from(g), u32::from(r), u32::from(b), 255, 0] {
        bits.put(1, 1); // simple code
        bits.put(0, 1); // one symbol
        if symbol < 2 {
            bits.put(0, 1);
            bits.put(symbol, 1);
        } else {
            bits.put(1, 1);
            bits.put(symbol, 8);
        }
    }
    let mut vp8l = vec![0x2F];
    vp8l.extend_from_slice(&bits.finish());

    let mut body = b"WEBP".to_vec();
    if min_bytes > 0 {
        // Extended format so an unknown (ignored) padding chunk is allowed.
        let mut vp8x = vec![0u8; 4];
        vp8x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        riff_chunk(&mut body, b"VP8X", &vp8x);
        riff_chunk(&mut body, b"VP8L", &vp8l);
        riff_chunk(&mut body, b"FAKE", &vec![0u8; min_bytes]);
    } else {
        riff_chunk(&mut body, b"VP8L", &vp8l);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert!(encode(Format::Png, 16, 16, 1, 0).starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(encode(Format::Jpeg, 16, 16, 1, 0).starts_with(&[0xFF, 0xD8, 0xFF]));
        let webp = encode(Format::Webp, 16, 16, 1, 0);
        assert!(webp.starts_with(b"RIFF") && &webp[8..12] == b"WEBP");
        assert!(encode(Format::Png, 16, 16, 1, 2_000_000).len() >= 2_000_000);
        assert!(encode(Format::Jpeg, 16, 16, 1, 2_000_000).len() >= 2_000_000);
    }

    #[test]
    fn variants_differ() {
        assert_ne!(encode(Format::Png, 8, 8, 1, 0), encode(Format::Png, 8, 8, 2, 0));
        assert_ne!(encode(Format::Webp, 8, 8, 1, 0), encode(Format::Webp, 8, 8, 2, 0));
    }
}
