//! EC2: what a launch sends, decided offline (`plan`, with its ClientTokens
//! in `token`; `cost`, `iam`), and, with the `aws` feature, the calls
//! themselves: the client, its answers and EC2's consistency bound (`ec2`),
//! one job's one instance (`claim`, `operate`), waiting for its outcome
//! (`wait`), the next attempt under a retry policy (`retry`), cleaning up
//! (`reap`) and what `launch` does and reports (`job`); a job as its
//! directory tells it, for `status` and `logs` (`status`).

#[cfg(feature = "aws")]
pub mod advance;
pub mod claim;
pub mod cost;
pub mod decide;
#[cfg(feature = "aws")]
pub mod ec2;
pub mod files;
#[cfg(feature = "aws")]
pub mod fleet;
pub mod iam;
pub mod index;
#[cfg(feature = "aws")]
pub mod job;
pub mod jobs;
#[cfg(feature = "aws")]
pub mod operate;
pub mod plan;
#[cfg(feature = "aws")]
pub mod reap;
#[cfg(feature = "aws")]
pub mod report;
#[cfg(feature = "aws")]
pub mod retry;
pub mod status;
pub mod token;
#[cfg(feature = "aws")]
pub mod wait;
