//! A crafted "zip bomb" entry: `n` zero bytes as a hand-written DEFLATE stream.
//!
//! Compressing gigabytes through the zip crate in a debug-built test would take
//! minutes, and allocating them is out of the question. A run of zeros has a
//! trivial DEFLATE encoding (one literal 0, then back-references of length
//! 258 at distance 1), so we emit it directly: 13 bits per 258 output bytes,
//! about 20 MB of compressed data for 3 GiB (ratio ~159:1). The CRC-32 of the
//! zeros is computed in O(log n) with GF(2) matrix powers, and the SHA-256 of
//! large runs by Python's hashlib (see `sha256_of_zeros`), so every header and
//! the RECORD row are
//! *honest*: only a decompressed-size bound (or a ratio bound) rejects it.

use sha2::{Digest, Sha256};
use std::io::Cursor;

/// CRC-32 (IEEE, reflected) polynomial.
const CRC_POLY: u32 = 0xEDB8_8320;

/// Appends bits least-significant first, as DEFLATE requires.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn new(capacity: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(capacity),
            acc: 0,
            bits: 0,
        }
    }

    fn push(&mut self, value: u64, count: u32) {
        self.acc |= value << self.bits;
        self.bits += count;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Fixed-Huffman codes (RFC 1951 3.2.6), already bit-reversed for LSB-first
/// packing: literal 0 is 00110000, length 258 (symbol 285) is 11000101 followed
/// by distance code 0 (00000, i.e. distance 1), end of block is 0000000.
const LIT_ZERO: (u64, u32) = (0b0000_1100, 8);
const MATCH_258_DIST_1: (u64, u32) = (0b1010_0011, 13);
const END_OF_BLOCK: (u64, u32) = (0, 7);

/// A raw DEFLATE stream (one final fixed-Huffman block) inflating to `n` zeros.
pub fn deflate_zeros(n: u64) -> Vec<u8> {
    let matches = n.saturating_sub(1) / 258;
    let literals = n - matches * 258;
    let mut w = BitWriter::new((matches * 13 / 8 + 64) as usize);
    w.push(0b011, 3); // BFINAL=1, BTYPE=01 (fixed Huffman)
    for _ in 0..literals.min(1) {
        w.push(LIT_ZERO.0, LIT_ZERO.1);
    }
    for _ in 0..matches {
        w.push(MATCH_258_DIST_1.0, MATCH_258_DIST_1.1);
    }
    for _ in 1..literals {
        w.push(LIT_ZERO.0, LIT_ZERO.1);
    }
    w.push(END_OF_BLOCK.0, END_OF_BLOCK.1);
    w.finish()
}

/// Applies a 32x32 GF(2) matrix (given by its columns) to a vector.
fn gf2_apply(matrix: &[u32; 32], mut vec: u32) -> u32 {
    let mut sum = 0;
    for column in matrix {
        if vec & 1 == 1 {
            sum ^= column;
        }
        vec >>= 1;
    }
    sum
}

/// Matrix product a*b (apply b, then a).
fn gf2_mul(a: &[u32; 32], b: &[u32; 32]) -> [u32; 32] {
    std::array::from_fn(|i| gf2_apply(a, b[i]))
}

/// The CRC register update for one zero byte, as a linear map's columns.
fn zero_byte_operator() -> [u32; 32] {
    std::array::from_fn(|i| {
        let mut c = 1u32 << i;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ CRC_POLY
            } else {
                c >> 1
            };
        }
        c
    })
}

/// CRC-32 of `n` zero bytes, by raising the one-byte operator to the n-th power.
pub fn crc32_of_zeros(mut n: u64) -> u32 {
    let mut power = zero_byte_operator();
    let mut reg = u32::MAX;
    while n > 0 {
        if n & 1 == 1 {
            reg = gf2_apply(&power, reg);
        }
        power = gf2_mul(&power, &power);
        n >>= 1;
    }
    !reg
}

/// Above this many bytes, hash with Python's hashlib: the sha2 crate in a
/// debug test build manages ~30 MB/s, i.e. minutes for a 3 GiB bomb.
const IN_PROCESS_HASH_LIMIT: u64 = 8 << 20;

/// SHA-256 of `n` zero bytes (in-process for small `n`, else via `python()`).
pub fn sha256_of_zeros(n: u64) -> [u8; 32] {
    if n > IN_PROCESS_HASH_LIMIT {
        return sha256_of_zeros_python(n);
    }
    let zeros = vec![0u8; n as usize];
    Sha256::digest(&zeros).into()
}

/// Streams `n` zeros through hashlib in 64 MiB chunks (C speed, ~1 s/GiB).
fn sha256_of_zeros_python(n: u64) -> [u8; 32] {
    let code = format!(
        "import hashlib\nh = hashlib.sha256()\nz = bytes(1 << 26)\nn = {n}\n\
         while n: k = min(n, len(z)); h.update(z[:k]); n -= k\nprint(h.hexdigest())"
    );
    let hex_digest = super::python_eval(&super::python(), &code);
    hex::decode(hex_digest)
        .expect("hex digest")
        .try_into()
        .expect("32 bytes")
}

/// A one-entry zip archive (built by hand) holding `n` zeros under `name`,
/// stored with DEFLATE, unix mode 0o644. Readable by any zip reader; the
/// wheel builder raw-copies its entry into the wheel without re-compressing.
pub fn single_entry_zip(name: &str, n: u64) -> Vec<u8> {
    assert!(n < u32::MAX as u64, "bomb must stay below 4 GiB (no zip64)");
    let data = deflate_zeros(n);
    let fields = EntryFields {
        name: name.as_bytes(),
        crc: crc32_of_zeros(n),
        compressed: u32::try_from(data.len()).expect("compressed size"),
        uncompressed: n as u32,
    };
    let mut zip = Vec::with_capacity(data.len() + 200);
    fields.write_local_header(&mut zip);
    zip.extend_from_slice(&data);
    let cd_start = zip.len() as u32;
    fields.write_central_header(&mut zip);
    let cd_len = zip.len() as u32 - cd_start;
    write_eocd(&mut zip, cd_start, cd_len);
    zip
}

/// The fields shared by the local and central headers of the bomb entry.
struct EntryFields<'a> {
    name: &'a [u8],
    crc: u32,
    compressed: u32,
    uncompressed: u32,
}

impl EntryFields<'_> {
    /// version needed 2.0, no flags, method 8 (deflate), DOS time 1980-01-01.
    fn write_common(&self, out: &mut Vec<u8>) {
        for v in [20u16, 0, 8, 0, 0x21] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.crc, self.compressed, self.uncompressed] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
    }

    fn write_local_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        self.write_common(out);
        out.extend_from_slice(self.name);
    }

    /// Made by unix (3) v2.0; external attributes carry mode 0o100644.
    fn write_central_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes());
        self.write_common(out);
        for v in [0u16, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes()); // comment, disk, int attrs
        }
        out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        out.extend_from_slice(self.name);
    }
}

fn write_eocd(out: &mut Vec<u8>, cd_start: u32, cd_len: u32) {
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes()); // disks, entry counts
    }
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
}

/// Copies the bomb entry, still compressed, into `writer` under `name`.
pub fn append_bomb<W: std::io::Write + std::io::Seek>(
    writer: &mut zip::ZipWriter<W>,
    name: &str,
    n: u64,
) {
    let source = single_entry_zip(name, n);
    let mut archive = zip::ZipArchive::new(Cursor::new(source)).expect("bomb zip");
    let entry = archive.by_index_raw(0).expect("bomb entry");
    writer
        .raw_copy_file_rename(entry, name)
        .expect("copy bomb entry");
}
