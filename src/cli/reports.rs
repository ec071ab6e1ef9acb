//! Rendering: the library's values as text (or JSON) on the terminal, and
//! the live progress line of long commands.

use std::io::Write as _;
use std::path::Path;

use crate::check::golden::{Drift, Report as GoldenReport};
use crate::check::validate::{Diagnostic, Severity};
use crate::compile::listing::Listed;
use crate::diagnostics::{Error, Result};

pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialize to JSON")
    );
}

pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("standard output", "write to", e)),
    }
}

pub fn money(v: Option<f64>) -> String {
    v.map_or("unpriced".to_string(), |v| format!("${v:.2}"))
}

pub(super) fn per_hour(v: Option<f64>) -> String {
    v.map_or("unpriced".to_string(), |p| format!("${p:.4}"))
}

/// `validate`'s findings on stderr, and the tally when they fail.
pub fn print_diagnostics(all: &[Diagnostic], failing: bool, strict: bool) {
    for d in all {
        eprintln!("{d}\n");
    }
    if failing {
        let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
        eprintln!(
            "{errors} error(s), {} warning(s){}",
            all.len() - errors,
            if strict {
                " (--strict: warnings fail too)"
            } else {
                ""
            }
        );
    }
}

/// `check`'s drift on stdout, what it blessed and what to do on stderr.
pub fn print_drift(report: &GoldenReport, dir: &Path) {
    for drift in &report.drift {
        match drift {
            Drift::Changed {
                profile,
                file,
                diff,
            } => println!("{file}: profile `{profile}` compiles to other bytes\n{diff}"),
            Drift::Missing { profile, file } => {
                println!("{file}: missing; profile `{profile}` has no golden file yet")
            }
            Drift::Stale { file } => println!("{file}: stale; no profile compiles to it"),
        }
    }
    for file in &report.blessed {
        eprintln!("blessed {file}");
    }
    if !report.drift.is_empty() {
        eprintln!(
            "error: {} of {} profiles drifted from {}; if the change is intended, run `bootforge check --bless` and commit {}",
            report.drift.len(),
            report.checked.len(),
            dir.display(),
            dir.display()
        );
    }
}

/// `list`: one line each, names and sources aligned.
pub fn print_list(rows: &[Listed]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let from_width = rows.iter().map(|r| r.from.len()).max().unwrap_or(0);
    for r in rows {
        println!("{:width$}  {:from_width$}  {}", r.name, r.from, r.summary);
    }
}

/// `status JOB`, for people.
pub fn print_cost(report: &crate::aws::cost::CostReport) {
    println!(
        "profile {}: {:.2} h of timeout and grace, prices for {} ({})",
        report.profile, report.budget_hours, report.region, report.source
    );
    let line = |t: &crate::aws::cost::TypeCost| {
        println!(
            "  {:14} {:18} {}/h, {} at the timeout",
            t.instance_type,
            t.gpu.as_deref().unwrap_or("?"),
            per_hour(t.price_per_hour),
            money(t.cost_at_timeout)
        )
    };
    let spot_line = |t: &crate::aws::cost::TypeCost| match t.spot_price_per_hour {
        Some(_) => println!(
            "  {:14} {:18} spot {}/h ({}): {} expected at the timeout ({:.0}% less), {} at worst",
            "",
            "",
            per_hour(t.spot_price_per_hour),
            if t.spot_from == Some("ec2") {
                "EC2's"
            } else {
                "the catalog's"
            },
            money(t.expected_at_timeout),
            t.expected_saving.unwrap_or(0.0) * 100.0,
            money(t.worst_case)
        ),
        None => println!(
            "  {:14} {:18} spot: no catalog price; at worst {} (the on-demand price)",
            "",
            "",
            money(t.worst_case)
        ),
    };
    if report.attempts > 1 {
        println!(
            "  market: {}; up to {} attempts (the worst case: every one runs its whole budget)",
            report.market, report.attempts
        );
    } else {
        println!("  market: {}", report.market);
    }
    for t in &report.types {
        line(t);
        if report.spot_source.is_some() {
            spot_line(t);
        } else if report.attempts > 1 {
            println!(
                "  {:14} {:18} {} at worst over {} attempts",
                "",
                "",
                money(t.worst_case),
                report.attempts
            );
        }
    }
    if let Some(source) = &report.spot_source {
        println!("  spot prices: {source}");
    }
    if let Some(ceiling) = report.max_cost_usd {
        println!("  max_cost_usd: ${ceiling:.2}");
    }
    if report.cheaper.is_empty() {
        println!("no cheaper type in the catalog carries the same GPU or a better one");
    } else {
        println!("cheaper types with the same GPU or a better one:");
        report.cheaper.iter().for_each(line);
    }
}

#[cfg(feature = "aws")]
pub use aws::*;

