//! What a component says about itself before anything is compiled: its
//! top-level imports and exports, and which toolchain produced it (the
//! `producers` custom section). A plugin importing something the daemon
//! does not provide is refused here, in milliseconds, naming the import and
//! the usual fix, instead of after a compile that can take seconds.

use wasmparser::{KnownCustom, Parser, Payload};

/// Deepest nesting of modules and components accepted. A plugin is a
/// component holding core modules and, from some toolchains, a component
/// or two (adapters): a few levels. Deeper nesting only makes validation
/// and compilation costly.
pub const MAX_NESTING: usize = 8;

/// A component's outline.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outline {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// e.g. `Rust 1.95.0 (rustc 1.95.0, wit-component 0.244.0)`: the
    /// languages and tools of every producers section, the component's own
    /// and its modules'.
    pub producer: Option<String>,
}

/// Read the outline of a component (already known to start like one).
pub fn outline(wasm: &[u8]) -> Result<Outline, String> {
    let mut outline = Outline::default();
    let (mut languages, mut tools) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "modules and components nested more than {MAX_NESTING} deep"
                    ));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    let import = import.map_err(|e| e.to_string())?;
                    outline.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let export = export.map_err(|e| e.to_string())?;
                    outline.exports.push(export.name.name.to_string());
                }
            }
            Payload::CustomSection(section) => {
                if let KnownCustom::Producers(fields) = section.as_known() {
                    producers(fields, &mut languages, &mut tools);
                }
            }
            _ => {}
        }
    }
    let producer = match (languages.is_empty(), tools.is_empty()) {
        (true, true) => None,
        (false, true) => Some(languages.join(", ")),
        (true, false) => Some(tools.join(", ")),
        (false, false) => Some(format!("{} ({})", languages.join(", "), tools.join(", "))),
    };
    outline.producer = producer.map(|p| crate::text::clip(&p, 256).into_owned());
    Ok(outline)
}

/// Add a producers section's languages and tools (processed-by, sdk) to
/// those seen, once each.
fn producers(
    fields: wasmparser::ProducersSectionReader<'_>,
    languages: &mut Vec<String>,
    tools: &mut Vec<String>,
) {
    for field in fields.into_iter().flatten() {
        let list = match field.name {
            "language" => &mut *languages,
            _ => &mut *tools,
        };
        for value in field.values.into_iter().flatten() {
            let named = format!("{} {}", value.name, value.version)
                .trim()
                .to_string();
            if !list.contains(&named) {
                list.push(named);
            }
        }
    }
}

/// The WASI packages the daemon links (with nothing granted through them);
/// a plugin may import any interface of these.
const PROVIDED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The first import the daemon cannot satisfy, with what to do about it.
pub fn unsupported_import(imports: &[String]) -> Option<String> {
    let import = imports.iter().find(|name| {
        !name.starts_with("vpcrouter:plugin/") && !PROVIDED_WASI.iter().any(|p| name.starts_with(p))
    })?;
    let fix = if import.starts_with("wasi:http/") {
        "plugins reach the network only through vpcrouter:plugin/outbound; build without \
         wasi:http (componentize-js: `-d http fetch-event`; componentize-py: do not import \
         the http bindings)"
    } else {
        "a vpcrouter plugin may import only the vpcrouter:plugin interfaces and the WASI \
         cli, io, clocks, random, filesystem and sockets packages (see PLUGINS.md)"
    };
    Some(format!(
        "imports {import}, which vpcrouter does not provide: {fix}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_imports_are_named_with_the_fix() {
        let ok = ["wasi:cli/environment@0.2.0", "vpcrouter:plugin/log@0.1.0"].map(String::from);
        assert_eq!(unsupported_import(&ok), None);
        let http = ["wasi:io/streams@0.2.3", "wasi:http/outgoing-handler@0.2.3"].map(String::from);
        let message = unsupported_import(&http).unwrap();
        assert!(
            message.contains("wasi:http/outgoing-handler@0.2.3"),
            "{message}"
        );
        assert!(message.contains("-d http fetch-event"), "{message}");
        let other = ["acme:secrets/vault".to_string()];
        assert!(
            unsupported_import(&other)
                .unwrap()
                .contains("acme:secrets/vault")
        );
    }
}
