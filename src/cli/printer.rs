//! All output of the CLI goes through the [`Printer`]: results to stdout, diagnostics to stderr,
//! rendered for a terminal (colours, unicode), for logs (plain text) or as JSON lines.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, JSONReportHandler};

/// How output is rendered (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// tty on a terminal, plain otherwise
    Auto,
    /// colours and live progress
    Tty,
    /// plain lines, for CI logs
    Plain,
    /// JSON lines, for machines
    Json,
}

/// Where output goes and how it looks.
pub struct Printer {
    mode: Progress,
    quiet: bool,
    verbose: u8,
}

/// The width diagnostics wrap at when not on a terminal: fixed, so logs and tests are stable.
const PLAIN_WIDTH: usize = 100;

impl Printer {
    pub fn new(progress: Progress, quiet: bool, verbose: u8) -> Self {
        let mode = match progress {
            Progress::Auto if std::io::stderr().is_terminal() => Progress::Tty,
            Progress::Auto => Progress::Plain,
            other => other,
        };
        Printer {
            mode,
            quiet,
            verbose,
        }
    }

    pub fn mode(&self) -> Progress {
        self.mode
    }

    pub fn is_json(&self) -> bool {
        self.mode == Progress::Json
    }

    /// A result line on stdout (suppressed by `-q`).
    pub fn out(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let mut o = std::io::stdout().lock();
            // A closed pipe (`boxr plan | head`) is not an error worth reporting.
            let _ = writeln!(o, "{}", line.as_ref());
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A closing remark on stderr (suppressed by `-q`; in JSON mode, a JSON line).
    pub fn note(&self, line: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let mut e = std::io::stderr().lock();
        if self.is_json() {
            let _ = writeln!(e, "{}", serde_json::json!({"note": line.as_ref()}));
        } else {
            let _ = writeln!(e, "{}", line.as_ref());
        }
    }

    /// Data on stdout that `-q` does not suppress (JSON, completions, ids).
    pub fn data(&self, text: impl AsRef<str>) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_ref().as_bytes());
        let _ = o.flush();
    }

    /// A message on stderr shown with `-v`.
    pub fn verbose(&self, line: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Renders a diagnostic to stderr.
    pub fn diagnostic(&self, diag: &dyn Diagnostic) {
        let text = render(diag, self.mode);
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(text.as_bytes());
        let _ = e.flush();
    }
}

/// Renders a diagnostic as the given mode shows it.
pub fn render(diag: &dyn Diagnostic, mode: Progress) -> String {
    let mut out = String::new();
    let result = match mode {
        Progress::Json => {
            let r = JSONReportHandler::new().render_report(&mut out, diag);
            out.push('\n');
            r
        }
        Progress::Tty => {
            let color = std::env::var_os("NO_COLOR").is_none();
            let theme = if color {
                GraphicalTheme::unicode()
            } else {
                GraphicalTheme::unicode_nocolor()
            };
            let width = terminal_width().unwrap_or(PLAIN_WIDTH);
            GraphicalReportHandler::new_themed(theme)
                .with_width(width)
                .render_report(&mut out, diag)
        }
        Progress::Plain | Progress::Auto => {
            GraphicalReportHandler::new_themed(GraphicalTheme::none())
                .with_width(PLAIN_WIDTH)
                .with_links(false)
                .render_report(&mut out, diag)
        }
    };
    if result.is_err() {
        out = format!("Error: {diag}\n");
    }
    out
}

fn terminal_width() -> Option<usize> {
    std::env::var("COLUMNS").ok()?.parse().ok()
}
