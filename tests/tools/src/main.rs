//! `test-tools component WIT_DIR WORLD`: the WebAssembly text of a core
//! module on stdin, the component of that world (its metadata embedded,
//! UTF-8 strings, validated) on stdout.
//!
//! `test-tools openmetrics`: OpenMetrics text on stdin; the names of its
//! metric families on stdout, one a line, or exit 1 naming the fault.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("test-tools: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let output = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["component", wit_dir, world] => component(&input, wit_dir, world),
        ["openmetrics"] => openmetrics(&input),
        _ => Err("usage: test-tools component WIT_DIR WORLD | test-tools openmetrics".into()),
    };
    match output.and_then(|bytes| {
        std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| e.to_string())
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test-tools: {e}");
            ExitCode::FAILURE
        }
    }
}

fn component(wat: &str, wit_dir: &str, world: &str) -> Result<Vec<u8>, String> {
    let mut module = wat::parse_str(wat).map_err(|e| e.to_string())?;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(wit_dir).map_err(|e| format!("{e:#}"))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .map_err(|e| format!("{e:#}"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| format!("{e:#}"))?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

fn openmetrics(text: &str) -> Result<Vec<u8>, String> {
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .map_err(|e| format!("not OpenMetrics: {e:?}"))?;
    let mut names: Vec<&String> = parsed.families.keys().collect();
    names.sort();
    Ok(names
        .into_iter()
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect())
}
