//! Exit codes: a documented contract, one per kind of ending (see `kdr --help`).

/// The run or check succeeded (a dry run that would proceed counts).
pub const OK: u8 = 0;
/// A step failed, or a check did not hold.
pub const FAILED: u8 = 1;
/// Bad usage or an invalid plan: nothing was done.
pub const USAGE: u8 = 2;
/// An operator aborted at a human gate.
pub const ABORTED: u8 = 3;
/// Interrupted with Ctrl-C.
pub const INTERRUPTED: u8 = 130;

pub const HELP: &str = "Exit codes:
  0    success (a dry run that would proceed counts)
  1    a step failed or a check did not hold
  2    bad usage or an invalid plan; nothing was done
  3    aborted by the operator at a human gate
  130  interrupted (Ctrl-C)";
