//! Content digests: the store names every file by the SHA-256 of its bytes.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Kept as raw bytes so indexes stay compact in memory;
/// shown and parsed as lowercase hex, the form used in store paths.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hash a byte slice in one go.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, as used in object paths and indexes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The two-character fan-out directory of this digest in the store.
    pub fn fanout(&self) -> String {
        hex::encode(&self.0[..1])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// Error for a string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a sha256 hex digest: {0:?}")]
pub struct BadDigest(pub String);

/// A map keyed by digests, with a fast hasher: a mount looks one up per
/// `.py` file of every dist, and digests need no DoS-resistant hashing.
pub type DigestMap<V> = rustc_hash::FxHashMap<Digest, V>;

impl FromStr for Digest {
    type Err = BadDigest;
    /// Parsing is on the mount's start-up path (one digest per file of
    /// every dist), hence the hand-rolled decoder.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(BadDigest(s.to_string()));
        }
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
            invalid |= (hi | lo) & 0x80;
            *o = (hi << 4) | (lo & 0x0f);
        }
        if invalid != 0 {
            return Err(BadDigest(s.to_string()));
        }
        Ok(Digest(out))
    }
}

/// Hex digit values; 0x80 marks a byte that is not a hex digit.
const HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A writer that hashes and counts everything passing through it, so a file
/// can be verified while it is streamed to disk, without a second read.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (
            Digest(self.hasher.finalize().into()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hash a whole file by streaming it, for `store verify`.
pub fn hash_file(path: &std::path::Path) -> io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut w)?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_value() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert_eq!(d.fanout(), "ba");
        assert!("xyz".parse::<Digest>().is_err());
        assert!("g".repeat(64).parse::<Digest>().is_err());
        assert_eq!(d.to_hex().to_uppercase().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn hashing_writer_matches_one_shot() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, v) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(v, b"hello world");
        assert_eq!(d, Digest::of(b"hello world"));
    }
}
