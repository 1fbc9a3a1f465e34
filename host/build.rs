//! Records the bundled plugins (`make plugins` puts them in `plugins/`
//! before the daemon is built): their SHA-256 digests and their bytes. A
//! plugin file whose digest is on this list is one the project built: the
//! daemon applies the defaults of its grant options (romana's etcd
//! address), which it never does for a plugin it does not know. The bytes
//! make `-m NAME` work from a binary with no plugin folder beside it.

use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::Path;

/// The bundled plugins, as the Makefile's BUNDLED.
const BUNDLED: &[&str] = &[
    "configfile",
    "http",
    "fixedconf",
    "tcp",
    "icmpecho",
    "httpcheck",
    "webhook",
    "romana",
];

fn main() {
    // Read when the script runs, not when it was compiled: a build script
    // compiled in another checkout sharing the target directory would
    // otherwise look for that checkout's plugins.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("../plugins");
    let out_dir = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).to_path_buf();
    let mut table = String::from("&[\n");
    for name in BUNDLED {
        let path = dir.join(format!("{name}.wasm"));
        println!("cargo::rerun-if-changed={}", path.display());
        // Missing (a build before `make plugins`): that plugin is simply not
        // trusted; the daemon says so when a default is not granted.
        let Ok(bytes) = std::fs::read(&path) else {
            println!(
                "cargo::warning={} is missing: build the plugins first (make)",
                path.display()
            );
            continue;
        };
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // A copy of its own: the bytes compiled in are the ones digested.
        let copy = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&copy, &bytes).expect("copy a bundled plugin");
        writeln!(
            table,
            "    ({name:?}, {digest:?}, include_bytes!({:?})),",
            copy.display().to_string()
        )
        .expect("write to a String");
    }
    table.push(']');
    std::fs::write(out_dir.join("bundled.rs"), table).expect("write the bundled table");
}
