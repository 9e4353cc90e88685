//! What a destination tells the host, in the host's own types.
//!
//! The generated bindings change with every contract version; the store (names, listings,
//! retention, leftovers) and `status` should not. So the runtime converts a destination's
//! answers here, at the edge, and nothing above it imports a generated type to read a
//! listing.

use super::bindings;

/// One object a destination listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full object name, e.g. `db1.example.com/2026-11-22/020000Z/db.sql.gz.gpg`.
    pub key: String,
    pub size: u64,
    /// Last modification, in seconds since the Unix epoch, when the backend knows it.
    pub modified: Option<u64>,
}

/// One of the backend's own age-based deletion rules (an S3 lifecycle expiration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRule {
    /// The rule's name at the backend, for the operator to find it.
    pub id: String,
    /// Objects whose key starts with this are affected ("" = all).
    pub prefix: String,
    pub expire_after_days: u32,
}

/// What an interrupted `put` left at a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The object name the interrupted `put` was writing.
    pub key: String,
    /// What the backend calls it (a temporary file, an upload id), handed back unchanged.
    pub id: String,
    /// Bytes it holds at the backend, as far as the backend says.
    pub size: u64,
    /// Last written, in seconds since the Unix epoch; 0 when unknown (never removed then).
    pub modified: u64,
}

/// Whether the backend removes leftovers by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupRule {
    /// No such rule can exist (a file system, a share).
    NotApplicable,
    /// It could have one and has none: `status` recommends one.
    Absent,
    /// The backend removes them after this many days.
    AfterDays(u32),
    /// Sessions the backend expires by itself and that cannot be listed.
    ExpiresAfterDays(u32),
}

impl From<bindings::ObjectInfo> for ObjectInfo {
    fn from(o: bindings::ObjectInfo) -> Self {
        ObjectInfo {
            key: o.key,
            size: o.size,
            modified: o.modified,
        }
    }
}

impl From<bindings::destination::exports::backups::plugin::storage::DeletionRule> for DeletionRule {
    fn from(r: bindings::destination::exports::backups::plugin::storage::DeletionRule) -> Self {
        DeletionRule {
            id: r.id,
            prefix: r.prefix,
            expire_after_days: r.expire_after_days,
        }
    }
}

impl From<bindings::Leftover> for Leftover {
    fn from(l: bindings::Leftover) -> Self {
        Leftover {
            key: l.key,
            id: l.id,
            size: l.size,
            modified: l.modified,
        }
    }
}

impl From<&Leftover> for bindings::Leftover {
    fn from(l: &Leftover) -> Self {
        bindings::Leftover {
            key: l.key.clone(),
            id: l.id.clone(),
            size: l.size,
            modified: l.modified,
        }
    }
}

impl From<bindings::CleanupRule> for CleanupRule {
    fn from(c: bindings::CleanupRule) -> Self {
        match c {
            bindings::CleanupRule::NotApplicable => CleanupRule::NotApplicable,
            bindings::CleanupRule::Absent => CleanupRule::Absent,
            bindings::CleanupRule::AfterDays(d) => CleanupRule::AfterDays(d),
            bindings::CleanupRule::ExpiresAfterDays(d) => CleanupRule::ExpiresAfterDays(d),
        }
    }
}
