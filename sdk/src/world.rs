//! The generated bindings of the one world this build implements.
//!
//! The export macro is public so that `backups_sdk::export_*!` can expand it in the
//! plugin's crate; `default_bindings_module` points it back here.

#![allow(missing_docs, clippy::all)]

#[cfg(all(feature = "source", not(feature = "incremental")))]
wit_bindgen::generate!({
    path: "../wit",
    world: "backups:plugin/source@0.1.4",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "backups_sdk::__private::world",
    runtime_path: "backups_sdk::__private::wit_bindgen::rt",
});

#[cfg(feature = "incremental")]
wit_bindgen::generate!({
    path: "../wit",
    world: "backups:plugin/incremental-source@0.1.4",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "backups_sdk::__private::world",
    runtime_path: "backups_sdk::__private::wit_bindgen::rt",
});

#[cfg(feature = "destination")]
wit_bindgen::generate!({
    path: "../wit",
    world: "backups:plugin/destination@0.1.4",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "backups_sdk::__private::world",
    runtime_path: "backups_sdk::__private::wit_bindgen::rt",
});

#[cfg(feature = "notifier")]
wit_bindgen::generate!({
    path: "../wit",
    world: "backups:plugin/notifier@0.1.4",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "backups_sdk::__private::world",
    runtime_path: "backups_sdk::__private::wit_bindgen::rt",
});
