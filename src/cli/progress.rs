//! Build progress, rendered from [`build::Event`]s: live spinners on a terminal (indicatif),
//! plain prefixed lines for CI logs (as BuildKit's plain mode), or JSON lines.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::Progress;
use crate::builder::{Event, Reporter};

/// The reporter for a `--progress` mode.
pub fn reporter(mode: Progress, quiet: bool) -> Box<dyn Reporter> {
    match mode {
        Progress::Json => Box::new(JsonReporter),
        _ if quiet => Box::new(crate::builder::Silent),
        Progress::Tty => Box::new(TtyReporter::new()),
        Progress::Plain | Progress::Auto => Box::new(PlainReporter),
    }
}

fn err_line(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// `#N image: step` lines; each output line prefixed by its step number.
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { .. } => {}
            Event::Cached { step } => err_line(&format!(
                "#{} [{}] {} CACHED",
                step.id + 1,
                step.image,
                step.description
            )),
            Event::Running { step } => err_line(&format!(
                "#{} [{}] {}",
                step.id + 1,
                step.image,
                step.description
            )),
            Event::Output { step, line } => err_line(&format!("#{} {line}", step.id + 1)),
            Event::Explain { step, reason } => {
                err_line(&format!("#{} ran because {reason}", step.id + 1))
            }
            Event::Done { step, seconds, .. } => {
                err_line(&format!("#{} DONE {seconds:.1}s", step.id + 1))
            }
            Event::Failed { step, seconds } => {
                err_line(&format!("#{} ERROR after {seconds:.1}s", step.id + 1))
            }
            Event::Tagged { name, id, .. } => err_line(&format!("naming {name} → {}", id.short())),
        }
    }
}

/// One JSON object per event, on stderr.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, event: Event<'_>) {
        let step_json = |s: &crate::plan::Step| json!({"id": s.id, "image": s.image, "op": s.op, "description": s.description, "key": s.key.to_string()});
        let v = match event {
            Event::Started { steps } => json!({"event": "started", "steps": steps}),
            Event::Cached { step } => json!({"event": "cached", "step": step_json(step)}),
            Event::Running { step } => json!({"event": "running", "step": step_json(step)}),
            Event::Output { step, line } => {
                json!({"event": "output", "step": step.id, "line": line})
            }
            Event::Explain { step, reason } => {
                json!({"event": "explain", "step": step.id, "reason": reason})
            }
            Event::Done {
                step,
                seconds,
                layer,
            } => {
                json!({"event": "done", "step": step_json(step), "seconds": seconds, "layer_size": layer})
            }
            Event::Failed { step, seconds } => {
                json!({"event": "failed", "step": step_json(step), "seconds": seconds})
            }
            Event::Tagged {
                image,
                name,
                id,
                digest,
            } => {
                json!({"event": "tagged", "image": image, "name": name, "id": id.to_string(), "digest": digest.to_string()})
            }
        };
        err_line(&v.to_string());
    }
}

/// A spinner per running step with its elapsed time and live last line; finished steps are
/// printed above the spinners.
pub struct TtyReporter {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl TtyReporter {
    fn new() -> Self {
        TtyReporter {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn above(&self, line: String) {
        let _ = self.multi.println(line);
    }
}

impl Reporter for TtyReporter {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { .. } => {}
            Event::Cached { step } => self.above(format!(
                "  \x1b[2m#{:<3} {:<12} {} (cached)\x1b[0m",
                step.id + 1,
                step.image,
                step.description
            )),
            Event::Running { step } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} #{prefix} {msg} {elapsed:>4}")
                        .expect("a valid template"),
                );
                bar.set_prefix(format!("{:<3} {:<12}", step.id + 1, step.image));
                bar.set_message(step.description.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bars.lock().expect("not poisoned").insert(step.id, bar);
            }
            Event::Output { step, line } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").get(&step.id) {
                    let short: String = line.chars().take(60).collect();
                    bar.set_message(format!("{} \x1b[2m│ {short}\x1b[0m", step.description));
                }
            }
            Event::Done { step, seconds, .. } | Event::Failed { step, seconds } => {
                let ok = matches!(event, Event::Done { .. });
                if let Some(bar) = self.bars.lock().expect("not poisoned").remove(&step.id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.above(format!(
                    "{} #{:<3} {:<12} {} ({seconds:.1}s)",
                    if ok {
                        "\x1b[32m✔\x1b[0m"
                    } else {
                        "\x1b[31m✘\x1b[0m"
                    },
                    step.id + 1,
                    step.image,
                    step.description
                ));
            }
            Event::Explain { step, reason } => self.above(format!(
                "  #{:<3} {:<12} {}: ran because {reason}",
                step.id + 1,
                step.image,
                step.description
            )),
            Event::Tagged { .. } => {}
        }
    }
}
