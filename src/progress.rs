//! What a long command (building the smoke image, booting it, launching and
//! following a job) tells the person waiting, as values: the library never
//! prints, the command line decides how to show them (a live line on a
//! terminal, plain lines in a log, nothing beside a JSON document).

/// Something worth telling the person waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A line worth keeping in a log.
    Progress(String),
    /// Something the user should know even beside a JSON document.
    Warning(String),
    /// What is happening now (`launching`, `running`, `booting ok`…); it
    /// replaces the previous phase.
    Phase(String),
    /// A line of a tool's own output (debootstrap, docker): on a terminal it
    /// shows as the phase's detail, in a log as a line.
    Detail(String),
    /// An instance is billed from `since` (seconds since the epoch) at
    /// `per_hour` dollars: the cost so far grows with the clock.
    Billing { since: u64, per_hour: f64 },
    /// New text of the job's log (`launch --wait --follow`).
    Log(String),
}
