//! A hostile source plugin written the way an outsider could write one: against the raw
//! WIT with wit-bindgen, calling `wasi:sockets`, `wasi:http` and `wasi:filesystem`
//! directly (the `wasip2` crate), with no SDK in between. Its config's `mode` picks the
//! attack and `target` what it is aimed at. When an attack gets through, the plugin writes
//! `BREACH …` and what it got into the artifact; when it is refused, it returns the error.
//!
//! - `lookup`: `ip-name-lookup.resolve-addresses(target)`
//! - `http`: one `outgoing-handler.handle` GET of `http://{target}/`
//! - `read`: `open-at(target)` below the first preopen, then `read`

wit_bindgen::generate!({
    path: "wit",
    world: "backups:plugin/source@0.1.0",
    generate_all,
});

use backups::plugin::types::{About, Context, ErrorKind, Grants, PluginError};
use exports::backups::plugin::dump::{self, DumpInfo};
use exports::backups::plugin::plugin;
use std::cell::RefCell;
use wasi::io::streams::OutputStream;

thread_local! {
    static CONFIG: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

struct Raw;

fn denied(what: String) -> PluginError {
    PluginError {
        kind: ErrorKind::Denied,
        message: what,
    }
}

impl plugin::Guest for Raw {
    fn describe() -> About {
        About {
            name: "raw-hostile".into(),
            version: "0".into(),
            summary: "raw WIT attacks (test fixture)".into(),
            config_keys: vec!["mode".into(), "target".into()],
            secret_keys: vec![],
            notify_on_success: false,
            notify_on_failure: false,
        }
    }
    fn requested_grants(_config: String) -> Result<Grants, PluginError> {
        Ok(Grants {
            read: vec![],
            write: vec![],
            net: vec![],
            run: vec![],
            env: vec![],
        })
    }
    fn configure(_ctx: Context, config: String) -> Result<(), PluginError> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| PluginError {
            kind: ErrorKind::InvalidConfig,
            message: e.to_string(),
        })?;
        let field = |k: &str| value[k].as_str().unwrap_or_default().to_string();
        CONFIG.with(|c| *c.borrow_mut() = (field("mode"), field("target")));
        Ok(())
    }
}

impl dump::Guest for Raw {
    fn dump(out: &OutputStream) -> Result<DumpInfo, PluginError> {
        let (mode, target) = CONFIG.with(|c| c.borrow().clone());
        let got = match mode.as_str() {
            "lookup" => lookup(&target)?,
            "http" => http_get(&target)?,
            "read" => read(&target)?,
            other => return Err(denied(format!("unknown mode {other:?}"))),
        };
        let mut message = format!("BREACH {mode} {target}: ").into_bytes();
        message.extend(got);
        for chunk in message.chunks(4096) {
            out.blocking_write_and_flush(chunk)
                .map_err(|e| denied(format!("{e:?}")))?;
        }
        Ok(DumpInfo {
            kind: "txt".into(),
            warnings: vec![],
        })
    }
}

fn lookup(name: &str) -> Result<Vec<u8>, PluginError> {
    use wasip2::sockets::{instance_network, ip_name_lookup};
    let network = instance_network::instance_network();
    let stream = ip_name_lookup::resolve_addresses(&network, name)
        .map_err(|e| denied(format!("resolve-addresses {name}: {e:?}")))?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(address)) => found.push(format!("{address:?}")),
            Ok(None) => break,
            Err(ip_name_lookup::ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(denied(format!("resolve-next-address {name}: {e:?}"))),
        }
    }
    Ok(found.join(", ").into_bytes())
}

fn http_get(authority: &str) -> Result<Vec<u8>, PluginError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let set = request.set_scheme(Some(&Scheme::Http)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some("/")).is_ok();
    if !set {
        return Err(denied(format!(
            "a request to {authority} could not be built"
        )));
    }
    let body = request.body().map_err(|_| denied("request body".into()))?;
    let future = outgoing_handler::handle(request, None)
        .map_err(|e| denied(format!("handle {authority}: {e:?}")))?;
    OutgoingBody::finish(body, None).map_err(|e| denied(format!("finish: {e:?}")))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(format!("status {}", response.status()).into_bytes()),
        Some(Ok(Err(e))) => Err(denied(format!("GET {authority}: {e:?}"))),
        other => Err(denied(format!("GET {authority}: {other:?}"))),
    }
}

fn read(path: &str) -> Result<Vec<u8>, PluginError> {
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let dirs = get_directories();
    let Some((dir, _)) = dirs.first() else {
        return Err(denied("no preopen".into()));
    };
    let file = dir
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| denied(format!("open-at {path}: {e:?}")))?;
    let (bytes, _) = file
        .read(4096, 0)
        .map_err(|e| denied(format!("read {path}: {e:?}")))?;
    Ok(bytes)
}

export!(Raw);
