//! EC2 and the jobs on it. Decided offline: what a launch sends (`plan`,
//! with its ClientTokens in `token`; `cost`, `iam`); one job's claim and
//! its rules (`claim`, `decide`, over `files` shared by the launching
//! hosts); the index of a jobs folder (`index`); a job as its directory
//! tells it (`status`, `run_status`, `log`) and every job at a glance
//! (`jobs`). With the `aws` feature, the calls themselves: the client and
//! its answers (`ec2`), launching (`operate`), waiting for one job
//! (`wait`), what follows an attempt (`retry`), a run's report and its end
//! (`report`), one pass over every job (`advance`, on EC2 through
//! `fleet`), cleaning up (`reap`) and what `launch` does (`job`).

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
pub mod log;
#[cfg(feature = "aws")]
pub mod operate;
pub mod plan;
#[cfg(feature = "aws")]
pub mod reap;
#[cfg(feature = "aws")]
pub mod report;
#[cfg(feature = "aws")]
pub mod retry;
pub mod run_status;
pub mod status;
pub mod token;
#[cfg(feature = "aws")]
pub mod wait;
