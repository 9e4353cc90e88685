//! Tar members as GNU tar writes them (its default `gnu` format), including the three
//! things the tar crate's path-based API cannot do from inside WASI: names that are not
//! UTF-8 (a member name is bytes; long ones go in a `././@LongLink` member first), mtimes
//! before 1970 (base-256, as GNU tar stores them) and link members for hard links.

use backups_sdk::files::EntryMetadata;
use std::io::{self, Read, Write};

/// The bytes of a name field in a tar header; longer names take a LongLink member.
const NAME_FIELD: usize = 100;

pub struct Archive<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> Archive<W> {
    pub fn new(out: W) -> Self {
        Archive {
            tar: tar::Builder::new(out),
        }
    }

    /// Writes the end-of-archive blocks and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }

    /// Appends one member: `header` (from [`header_for`], with its type and size set),
    /// named `name`, linking to `link` (for symlinks and hard links), holding `data`.
    pub fn append(
        &mut self,
        header: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        if name.len() > NAME_FIELD {
            self.long_field(tar::EntryType::GNULongName, name)?;
        }
        if let Some(link) = link.filter(|l| l.len() > NAME_FIELD) {
            self.long_field(tar::EntryType::GNULongLink, link)?;
        }
        let old = header.as_old_mut();
        put_field(&mut old.name, name);
        put_field(&mut old.linkname, link.unwrap_or_default());
        header.set_cksum();
        self.tar.append(header, data)
    }

    /// The `././@LongLink` member GNU tar writes before a member whose name (`L`) or link
    /// target (`K`) does not fit its header: the whole name, NUL-terminated.
    fn long_field(&mut self, kind: tar::EntryType, value: &[u8]) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        put_field(&mut header.as_old_mut().name, b"././@LongLink");
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(value.len() as u64 + 1);
        header.set_entry_type(kind);
        header.set_cksum();
        self.tar.append(&header, value.chain(&[0u8][..]))
    }
}

/// A GNU header carrying `meta`'s mode, owner (ids and names) and mtime.
pub fn header_for(meta: &EntryMetadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode);
    header.set_uid(u64::from(meta.uid));
    header.set_gid(u64::from(meta.gid));
    set_mtime(&mut header, meta.mtime);
    if let Some(user) = &meta.user {
        // A name too long for the field is left out; the numeric id is what restores.
        let _ = header.set_username(user);
    }
    if let Some(group) = &meta.group {
        let _ = header.set_groupname(group);
    }
    header
}

/// GNU tar's encoding of a time: octal when it fits, else base-256 two's complement (the
/// first byte's high bit set), which is how times before 1970 are stored.
fn set_mtime(header: &mut tar::Header, mtime: i64) {
    match u64::try_from(mtime) {
        Ok(t) => header.set_mtime(t),
        Err(_) => {
            let field = &mut header.as_old_mut().mtime;
            field[..4].fill(0xff);
            field[4..].copy_from_slice(&mtime.to_be_bytes());
        }
    }
}

/// Copies `value` into a NUL-padded header field, cut at the field's size (the full value
/// is then in the LongLink member before, as GNU tar does).
fn put_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use backups_sdk::files::EntryKind;

    fn meta(mtime: i64) -> EntryMetadata {
        EntryMetadata {
            kind: EntryKind::File,
            size: 0,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime,
            user: None,
            group: None,
            link_target: None,
            device: 1,
            inode: 1,
            links: 1,
            device_major: 0,
            device_minor: 0,
        }
    }

    #[test]
    fn names_are_bytes_and_long_ones_survive() {
        let long: Vec<u8> = b"d/".repeat(80).into_iter().chain(*b"caf\xe9").collect();
        let mut archive = Archive::new(Vec::new());
        for name in [&b"caf\xe9.txt"[..], &long] {
            let mut header = header_for(&meta(-86_400));
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(2);
            archive.append(&mut header, name, None, &b"hi"[..]).unwrap();
        }
        let bytes = archive.finish().unwrap();
        let mut read = tar::Archive::new(&bytes[..]);
        let names: Vec<(Vec<u8>, i64)> = read
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path_bytes().into_owned(),
                    e.header().mtime().unwrap() as i64,
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![(b"caf\xe9.txt".to_vec(), -86_400), (long, -86_400)]
        );
    }
}
