//! Shell completions and the man page, generated from the clap definitions in `cli`, so they
//! never disagree with `--help`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> String {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kdr", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// kdr's man page (roff): the top-level page, which names every subcommand.
pub fn man_page() -> String {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    String::from_utf8_lossy(&page).into_owned()
}
