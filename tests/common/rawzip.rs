//! Byte-level view of a zip archive's central directory, and in-place patches.
//!
//! The zip crate refuses to *write* malformed archives (duplicate names, sizes
//! that disagree with the data), and its reader hides some of them (it keeps
//! one entry per name). Tests need to see and produce exactly those defects, so
//! this module reads the central directory by hand and patches header fields
//! of an archive the zip crate already wrote. Only classic (non-zip64)
//! archives are supported, which is all the fixtures produce.

const EOCD_SIG: u32 = 0x0605_4b50;
const CD_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Offsets inside a central-directory file header.
const CD_FLAGS: usize = 8;
const CD_USIZE: usize = 24;
const CD_NAME: usize = 46;
/// Offsets inside a local file header.
const LH_FLAGS: usize = 6;
const LH_USIZE: usize = 22;
const LH_NAME: usize = 30;
/// General-purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;

/// One central-directory record, with the offsets needed to patch it.
#[derive(Debug, Clone)]
pub struct CdEntry {
    /// Raw name bytes as stored (no normalisation, may be absolute or `..`).
    pub name: Vec<u8>,
    /// Offset of this record inside the central directory region of the file.
    pub cd_offset: usize,
    /// Offset of the entry's local file header.
    pub local_offset: usize,
    pub version_made_by: u16,
    pub flags: u16,
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub external_attrs: u32,
}

impl CdEntry {
    /// The name as text (lossy), for assertions and messages.
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Unix `st_mode` stored in the high half of the external attributes.
    pub fn unix_mode(&self) -> u32 {
        self.external_attrs >> 16
    }

    /// Whether the unix mode says "symbolic link" (S_IFLNK).
    pub fn is_symlink(&self) -> bool {
        self.unix_mode() & 0o170000 == 0o120000
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Finds the end-of-central-directory record by scanning back from the end
/// (it sits in the last 22 + 65535 bytes, after an optional comment).
fn find_eocd(zip: &[u8]) -> usize {
    let lowest = zip.len().saturating_sub(22 + 0xffff);
    (lowest..=zip.len() - 22)
        .rev()
        .find(|&at| u32_at(zip, at) == EOCD_SIG)
        .expect("no end-of-central-directory record")
}

/// Parses one central-directory record at `at`; returns it and the next offset.
fn parse_cd_entry(zip: &[u8], at: usize) -> (CdEntry, usize) {
    assert_eq!(u32_at(zip, at), CD_SIG, "bad central header at {at}");
    let name_len = u16_at(zip, at + 28) as usize;
    let extra_len = u16_at(zip, at + 30) as usize;
    let comment_len = u16_at(zip, at + 32) as usize;
    let sizes = [u32_at(zip, at + 20), u32_at(zip, at + 24)];
    assert!(
        !sizes.contains(&u32::MAX),
        "zip64 entries are not supported"
    );
    let entry = CdEntry {
        name: zip[at + CD_NAME..at + CD_NAME + name_len].to_vec(),
        cd_offset: at,
        local_offset: u32_at(zip, at + 42) as usize,
        version_made_by: u16_at(zip, at + 4),
        flags: u16_at(zip, at + CD_FLAGS),
        method: u16_at(zip, at + 10),
        crc32: u32_at(zip, at + 16),
        compressed_size: sizes[0] as u64,
        uncompressed_size: sizes[1] as u64,
        external_attrs: u32_at(zip, at + 38),
    };
    (entry, at + CD_NAME + name_len + extra_len + comment_len)
}

/// Every central-directory record, in order, duplicates included.
pub fn central_directory(zip: &[u8]) -> Vec<CdEntry> {
    let eocd = find_eocd(zip);
    let count = u16_at(zip, eocd + 10) as usize;
    let mut at = u32_at(zip, eocd + 16) as usize;
    assert!(at != u32::MAX as usize, "zip64 archives are not supported");
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let (entry, next) = parse_cd_entry(zip, at);
        entries.push(entry);
        at = next;
    }
    entries
}

/// The central-directory records whose name is exactly `name`.
pub fn entries_named<'a>(entries: &'a [CdEntry], name: &str) -> Vec<&'a CdEntry> {
    entries
        .iter()
        .filter(|e| e.name == name.as_bytes())
        .collect()
}

/// The single record named `name`; panics if there is not exactly one.
pub fn entry_named<'a>(entries: &'a [CdEntry], name: &str) -> &'a CdEntry {
    match entries_named(entries, name).as_slice() {
        [one] => one,
        other => panic!("expected one entry {name:?}, found {}", other.len()),
    }
}

/// The name stored in the entry's *local* header (readers that stream the
/// archive see this one, not the central directory's).
pub fn local_name<'a>(zip: &'a [u8], entry: &CdEntry) -> &'a [u8] {
    let at = entry.local_offset;
    assert_eq!(u32_at(zip, at), LOCAL_SIG, "bad local header at {at}");
    let len = u16_at(zip, at + 26) as usize;
    &zip[at + LH_NAME..at + LH_NAME + len]
}

/// The uncompressed size stored in the entry's local header.
pub fn local_uncompressed_size(zip: &[u8], entry: &CdEntry) -> u64 {
    u32_at(zip, entry.local_offset + LH_USIZE) as u64
}

/// The entry's stored (compressed) bytes, exactly as in the archive.
pub fn raw_data<'a>(zip: &'a [u8], entry: &CdEntry) -> &'a [u8] {
    let at = entry.local_offset;
    let name_len = u16_at(zip, at + 26) as usize;
    let extra_len = u16_at(zip, at + 28) as usize;
    let start = at + LH_NAME + name_len + extra_len;
    &zip[start..start + entry.compressed_size as usize]
}

/// Renames an entry in both its local header and its central record.
/// The new name must have the same byte length, so no offset moves.
pub fn rename_entry(zip: &mut [u8], entry: &CdEntry, new_name: &[u8]) {
    assert_eq!(new_name.len(), entry.name.len(), "rename must keep length");
    let utf8 = std::str::from_utf8(new_name).is_ok_and(|s| !s.is_ascii());
    let local = entry.local_offset;
    zip[local + LH_NAME..local + LH_NAME + new_name.len()].copy_from_slice(new_name);
    let cd = entry.cd_offset;
    zip[cd + CD_NAME..cd + CD_NAME + new_name.len()].copy_from_slice(new_name);
    if utf8 {
        put_u16(
            zip,
            local + LH_FLAGS,
            u16_at(zip, local + LH_FLAGS) | FLAG_UTF8,
        );
        put_u16(zip, cd + CD_FLAGS, entry.flags | FLAG_UTF8);
    }
}

/// Overwrites the declared uncompressed size in both headers, leaving the
/// data, CRC and compressed size untouched.
pub fn set_uncompressed_size(zip: &mut [u8], entry: &CdEntry, size: u32) {
    put_u32(zip, entry.local_offset + LH_USIZE, size);
    put_u32(zip, entry.cd_offset + CD_USIZE, size);
}