#[cfg(feature = "aws")]
mod aws {
    use super::{money, per_hour};
    use crate::aws::job::Report;
    use crate::aws::reap::{Alive, Expired, Termination};
    use crate::clock::rfc3339;

    /// `launch`'s lines: the instance, then how its run ended.
    pub fn print_launch(r: &Report) {
        if let Some(q) = &r.queued {
            println!(
                "queued job {} run {}: place {} among the queued jobs of profile {}, since {}: {}{}",
                r.job,
                r.run,
                q.place,
                r.profile,
                q.since,
                q.reason,
                q.retry_at
                    .as_deref()
                    .map(|at| format!(" (tried again from {at})"))
                    .unwrap_or_default()
            );
            println!("  a pass of `bootforge advance` starts it when its turn comes");
            return;
        }
        println!(
            "{} {} {} ({}) in {}, private IP {}, {}/h, {} at the timeout, deadline {}",
            if r.found_finished {
                "finished"
            } else if r.launched {
                "launched"
            } else {
                "found"
            },
            r.instance_id.as_deref().unwrap_or("-"),
            r.state,
            r.instance_type,
            r.subnet.as_deref().unwrap_or("?"),
            r.private_ip.as_deref().unwrap_or("-"),
            per_hour(r.price_per_hour),
            money(r.cost_at_timeout),
            r.deadline.as_deref().unwrap_or("-")
        );
        let Some(f) = &r.wait else { return };
        let attempt = if r.max_attempts > 1 || r.attempt > 1 {
            format!(" attempt {} of {}", r.attempt, r.max_attempts)
        } else {
            String::new()
        };
        match &f.status {
            Some(_) => println!(
                "job {} run {}{attempt} {} (exit code {})",
                r.job, r.run, f.outcome, f.exit_code
            ),
            None => println!(
                "job {} run {}{attempt} wrote no status in {}: {}{}",
                r.job,
                r.run,
                r.claim.parent().unwrap_or(&r.claim).display(),
                f.outcome,
                f.state_reason
                    .as_ref()
                    .map(|s| format!(" ({}: {})", s.code, s.message))
                    .unwrap_or_default()
            ),
        }
        if r.history.attempts.len() > 1 {
            for a in &r.history.attempts {
                println!(
                    "  attempt {}: {} {} {} {}/h, {}: {}",
                    a.attempt,
                    a.instance_id,
                    a.instance_type,
                    a.market,
                    per_hour(a.price_per_hour),
                    money(a.cost_usd),
                    a.outcome
                );
            }
            println!(
                "  the job's cost over its attempts: {}",
                money(r.history.cost_usd)
            );
        }
        if let Some(why) = &r.retry {
            println!("  not retried: {why}");
        }
    }

