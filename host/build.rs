//! Builds the first-party plugins (and the test fixtures) for `wasm32-wasip2` with a
//! nested cargo, the way wasmtime builds its guest test programs, and generates the table
//! that embeds them.
//!
//! The nested build uses its own target directory (the outer build holds a lock on its
//! own) and always the release profile: plugins are shipped optimised whatever profile
//! the host is built with.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));

    for watched in [
        "wit",
        "sdk",
        "plugins",
        "tests/fixtures",
        "tests/fixture-destination",
        "tests/fixture-raw",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=BACKUPS_PLUGINS_TARGET_DIR");

    // Each plugin is a crate `plugins/<type>`; its package is `backups-plugin-<type>`.
    let mut plugins: Vec<String> = std::fs::read_dir(workspace.join("plugins"))
        .expect("plugins/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    plugins.sort();
    let fixtures = [
        "backups-test-fixtures",
        "backups-test-flaky-destination",
        "backups-test-raw-fixture",
    ];

    ensure_wasm_target();

    let target_dir = std::env::var_os("BACKUPS_PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_target_dir(&out_dir).join("wasm-plugins"));

    // One cargo invocation per crate: cargo unifies the features of packages built
    // together, and each plugin enables exactly one world feature of the SDK.
    let packages = plugins
        .iter()
        .map(|p| format!("backups-plugin-{p}"))
        .chain(fixtures.iter().map(|f| f.to_string()));
    for package in packages {
        build_wasm(&workspace, &target_dir, &package);
    }

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    let mut table = String::from("pub static PLUGINS: &[(&str, &[u8])] = &[\n");
    for p in &plugins {
        let file = wasm_dir.join(format!("backups_plugin_{}.wasm", p.replace('-', "_")));
        assert!(file.is_file(), "missing {}", file.display());
        table += &format!(
            "    ({p:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        );
    }
    table += "];\n";
    std::fs::write(out_dir.join("embedded_plugins.rs"), table).expect("writing embedded table");

    // Test fixtures are not embedded: tests load them by path.
    println!(
        "cargo:rustc-env=BACKUPS_TEST_FIXTURES_DIR={}",
        wasm_dir.display()
    );
}

/// A fresh machine lacks the wasm target; add it (as `rustup target add` would be the
/// first thing the error told the user to do anyway).
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot
        .map(|s| s.join("lib/rustlib").join(WASM_TARGET).is_dir())
        .unwrap_or(false);
    if !installed {
        println!("cargo:warning=installing the {WASM_TARGET} target with rustup");
        let ok = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            panic!("the {WASM_TARGET} target is missing: run `rustup target add {WASM_TARGET}`");
        }
    }
}

fn build_wasm(workspace: &Path, target_dir: &Path, package: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    // Keep what the outer build configured for the host away from the wasm build, and
    // ship plugins without debug info (it would triple their size).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let status = cmd.status().expect("running cargo for the wasm plugins");
    if !status.success() {
        panic!(
            "building {package} for {WASM_TARGET} failed; is the target installed? \
             (rustup target add {WASM_TARGET})"
        );
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo"))
}

/// `<target>/<profile>/build/<pkg>-<hash>/out` → `<target>`.
fn default_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual depth")
        .to_path_buf()
}
