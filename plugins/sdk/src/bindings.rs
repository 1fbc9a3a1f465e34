//! The one place the WIT is turned into guest bindings.

pub mod config {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "config-plugin",
        pub_export_macro: true,
        default_bindings_module: "vpcrouter_plugin_sdk::__config_bindings",
    });
}
