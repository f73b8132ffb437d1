use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kdr::cli::Cli::parse();
    ExitCode::from(kdr::app::run(cli))
}
