//! User and group names for tar headers (`getpwuid_r` / `getgrgid_r`).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Mutex, OnceLock};

/// A folder has thousands of files and a handful of owners: look each owner up once.
fn cached(
    table: &'static OnceLock<Mutex<HashMap<u32, Option<String>>>>,
    id: u32,
    lookup: fn(u32) -> Option<String>,
) -> Option<String> {
    let map = table.get_or_init(Default::default);
    if let Some(hit) = map.lock().expect("name cache").get(&id) {
        return hit.clone();
    }
    let name = lookup(id);
    map.lock().expect("name cache").insert(id, name.clone());
    name
}

pub fn user_name(uid: u32) -> Option<String> {
    static USERS: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    cached(&USERS, uid, lookup_user)
}

pub fn group_name(gid: u32) -> Option<String> {
    static GROUPS: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    cached(&GROUPS, gid, lookup_group)
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives the use of `pwd`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points into `buf`, NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as above.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points into `buf`, NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}
