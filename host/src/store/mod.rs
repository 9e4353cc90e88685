//! What is stored at a destination, and what may be deleted there.
//!
//! - `objects`: object names (`{hostname}/{date}/{time}Z/{id}.{kind}{codec suffixes}`),
//!   manifests, and the complete copies a listing holds;
//! - `confirm`: "stored" means seen stored — a put is confirmed by listing, and the floor
//!   of copies retention keeps is confirmed by reading their manifests;
//! - `retention`: which copies a destination keeps, and never below that floor;
//! - `leftovers`: what killed `put`s left behind, and which of it a run may remove.

pub mod confirm;
pub mod leftovers;
pub mod objects;
pub mod retention;
