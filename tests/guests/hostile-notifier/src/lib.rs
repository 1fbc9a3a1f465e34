//! A notifier plugin that misbehaves on purpose, for the host's tests.
//! `--hn_behaviour` is one of:
//!
//! - `spin`: loop forever in `notify` (the call's deadline must end it);
//! - `trap`: panic in `notify`;
//! - `bloat`: grow its memory in `notify` until the cap stops it;
//! - `flood`: log 1,000 lines of 64 KiB per batch, then refuse it.
//!
//! Whatever it does, the daemon's failovers must not wait for it.

use vpcrouter_plugin_sdk::{
    Batch, Notifier, OptionSpec, Options, PluginInfo, export_notifier, log,
};

struct HostileNotifier {
    behaviour: String,
}

impl Notifier for HostileNotifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-notifier".into(),
            version: "0.0.1".into(),
            description: "Misbehaves on purpose".into(),
            options: vec![
                OptionSpec::text("hn_behaviour", "spin, trap, bloat or flood").required(),
            ],
            http_paths: vec![],
        }
    }

    fn init(options: Options) -> Result<Self, String> {
        Ok(Self {
            behaviour: options.require("hn_behaviour")?.to_string(),
        })
    }

    fn notify(&mut self, batch: Batch) -> Result<(), String> {
        match self.behaviour.as_str() {
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(batch.notices.len() as u64));
                }
            }
            "trap" => panic!("a notifier that traps ({} notices)", batch.notices.len()),
            "bloat" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => {
                let line = "x".repeat(64 << 10);
                for _ in 0..1000 {
                    log!(Info, "{line}");
                }
                Err("flooded".into())
            }
        }
    }
}

export_notifier!(HostileNotifier);
