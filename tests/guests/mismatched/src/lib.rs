//! Claims to be a vpcrouter config-source plugin of the right version, but
//! its interface lacks most functions and `describe` returns the wrong type:
//! the host must refuse it at load, saying it does not fit the contract.

wit_bindgen::generate!({
    inline: "
        package vpcrouter:plugin@0.1.0;
        interface config-source {
            describe: func() -> string;
        }
        world mismatched {
            export config-source;
        }
    ",
});

struct Mismatched;

impl exports::vpcrouter::plugin::config_source::Guest for Mismatched {
    fn describe() -> String {
        "not a plugin-info".into()
    }
}

export!(Mismatched);
