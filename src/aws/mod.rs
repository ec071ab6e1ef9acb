//! EC2: what a launch sends, decided offline (`plan`, `cost`, `iam`), and,
//! with the `aws` feature, the calls themselves: the client and its
//! answers (`ec2`), one job's one instance (`claim`, `operate`), waiting for
//! its outcome (`wait`) and cleaning up (`reap`).

pub mod claim;
pub mod cost;
#[cfg(feature = "aws")]
pub mod ec2;
pub mod iam;
#[cfg(feature = "aws")]
pub mod job;
#[cfg(feature = "aws")]
pub mod operate;
pub mod plan;
#[cfg(feature = "aws")]
pub mod reap;
pub mod token;
#[cfg(feature = "aws")]
pub mod wait;
