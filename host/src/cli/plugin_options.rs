//! The full command: the daemon's flags plus each loaded plugin's options,
//! and the parsed matches split back into the two.

use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::flags::Cli;
use crate::plugin::{IdentityError, LoadedPlugin, OptionKind, PluginInfo, check_identities};

/// Option values given to one plugin, by option name.
pub type PluginOptions = Vec<(String, String)>;

/// Old short flags of plugin options, kept for old command lines.
const LEGACY_SHORT: &[(&str, char)] = &[("file", 'f')];

/// The full command: the daemon's flags, plus each loaded plugin's options
/// under a heading of its own.
pub fn command(plugins: &[&PluginInfo]) -> Command {
    let mut command = Cli::command();
    for plugin in plugins {
        command = command.next_help_heading(format!(
            "Options of plugin {} {}",
            plugin.name, plugin.version
        ));
        for option in &plugin.options {
            let mut help = option.help.clone();
            if option.required && option.default.is_none() {
                help.push_str(" [required]");
            }
            if let Some(default) = &option.default {
                help.push_str(&format!(" [default: {default}]"));
            }
            let mut arg = Arg::new(plugin_arg_id(&option.name))
                .long(option.name.clone())
                .value_name(match option.kind {
                    OptionKind::File
                    | OptionKind::TlsCa
                    | OptionKind::TlsCert
                    | OptionKind::TlsKey => "FILE",
                    OptionKind::EndpointHost => "HOST",
                    OptionKind::EndpointPort => "PORT",
                    OptionKind::Text | OptionKind::Flag => "VALUE",
                })
                .help(help)
                .allow_negative_numbers(true)
                .action(ArgAction::Set);
            if option.kind == OptionKind::Flag {
                arg = arg
                    .num_args(0)
                    .default_missing_value("true")
                    .allow_negative_numbers(false);
            }
            if let Some((_, short)) = LEGACY_SHORT.iter().find(|(name, _)| *name == option.name) {
                arg = arg.short(*short);
            }
            command = command.arg(arg);
        }
    }
    command
}

/// Plugin options live in their own id namespace, so a plugin cannot shadow
/// a daemon flag's value.
fn plugin_arg_id(name: &str) -> String {
    format!("plugin:{name}")
}

/// Plugins that cannot run together, or beside the daemon's flags: two of
/// one name, or an option named like a daemon flag or another plugin's.
pub fn check_loaded(loaded: &[LoadedPlugin]) -> Result<(), IdentityError> {
    check_identities(loaded)?;
    let infos: Vec<&PluginInfo> = loaded.iter().map(|l| &l.info).collect();
    match colliding_option(&infos) {
        None => Ok(()),
        Some((plugin, option, owner)) => Err(IdentityError {
            path: loaded
                .iter()
                .find(|l| l.info.name == plugin)
                .expect("loaded")
                .path
                .clone(),
            problem: format!(
                "option --{option} collides with {owner}; a plugin's options need names of their \
                 own (the bundled ones prefix theirs, e.g. --tcp_check_port)"
            ),
        }),
    }
}

/// An option of one plugin that collides with a daemon flag or with an
/// option of an earlier plugin: (plugin, option, what it collides with).
fn colliding_option(plugins: &[&PluginInfo]) -> Option<(String, String, String)> {
    let daemon = Cli::command();
    let mut taken: Vec<(String, String)> = ["help", "version"]
        .iter()
        .map(|n| (n.to_string(), "a daemon option".to_string()))
        .chain(
            daemon
                .get_arguments()
                .filter_map(|a| Some((a.get_long()?.to_string(), "a daemon option".to_string()))),
        )
        .collect();
    for plugin in plugins {
        for option in &plugin.options {
            if let Some((_, owner)) = taken.iter().find(|(name, _)| *name == option.name) {
                return Some((plugin.name.clone(), option.name.clone(), owner.clone()));
            }
        }
        taken.extend(plugin.options.iter().map(|o| {
            (
                o.name.clone(),
                format!("an option of plugin {}", plugin.name),
            )
        }));
    }
    None
}

/// Split parsed matches into the daemon's flags and each plugin's options
/// (as given; defaults are the plugin runtime's business).
pub fn split(
    matches: &ArgMatches,
    plugins: &[&PluginInfo],
) -> Result<(Cli, Vec<PluginOptions>), clap::Error> {
    let cli = Cli::from_arg_matches(matches)?;
    let options = plugins
        .iter()
        .map(|plugin| {
            plugin
                .options
                .iter()
                .filter_map(|o| {
                    let value = matches.get_one::<String>(&plugin_arg_id(&o.name))?;
                    Some((o.name.clone(), value.clone()))
                })
                .collect()
        })
        .collect();
    Ok((cli, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_command_is_well_formed() {
        command(&[]).debug_assert();
    }
}
