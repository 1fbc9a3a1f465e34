//! `vpcrouter completions SHELL` and `vpcrouter manpages DIR`: shell
//! completions and manual pages generated from the command line itself,
//! so they never drift from it (an install writes them; see `make
//! install`). Plugin options are not in them: they are only known once a
//! plugin is loaded (`vpcrouter -m NAME --help` lists them).

use clap::{Arg, Command, value_parser};
use clap_complete::Shell;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::failure::Failure;

/// Words after the program name that run this module instead of the daemon.
pub const COMMANDS: [&str; 2] = ["completions", "manpages"];

/// The whole command line as a user sees it: the daemon's own flags and
/// every subcommand.
pub fn command() -> Command {
    crate::cli::command(&[])
        .subcommand(
            crate::tool::command()
                .name("plugin")
                .bin_name("vpcrouter plugin"),
        )
        .subcommand(crate::demo::command())
        .subcommands(crate::remote::commands())
        .subcommand(completions_command())
        .subcommand(manpages_command())
}

fn completions_command() -> Command {
    Command::new("completions")
        .about("Print the shell completion script for SHELL (e.g. to /usr/share/bash-completion/completions/vpcrouter)")
        .arg(
            Arg::new("shell")
                .value_name("SHELL")
                .required(true)
                .value_parser(value_parser!(Shell)),
        )
}

fn manpages_command() -> Command {
    Command::new("manpages")
        .about("Write the manual pages (vpcrouter.1 and one per subcommand) into DIR")
        .arg(
            Arg::new("dir")
                .value_name("DIR")
                .required(true)
                .value_parser(value_parser!(PathBuf)),
        )
}

/// Run `vpcrouter completions|manpages ...` (`args` starts at the program
/// name).
pub fn main(args: &[OsString]) -> Result<(), Failure> {
    let matches = Command::new("vpcrouter")
        .subcommand_required(true)
        .subcommand(completions_command())
        .subcommand(manpages_command())
        .try_get_matches_from(args)
        .map_err(Failure::CommandLine)?;
    match matches.subcommand() {
        Some(("completions", sub)) => {
            let shell = *sub.get_one::<Shell>("shell").expect("required");
            clap_complete::generate(shell, &mut command(), "vpcrouter", &mut std::io::stdout());
            Ok(())
        }
        Some(("manpages", sub)) => {
            let dir = sub.get_one::<PathBuf>("dir").expect("required");
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(command(), dir))
                .map_err(|e| {
                    Failure::failed(
                        &format!("cannot write manual pages in {}", dir.display()),
                        e,
                    )
                })
        }
        _ => unreachable!("a subcommand is required"),
    }
}
