//! `vpcrouter`: the front door (`vpcrouter::front`) on an async runtime;
//! its exit code (2: bad command line or plugin, 1: could not start, 0:
//! done, or stopped by a signal).

fn main() {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(vpcrouter::failure::EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(vpcrouter::front::main(std::env::args_os().collect()));
    std::process::exit(code);
}
