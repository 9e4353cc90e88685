//! The bindings are generated from ../wit by a macro; tell cargo so that a change to the
//! contract regenerates them (cargo does not see files a proc macro reads).
fn main() {
    println!("cargo:rerun-if-changed=../wit");
}
