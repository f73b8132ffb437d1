//! Shell completions and the man page, generated from the clap definitions in `cli`, so they
//! never disagree with `--help`.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};
use crate::exit;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: CompletionShell) -> u8 {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "kdr", &mut out);
    match out.flush() {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: failed to write the completion script: {e}");
            exit::FAILED
        }
    }
}

/// Print kdr's man page (roff): the top-level page, which names every subcommand.
pub fn man_page() -> u8 {
    let page = clap_mangen::Man::new(Cli::command());
    let mut out = std::io::stdout().lock();
    match page.render(&mut out).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: failed to write the man page: {e}");
            exit::FAILED
        }
    }
}
