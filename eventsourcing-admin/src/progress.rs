//! Progress of long commands (`verify`, `vacuum`) on stderr: an `indicatif` bar with rate and
//! ETA when stderr is a terminal, otherwise a plain line now and then (logs stay readable).

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A progress display for `total` units of `what`.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A bar on a terminal, plain lines elsewhere (stderr either way: stdout stays the report,
    /// `--json` included).
    pub(crate) fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            what,
            started: now,
            // The first plain line comes after LINE_EVERY, so short runs stay quiet.
            last_line: now,
        }
    }

    /// `done` of `total` units so far.
    pub(crate) fn set(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.max(done));
                bar.set_position(done);
            }
            None => {
                let now = Instant::now();
                if now
                    .checked_duration_since(self.last_line)
                    .is_some_and(|d| d >= LINE_EVERY)
                {
                    self.last_line = now;
                    let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
                    eprintln!(
                        "{}: {done}/{total} ({:.0}/s)",
                        self.what,
                        done as f64 / secs
                    );
                }
            }
        }
    }

    /// A step's name, for step-wise work (`vacuum`): shown on the bar, or as a line.
    pub(crate) fn step(&mut self, index: usize, total: usize, name: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(index as u64);
                bar.set_message(name.to_owned());
            }
            None => eprintln!("{} {}/{}: {name}", self.what, index + 1, total),
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
