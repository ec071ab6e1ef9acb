//! Turning the merged document and extra parts into user-data bytes:
//! `#cloud-config`, multipart MIME with a fixed boundary, gzip with mtime 0.

use std::io::Write as _;

use base64::Engine as _;
use flate2::{Compression as Level, GzBuilder};

use crate::compile::model::Compression;
use crate::diagnostics::{Error, Result};

/// EC2's limit on user-data, counted before base64.
pub const USER_DATA_LIMIT: usize = 16_384;

/// Past 85 % of the limit, what EC2 receives warns (`size-budget`): the
/// next change may not fit. (Three quarters until the requirements' cache
/// and uv came in: the default payload is readable scripts, gzipped, and
/// passed it; docs/profiles.md says why 85 %.)
pub const SIZE_BUDGET: usize = USER_DATA_LIMIT * 85 / 100;

/// The MIME boundary; fixed so that the same inputs give the same bytes.
pub const BOUNDARY: &str = "==BOOTFORGE-PART-BOUNDARY==";

/// One part of a multipart payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub filename: String,
    pub content: String,
}

/// The user-data an instance boots with, and how it was packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Exactly what EC2 receives (before its base64).
    pub bytes: Vec<u8>,
    /// The user-data before compression, as cloud-init reads it once it
    /// has decompressed `bytes`: the golden file. The same as `bytes`
    /// when not gzipped.
    pub raw: Vec<u8>,
    pub mime: bool,
    pub gzip: bool,
}

impl Payload {
    /// The payload as EC2's API carries it.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// SHA-256 of the bytes, in hex.
    pub fn sha256(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(&self.bytes);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A multipart MIME document holding `parts` in order.
pub fn mime(parts: &[Part]) -> Result<String> {
    let mut out = String::new();
    out.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n\n"
    ));
    for part in parts {
        if part.content.contains(BOUNDARY) {
            return Err(Error::Output {
                snippet: part.filename.clone(),
                message: format!(
                    "the part contains the MIME boundary `{BOUNDARY}`; remove that text"
                ),
                chosen: None,
            });
        }
        let encoding = if part.content.is_ascii() {
            "7bit"
        } else {
            "8bit"
        };
        out.push_str(&format!(
            "--{BOUNDARY}\nContent-Type: {}; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: {encoding}\nContent-Disposition: attachment; filename=\"{}\"\n\n",
            part.content_type, part.filename
        ));
        out.push_str(&part.content);
        // The line break before a boundary belongs to the boundary (RFC 2046),
        // so this one keeps the part's own last line break.
        out.push('\n');
    }
    out.push_str(&format!("--{BOUNDARY}--\n"));
    Ok(out)
}

/// Gzip with a fixed header (no name, mtime 0) and level, so the bytes
/// depend only on the input.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), Level::best());
    encoder
        .write_all(data)
        .and_then(|_| encoder.try_finish())
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Packs `raw` as the profile asks, gzipping when asked or (`auto`) when
/// the raw bytes would pass the size budget, and refusing what does not
/// fit the limit even then.
pub fn pack(profile: &str, raw: String, mime: bool, compression: Compression) -> Result<Payload> {
    let raw = raw.into_bytes();
    let raw_len = raw.len();
    let want_gzip = match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => raw_len > SIZE_BUDGET,
    };
    let bytes = if want_gzip { gzip(&raw) } else { raw.clone() };
    if bytes.len() > USER_DATA_LIMIT {
        let gzipped = if want_gzip {
            bytes.len()
        } else {
            gzip(&bytes).len()
        };
        return Err(Error::TooLarge {
            profile: profile.to_string(),
            raw: raw_len,
            gzipped,
            limit: USER_DATA_LIMIT,
        });
    }
    Ok(Payload {
        bytes,
        raw,
        mime,
        gzip: want_gzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        let a = gzip(b"hello hello hello");
        assert_eq!(a, gzip(b"hello hello hello"));
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime must be 0");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello hello hello");
    }

    #[test]
    fn auto_compression_kicks_in_over_the_budget_and_fails_past_the_limit() {
        let small = pack("p", "#cloud-config\n".to_string(), false, Compression::Auto).unwrap();
        assert!(!small.gzip);
        // At the budget raw, one byte past it gzipped.
        let at = |n: usize| format!("#cloud-config\n#{}\n", "b".repeat(n - 16));
        assert!(
            !pack("p", at(SIZE_BUDGET), false, Compression::Auto)
                .unwrap()
                .gzip
        );
        assert!(
            pack("p", at(SIZE_BUDGET + 1), false, Compression::Auto)
                .unwrap()
                .gzip
        );
        assert!(
            !pack("p", at(SIZE_BUDGET + 1), false, Compression::None)
                .unwrap()
                .gzip
        );
        let repetitive = format!("#cloud-config\n# {}\n", "a".repeat(20_000));
        let packed = pack("p", repetitive, false, Compression::Auto).unwrap();
        assert!(packed.gzip && packed.bytes.len() < USER_DATA_LIMIT);
        assert_eq!(packed.raw.len(), 20_017);
        // What is launched is the raw user-data gzipped, nothing else.
        assert_eq!(gzip(&packed.raw), packed.bytes);

        // Incompressible: xorshift noise over 90 printable characters.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: String = (0..40_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect();
        let err = pack("p", noise.clone(), false, Compression::Auto).unwrap_err();
        assert!(matches!(err, Error::TooLarge { raw: 40_000, .. }), "{err}");
        assert!(pack("p", noise, false, Compression::None).is_err());
    }
}
