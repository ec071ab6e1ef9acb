//! The jobs as people read them: `status` (one job now) and `jobs` (every
//! job of a window, and the totals).

use super::reports::money;
#[cfg(feature = "aws")]
use super::reports::per_hour;

#[cfg(feature = "aws")]
pub fn print_status(s: &crate::aws::status::JobStatus) {
    let attempt = if s.max_attempts > 1 || s.attempt > 1 {
        format!(" attempt {} of {}", s.attempt, s.max_attempts)
    } else {
        String::new()
    };
    println!(
        "job {} ({}) run {}{attempt}: {}",
        s.job,
        s.profile,
        s.run,
        match &s.outcome {
            Some(o) => format!("{o} (exit code {})", s.exit_code.unwrap_or(-1)),
            None => match s.phase_seconds {
                // "run for 40m02s (attempt up 44m10s)"
                Some(p) => format!(
                    "{} for {} (up {})",
                    s.phase,
                    duration(p),
                    duration(s.seconds)
                ),
                None => format!("{} for {}", s.phase, duration(s.seconds)),
            },
        }
    );
    println!(
        "  instance {} {}{}, launched {}",
        s.instance_id.as_deref().unwrap_or("(none yet)"),
        s.instance_state.as_deref().unwrap_or("(state unknown)"),
        s.market
            .as_deref()
            .map(|m| format!(", {m} at {}/h", per_hour(s.price_per_hour)))
            .unwrap_or_default(),
        s.launched_at
    );
    println!(
        "  cost so far: {}{}",
        money(s.cost_so_far),
        if s.earlier.is_empty() {
            String::new()
        } else {
            format!(
                " ({} with the run's {} earlier attempts)",
                money(s.run_cost_so_far),
                s.earlier.len()
            )
        }
    );
    for a in &s.earlier {
        println!(
            "  attempt {}: {} {} {}: {}",
            a.attempt, a.instance_id, a.instance_type, a.market, a.outcome
        );
    }
    if let Some(note) = &s.note {
        println!("  note: {note}");
    }
    if let Some(at) = &s.log_written_at {
        println!("  log last written {at}");
    }
    println!("  files: {}", s.job_dir.display());
}

/// `jobs`: a table, newest first, and the window's totals.
pub fn print_jobs(list: &crate::aws::jobs::JobList) {
    if list.rows.is_empty() {
        println!("no job since {}", list.since);
    } else {
        println!(
            "{:24} {:>3} {:16} {:20} {:>8} {:24} {:20} {:>8}",
            "JOB", "RUN", "STATE", "STARTED", "DURATION", "ATTEMPTS", "INSTANCE", "COST"
        );
    }
    for r in &list.rows {
        let state = match (&r.outcome, &r.phase, &r.queued) {
            (Some(o), ..) => match r.exit_code {
                Some(code) => format!("{o} ({code})"),
                None => o.clone(),
            },
            (None, _, Some(q)) => format!("queued #{}", q.place),
            (None, Some(p), None) => p.clone(),
            (None, None, None) => r.state.clone(),
        };
        let markets: Vec<&str> = r.attempts.iter().map(|a| a.market.as_str()).collect();
        let attempts = match markets.as_slice() {
            [] => "-".to_string(),
            [one] => format!("1 {one}"),
            many => format!("{} {}", many.len(), many.join(",")),
        };
        println!(
            "{:24} {:>3} {:16} {:20} {:>8} {:24} {:20} {:>8}",
            r.job,
            r.run,
            state,
            r.started_at,
            duration(r.seconds),
            attempts,
            r.instance_id.as_deref().unwrap_or("-"),
            money(r.cost_usd)
        );
        if let Some(m) = &r.message {
            println!("    {m}");
        }
    }
    let t = &list.totals;
    let outcomes: Vec<String> = t
        .by_outcome
        .iter()
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    println!(
        "{} job{} since {}{}{}: {:.1} GPU hours, ${:.2} spent, spot saved ${:.2}{}",
        t.jobs,
        if t.jobs == 1 { "" } else { "s" },
        list.since,
        if outcomes.is_empty() { "" } else { " (" },
        if outcomes.is_empty() {
            String::new()
        } else {
            outcomes.join(", ") + ")"
        },
        t.gpu_hours,
        t.cost_usd,
        t.spot_saving_usd,
        if t.unpriced > 0 {
            format!(" ({} without a price)", t.unpriced)
        } else {
            String::new()
        }
    );
    if list.rows.len() < list.matched {
        println!("the {} newest shown (--limit)", list.rows.len());
    }
    if let Some(note) = &list.note {
        println!("note: {note}");
    }
}

/// Seconds as people read a phase's length: `45s`, `4m05s`, `1h02m`.
pub(super) fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
