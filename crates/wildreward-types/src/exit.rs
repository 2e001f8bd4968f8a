//! Exit-code conventions the three binaries share, so scripts can tell "stage not built" from failure.

/// Exit status of a subcommand whose stage has not been built yet (`EX_UNAVAILABLE` from sysexits.h).
pub const EXIT_NOT_BUILT: u8 = 69;

/// Exit status for bad user input: a file, a flag or a field that cannot be used (`EX_DATAERR`).
pub const EXIT_BAD_INPUT: u8 = 65;

/// Returned by a subcommand whose stage has not landed yet: it must fail, never fake success.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` is not built yet (tracked in issue #{issue}: {title})")]
pub struct StageNotBuilt {
    /// The command line that was asked for, e.g. `wildreward train`.
    pub command: &'static str,
    /// The issue that builds it.
    pub issue: u32,
    /// The issue's title.
    pub title: &'static str,
}

/// A problem with the user's input (a file, a line, a field, a flag): every binary exits with
/// [`EXIT_BAD_INPUT`] when its error chain holds one. Shared so each stage's library can raise it
/// without the binaries knowing every library's error type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
