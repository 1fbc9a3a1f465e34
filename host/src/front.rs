//! The front door: every command line goes through [`main`], which picks
//! the program (the daemon, or a subcommand: `plugin`, `demo`, `drain`,
//! `undrain`, `completions`, `manpages`), runs it, and turns its `failure::Failure` into
//! its report and exit code.

use std::ffi::OsString;

/// Run the command line `args` (program name first); the process exit
/// code.
pub async fn main(args: Vec<OsString>) -> i32 {
    let outcome = match args.get(1).and_then(|word| word.to_str()) {
        Some("plugin") => crate::tool::main(&args[1..]).await,
        Some("demo") => crate::demo::main(&args[1..]).await,
        Some(word) if crate::remote::COMMANDS.contains(&word) => crate::remote::main(&args).await,
        Some(word) if crate::manuals::COMMANDS.contains(&word) => crate::manuals::main(&args),
        _ => crate::daemon::main(args).await,
    };
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            failure.report();
            failure.exit_code()
        }
    }
}
