//! The one place the WIT is turned into guest bindings: one module per
//! world, the health world reusing the shared interfaces of the config one.

pub mod config {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.5",
        world: "config-plugin",
        pub_export_macro: true,
        default_bindings_module: "vpcrouter_plugin_sdk::__config_bindings",
    });
}

pub mod notifier {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.5",
        world: "notifier-plugin",
        pub_export_macro: true,
        default_bindings_module: "vpcrouter_plugin_sdk::__notifier_bindings",
        with: {
            "vpcrouter:plugin/types@0.1.5": crate::bindings::config::vpcrouter::plugin::types,
            "vpcrouter:plugin/log@0.1.5": crate::bindings::config::vpcrouter::plugin::log,
            "vpcrouter:plugin/files@0.1.5": crate::bindings::config::vpcrouter::plugin::files,
            "vpcrouter:plugin/outbound@0.1.5": crate::bindings::config::vpcrouter::plugin::outbound,
        },
    });
}

pub mod health {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.5",
        world: "health-plugin",
        pub_export_macro: true,
        default_bindings_module: "vpcrouter_plugin_sdk::__health_bindings",
        with: {
            "vpcrouter:plugin/types@0.1.5": crate::bindings::config::vpcrouter::plugin::types,
            "vpcrouter:plugin/log@0.1.5": crate::bindings::config::vpcrouter::plugin::log,
            "vpcrouter:plugin/timers@0.1.5": crate::bindings::config::vpcrouter::plugin::timers,
        },
    });
}
