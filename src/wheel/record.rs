//! `RECORD`: the per-file hashes and sizes a wheel (or an installed dist)
//! declares, and the one check of bytes against a row, used for archive
//! entries as they are extracted and for installed files `adopt` reads back.

use std::collections::HashMap;

use base64::Engine as _;
use sha2::{Digest as _, Sha384, Sha512};

use crate::hashing::Digest;
use crate::wheel::WheelError;

/// One RECORD hash: the algorithm and the raw digest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHash {
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl RecordHash {
    fn parse(s: &str) -> Option<RecordHash> {
        let (algorithm, b64) = s.split_once('=')?;
        if !matches!(algorithm, "sha256" | "sha384" | "sha512") {
            return None;
        }
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .ok()?;
        Some(RecordHash {
            algorithm: algorithm.to_string(),
            digest,
        })
    }

    fn encode(algorithm: &str, digest: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        format!("{algorithm}={b64}")
    }

    /// The RECORD form of a sha256 digest, for files we generate.
    pub fn sha256_field(d: &Digest) -> String {
        Self::encode("sha256", &d.0)
    }
}

/// One parsed RECORD row.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub hash: Option<RecordHash>,
    pub size: Option<u64>,
}

/// Parse RECORD (CSV: path, hash, size) into rows keyed by path.
pub fn parse_record(text: &str) -> Result<HashMap<String, RecordRow>, WheelError> {
    let mut rows = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| WheelError::BadRecord {
            line: i + 1,
            why: why.to_string(),
        };
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv(line).ok_or_else(|| bad("unbalanced quotes"))?;
        if fields.len() != 3 {
            return Err(bad("expected 3 fields: path,hash,size"));
        }
        let hash = match fields[1].as_str() {
            "" => None,
            h => Some(
                RecordHash::parse(h)
                    .ok_or_else(|| bad("hash is not sha256/384/512=<urlsafe base64>"))?,
            ),
        };
        let size = match fields[2].as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| bad("size is not a number"))?),
        };
        if rows
            .insert(fields[0].clone(), RecordRow { hash, size })
            .is_some()
        {
            return Err(bad(&format!("{:?} listed twice", fields[0])));
        }
    }
    Ok(rows)
}

/// Split one CSV line (RFC 4180 quoting, as Python's csv module writes it).
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

/// Quote a RECORD path field the way Python's csv module would.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Check bytes read back from an installed file against their RECORD
/// row, exactly as extraction checks a wheel's entries. Returns their
/// sha256, which the caller usually needs next.
pub fn verify_bytes(path: &str, row: &RecordRow, bytes: &[u8]) -> Result<Digest, WheelError> {
    let digest = Digest::of(bytes);
    let other = row.hash.as_ref().and_then(|h| {
        let mut o = OtherHasher::new(&h.algorithm)?;
        o.update(bytes);
        Some(o)
    });
    verify_row(path, row, &digest, bytes.len() as u64, other)?;
    Ok(digest)
}

pub(super) fn verify_row(
    path: &str,
    row: &RecordRow,
    digest: &Digest,
    size: u64,
    other: Option<OtherHasher>,
) -> Result<(), WheelError> {
    if let Some(expected) = row.size {
        if expected != size {
            return Err(WheelError::SizeMismatch {
                path: path.to_string(),
                expected,
                actual: size,
            });
        }
    }
    let Some(hash) = &row.hash else {
        return Ok(());
    };
    let actual = match other {
        Some(h) => h.finish(),
        None => digest.0.to_vec(),
    };
    if actual != hash.digest {
        return Err(WheelError::HashMismatch {
            path: path.to_string(),
            expected: RecordHash::encode(&hash.algorithm, &hash.digest),
            actual: RecordHash::encode(&hash.algorithm, &actual),
        });
    }
    Ok(())
}

/// A second hash for RECORD rows that use sha384/sha512.
pub(super) enum OtherHasher {
    Sha384(Sha384),
    Sha512(Sha512),
}

impl OtherHasher {
    pub(super) fn new(algorithm: &str) -> Option<Self> {
        match algorithm {
            "sha384" => Some(OtherHasher::Sha384(Sha384::new())),
            "sha512" => Some(OtherHasher::Sha512(Sha512::new())),
            _ => None,
        }
    }
    pub(super) fn update(&mut self, b: &[u8]) {
        match self {
            OtherHasher::Sha384(h) => h.update(b),
            OtherHasher::Sha512(h) => h.update(b),
        }
    }
    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            OtherHasher::Sha384(h) => h.finalize().to_vec(),
            OtherHasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}
