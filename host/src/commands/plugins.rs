//! `backups plugins list|inspect|test|new`.

use super::runtime_for;
use anyhow::Result;
use backups::config::{Job, PluginSource, Role};
use backups::runtime::{Runtime, world};
use backups::trust::{TrustPolicy, TrustSettings};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) fn plugins_list(job_path: Option<&Path>) -> Result<ExitCode> {
    let runtime = runtime_for(None)?;
    println!("embedded:");
    for name in Runtime::embedded_names() {
        match runtime.load_embedded(name) {
            Ok(p) => println!(
                "  {name:<12} {:<12} WIT {}  sha256 {}",
                p.world.role.to_string(),
                p.world.version,
                &p.digest[..16]
            ),
            Err(e) => println!("  {name:<12} BROKEN: {e:#}"),
        }
    }
    // Every type a job may name: the legacy ones a plugin of another name serves too.
    println!("also served (legacy types):");
    for (kind, plugin) in Runtime::type_aliases() {
        println!("  {kind:<12} by {plugin}");
    }
    if let Some(path) = job_path {
        let job = Job::load(path)?;
        println!("named by {}:", path.display());
        let trust = TrustPolicy::load(&job.trust, &path.display().to_string())?;
        for entry in job.entries() {
            if let PluginSource::File { path, sha256 } = &entry.plugin {
                match runtime.load_file(path, sha256.as_deref(), &trust) {
                    Ok(p) => println!(
                        "  {} {} — {} WIT {} sha256 {}{}; {}",
                        entry.label(),
                        path.display(),
                        p.world.role,
                        p.world.version,
                        p.digest,
                        if sha256.is_some() { " (pinned)" } else { "" },
                        p.signature
                    ),
                    Err(e) => println!("  {} BROKEN: {e:#}", entry.label()),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn plugins_inspect(plugin: &str, trusted_keys: Vec<PathBuf>) -> Result<ExitCode> {
    let runtime = runtime_for(None)?;
    let settings = TrustSettings {
        keyrings: trusted_keys,
        require_signed: false,
    };
    let trust = TrustPolicy::load(&settings, "--trusted-keys")?;
    let loaded = load_named(&runtime, plugin, &trust)?;
    let mut instance = runtime
        .instantiate_bare(&loaded, plugin, backups::config::Limits::default())
        .await?;
    let about = match instance.describe().await {
        Ok(a) => a,
        Err(e) => return Err(anyhow::anyhow!("{plugin}: describe failed: {e}")),
    };
    println!("plugin:      {}", loaded.origin);
    println!(
        "type:        {} {} — {}",
        about.name, about.version, about.summary
    );
    println!(
        "world:       {}/{}@{}",
        world::PACKAGE,
        loaded.world.role,
        loaded.world.version
    );
    println!("sha256:      {}", loaded.digest);
    println!(
        "size:        {}",
        backups::text::human_bytes(loaded.size as u64)
    );
    println!(
        "trust:       {}",
        match loaded.origin {
            backups::runtime::Origin::Embedded(_) => "first-party, embedded in this binary",
            backups::runtime::Origin::File(_) =>
                "third-party file: gets only the grants a job gives it",
        }
    );
    println!("signature:   {}", loaded.signature);
    println!("config keys: {}", list_or_none(&about.config_keys));
    println!("secret keys: {}", list_or_none(&about.secret_keys));
    println!("imports (what it can ask the host for; each is still checked against grants):");
    for import in world::imports(runtime.engine(), &loaded.component) {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// A plugin named on the command line: a `.wasm` file, else an embedded plugin.
fn load_named(
    runtime: &Runtime,
    plugin: &str,
    trust: &TrustPolicy,
) -> anyhow::Result<backups::runtime::LoadedPlugin> {
    let as_path = Path::new(plugin);
    if as_path.exists() || plugin.ends_with(".wasm") {
        runtime.load_file(as_path, None, trust)
    } else {
        runtime.load_embedded(plugin)
    }
}

pub(super) async fn plugins_test(
    plugin: &str,
    kind: &str,
    config: String,
    grants: Option<&str>,
    large_mib: u64,
) -> Result<ExitCode> {
    let runtime = runtime_for(None)?;
    let loaded = load_named(&runtime, plugin, &TrustPolicy::permissive())?;
    if loaded.world.role.world() != kind {
        println!(
            "FAIL world: {} implements the {} world, not {kind}",
            loaded.origin, loaded.world.role
        );
        return Ok(ExitCode::from(1));
    }
    let config = match serde_json::from_str(&config) {
        Ok(c) => c,
        Err(e) => return Err(anyhow::anyhow!("--config: not a JSON object: {e}")),
    };
    let grants = match grants.map(serde_json::from_str::<serde_json::Value>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return Err(anyhow::anyhow!("--grants: not JSON: {e}")),
    };
    let options = backups::conformance::Options {
        config,
        grants,
        large_bytes: large_mib << 20,
    };
    let checks = match backups::conformance::run(&runtime, &loaded, &options, &mut |c| {
        println!("{c}")
    })
    .await
    {
        Ok(c) => c,
        Err(e) => return Err(e),
    };
    let failed = checks.iter().filter(|c| !c.passed).count();
    println!(
        "{} checks, {failed} failed: {}",
        checks.len(),
        if failed == 0 {
            "the plugin conforms"
        } else {
            "the plugin does NOT conform"
        }
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn plugins_new(
    name: &str,
    kind: &str,
    dir: &Path,
    sdk: &backups::scaffold::SdkSource,
) -> Result<ExitCode> {
    let role = match kind {
        "source" => Role::Source,
        "destination" => Role::Destination,
        _ => Role::Notifier,
    };
    match backups::scaffold::create(name, role, dir, sdk) {
        Ok(root) => {
            println!("created {} ({kind} plugin `{name}`)", root.display());
            println!(
                "next: cd {} && cargo build --release --target wasm32-wasip2",
                root.display()
            );
            println!(
                "then: backups plugins test target/wasm32-wasip2/release/{}.wasm --kind {kind} --config ... --grants ...",
                name.replace('-', "_")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}
