//! A config-source plugin built against a future, incompatible WIT version
//! (0.2.0): the host must refuse it at load and name both versions.

wit_bindgen::generate!({
    inline: "
        package vpcrouter:plugin@0.2.0;
        interface config-source {
            describe: func() -> string;
        }
        world next-version {
            export config-source;
        }
    ",
});

struct Future;

impl exports::vpcrouter::plugin::config_source::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);
