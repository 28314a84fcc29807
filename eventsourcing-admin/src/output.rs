//! Printing: plain text for people, or one JSON document with `--json`; failures and the exit
//! codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; nothing wrong found |
//! | 1 | the command failed (database error, refused), or `verify` found problems |
//! | 2 | usage error (clap), or a setting is missing or malformed: the variable is named |

use std::process::ExitCode;

use eventsourcing::{ConfigError, Error};
use serde::Serialize;

/// The command failed, or a setting is wrong.
pub(crate) const EXIT_FAILED: u8 = 1;
/// A usage or configuration error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// Where and how reports go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints `report` as JSON with `--json`, else the text `text` makes of it.
    pub(crate) fn report<T: Serialize>(
        &self,
        report: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        if self.json {
            let json = serde_json::to_string_pretty(report)
                .map_err(|e| Failure::Failed(format!("cannot write the report as JSON: {e}")))?;
            println!("{json}");
        } else {
            let text = text(report);
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        Ok(())
    }
}

/// Why a command did not succeed, and so its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A setting is missing or malformed, or the command cannot apply to this store (exit 2).
    Usage(String),
    /// The command failed (exit 1).
    Failed(String),
    /// The command ran and found problems, already reported; this is the summary (exit 1).
    Problems(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Config(e) => Failure::Usage(e.to_string()),
            other => Failure::Failed(other.to_string()),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl Failure {
    /// Prints the failure on stderr and returns its exit code.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_USAGE)
            }
            Failure::Failed(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_FAILED)
            }
            Failure::Problems(summary) => {
                eprintln!("{summary}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    }
}
