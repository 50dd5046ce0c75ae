//! The `luminary` binary: glue between the command line and the library.

use clap::Parser;

fn main() {
    let cli = luminary::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUMINARY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match luminary::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