    /// `advance`'s lines: what the pass did, then each job that ended.
    pub fn print_advance(p: &crate::aws::advance::Pass, describes: Option<usize>) {
        for line in &p.launched {
            println!("launched: {line}");
        }
        for line in &p.terminated {
            println!("terminated: {line}");
        }
        for r in &p.ended {
            let Some(f) = &r.wait else { continue };
            println!(
                "ended: job {} run {} {} (exit code {}) after {} attempt{}, {}{}",
                r.job,
                r.run,
                f.outcome,
                f.exit_code,
                r.history.attempts.len().max(1),
                if r.history.attempts.len() > 1 {
                    "s"
                } else {
                    ""
                },
                money(r.history.cost_usd),
                r.retry
                    .as_deref()
                    .map(|why| format!("; {why}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "{} jobs followed, {} ended and not yet acknowledged{}",
            p.followed,
            p.ended.len(),
            describes
                .map(|d| format!(", {d} DescribeInstances calls"))
                .unwrap_or_default()
        );
    }

    fn hms(seconds: u64) -> String {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    }

    /// `ps`: a table of the live instances.
    pub fn print_ps(rows: &[Alive], region: &str) {
        if rows.is_empty() {
            println!("no bootforge instance is alive in {region}");
            return;
        }
        println!(
            "{:20} {:18} {:14} {:>7} {:9} {:12} {:>7} {:21} {:>8}",
            "INSTANCE", "PROFILE", "JOB", "RUN.TRY", "STATE", "TYPE", "AGE", "DEADLINE", "COST"
        );
        for r in rows {
            println!(
                "{:20} {:18} {:14} {:>7} {:9} {:12} {:>7} {:21} {:>8}{}",
                r.instance_id,
                r.profile.as_deref().unwrap_or("?"),
                r.job.as_deref().unwrap_or("?"),
                format!(
                    "{}.{}",
                    r.run.as_deref().unwrap_or("?"),
                    r.attempt.as_deref().unwrap_or("?")
                ),
                r.state,
                r.instance_type,
                hms(r.age_seconds),
                r.deadline.as_deref().unwrap_or("-"),
                money(r.cost_so_far),
                if r.past_deadline {
                    "  PAST DEADLINE"
                } else {
                    ""
                }
            );
        }
    }

    /// What terminating did, one line per instance.
    pub fn print_terminations(done: &[Termination]) {
        for t in done {
            match &t.error {
                None => println!("terminating {}", t.instance_id),
                Some(e) => println!(
                    "could not terminate {} (profile {}): {e}",
                    t.instance_id,
                    t.profile.as_deref().unwrap_or("?")
                ),
            }
        }
    }

    /// `reap` without `--yes`: what it would terminate.
    pub fn print_expired(expired: &[Expired], region: &str) {
        if expired.is_empty() {
            println!("no bootforge instance is past its deadline in {region}");
        }
        for e in expired {
            let i = &e.instance;
            println!(
                "expired {} {} (profile {}, job {}) deadline {}{} (run with --yes to terminate)",
                i.id,
                i.state,
                i.profile.as_deref().unwrap_or("?"),
                i.job.as_deref().unwrap_or("?"),
                rfc3339(e.deadline),
                if e.from_tag {
                    ""
                } else {
                    " (launch time + the largest budget: its deadline tag is unreadable)"
                }
            );
        }
    }
}

#[cfg(any(feature = "aws", feature = "smoke"))]
pub use live::Progress;

/// The live line of the long commands (smoke, launch).
#[cfg(any(feature = "aws", feature = "smoke"))]
mod live {
    use std::io::IsTerminal as _;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressState, ProgressStyle};

    use crate::check::catalog::job_cost;
    use crate::progress::Event;

    /// How a long command shows its [`Event`]s: on a terminal (and without
    /// `--json`), one live line (elapsed time, phase, cost so far) under the
    /// lines worth keeping; otherwise those lines alone, on stderr, so that
    /// stdout holds nothing but the result (with `--json`, the document).
    pub struct Progress {
        bar: Option<ProgressBar>,
        json: bool,
        phase: String,
        billing: Arc<Mutex<Option<(u64, f64)>>>,
    }

    /// The live line: spinner, elapsed time, phase and detail, cost so far.
    const LIVE: &str = "{spinner} {elapsed:>4} {msg}{cost}";

    impl Progress {
        pub fn new(json: bool) -> Progress {
            Progress::with_terminal(json, std::io::stderr().is_terminal())
        }

        fn with_terminal(json: bool, terminal: bool) -> Progress {
            let billing: Arc<Mutex<Option<(u64, f64)>>> = Arc::default();
            let shown = billing.clone();
            let bar = (terminal && !json).then(|| {
                let style = ProgressStyle::with_template(LIVE)
                    .unwrap_or_else(|_| ProgressStyle::default_spinner())
                    .with_key(
                        "cost",
                        move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                            if let Some((since, per_hour)) =
                                *shown.lock().unwrap_or_else(|e| e.into_inner())
                            {
                                let seconds = crate::clock::now().saturating_sub(since);
                                let _ = write!(w, " · ${:.2} so far", job_cost(per_hour, seconds));
                            }
                        },
                    );
                let bar = ProgressBar::new_spinner().with_style(style);
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            });
            Progress {
                bar,
                json,
                phase: String::new(),
                billing,
            }
        }

        /// A line to keep: above the live line, or plain on stderr.
        fn line(&self, text: &str) {
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            }
        }

        pub fn event(&mut self, event: Event) {
            match event {
                Event::Progress(text) => self.line(&text),
                Event::Warning(text) => self.line(&format!("warning: {text}")),
                Event::Phase(phase) => {
                    if let Some(bar) = &self.bar {
                        bar.set_message(phase.clone());
                    }
                    self.phase = phase;
                }
                Event::Detail(text) => match &self.bar {
                    Some(bar) => {
                        let detail: String = text.trim().chars().take(80).collect();
                        bar.set_message(format!("{} · {detail}", self.phase));
                    }
                    None => eprintln!("{text}"),
                },
                Event::Billing { since, per_hour } => {
                    *self.billing.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((since, per_hour));
                }
                // With --json the log would break the document: it goes to stderr.
                Event::Log(text) if self.json => eprint!("{text}"),
                Event::Log(text) => match &self.bar {
                    Some(bar) => bar.suspend(|| print!("{text}")),
                    None => print!("{text}"),
                },
            }
        }

        /// A callback for the library.
        pub fn sink(&mut self) -> impl FnMut(Event) + '_ {
            move |e| self.event(e)
        }
    }

    impl Drop for Progress {
        fn drop(&mut self) {
            if let Some(bar) = &self.bar {
                bar.finish_and_clear();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_live_line_template_is_valid() {
            assert!(ProgressStyle::with_template(LIVE).is_ok());
        }

        #[test]
        fn without_a_terminal_or_with_json_there_is_no_live_line() {
            assert!(Progress::with_terminal(false, false).bar.is_none());
            assert!(Progress::with_terminal(true, true).bar.is_none());
            assert!(Progress::with_terminal(false, true).bar.is_some());
        }
    }
}
