//! The plugin selection, read from the raw arguments before the full
//! command line can be parsed (the plugins' options are not known yet).

use std::ffi::OsString;

/// What must be known before the full command line can be parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Peek {
    pub mode_plugin: Option<String>,
    pub mode: Option<String>,
    pub health_plugins: Vec<String>,
    pub health: Option<String>,
    /// `--notify` values (a `webhook:` one loads the bundled webhook).
    pub notify: Vec<String>,
    pub notify_plugins: Vec<String>,
    pub multi_plugins: Option<String>,
    pub plugin_dir: Option<String>,
    pub plugin_cache_dir: Option<String>,
    pub state_dir: Option<String>,
    pub no_plugin_cache: bool,
    pub plugin_call_timeout: Option<String>,
    pub plugin_sha256: Vec<String>,
    pub plugin_pins: Option<String>,
}

/// Find the plugin-selecting flags among raw arguments, in every form clap
/// accepts them (`--mode-plugin P`, `--mode-plugin=P`, `-m NAME`, `-mNAME`).
pub fn peek(args: &[OsString]) -> Peek {
    let mut peek = Peek::default();
    let mut words = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (word.clone(), None),
        };
        let slot = match flag.as_str() {
            "--mode-plugin" => &mut peek.mode_plugin,
            "--mode" | "-m" => &mut peek.mode,
            "--health" | "-H" => &mut peek.health,
            "--multi_plugins" => &mut peek.multi_plugins,
            "--health-plugin" => {
                peek.health_plugins.extend(inline.or_else(|| words.next()));
                continue;
            }
            "--notify" => {
                peek.notify.extend(inline.or_else(|| words.next()));
                continue;
            }
            "--notify-plugin" => {
                peek.notify_plugins.extend(inline.or_else(|| words.next()));
                continue;
            }
            "--plugin-sha256" => {
                peek.plugin_sha256.extend(inline.or_else(|| words.next()));
                continue;
            }
            "--plugin-dir" => &mut peek.plugin_dir,
            "--plugin-pins" => &mut peek.plugin_pins,
            "--plugin-cache-dir" => &mut peek.plugin_cache_dir,
            "--state-dir" => &mut peek.state_dir,
            "--plugin-call-timeout" => &mut peek.plugin_call_timeout,
            "--no-plugin-cache" => {
                peek.no_plugin_cache = true;
                continue;
            }
            short if short.starts_with("-m") && !short.starts_with("--") => {
                peek.mode = Some(short[2..].to_string());
                continue;
            }
            short if short.starts_with("-H") => {
                peek.health = Some(short[2..].to_string());
                continue;
            }
            _ => continue,
        };
        *slot = inline.or_else(|| words.next());
    }
    peek
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("vpcrouter")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn peek_finds_the_plugin_in_every_form() {
        assert_eq!(
            peek(&args("-m configfile -f x")).mode.as_deref(),
            Some("configfile")
        );
        assert_eq!(peek(&args("-mhttp")).mode.as_deref(), Some("http"));
        assert_eq!(
            peek(&args("--mode=fixedconf")).mode.as_deref(),
            Some("fixedconf")
        );
        let p = peek(&args(
            "--verbose --mode-plugin a/b.wasm --plugin-dir=/x --no-plugin-cache",
        ));
        assert_eq!(p.mode_plugin.as_deref(), Some("a/b.wasm"));
        assert_eq!(p.plugin_dir.as_deref(), Some("/x"));
        assert!(p.no_plugin_cache);
        assert_eq!(peek(&args("-- -m x")), Peek::default());
        let p = peek(&args(
            "-H multi --multi_plugins=icmpecho:tcp --health-plugin a.wasm --health-plugin=b.wasm",
        ));
        assert_eq!(p.health.as_deref(), Some("multi"));
        assert_eq!(p.multi_plugins.as_deref(), Some("icmpecho:tcp"));
        assert_eq!(p.health_plugins, ["a.wasm", "b.wasm"]);
        assert_eq!(peek(&args("-Htcp")).health.as_deref(), Some("tcp"));
    }
}
