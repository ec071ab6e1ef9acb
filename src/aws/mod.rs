//! EC2: what a launch sends, decided offline (`plan`, `cost`, `iam`), and,
//! with the `aws` feature, the calls themselves: the client and its
//! answers (`ec2`), one job's one instance (`claim`, `operate`), waiting for
//! its outcome (`wait`) and cleaning up (`reap`).

pub mod claim;
#[cfg(feature = "aws")]
pub mod ec2;
#[cfg(feature = "aws")]
pub mod operate;
pub mod plan;
#[cfg(feature = "aws")]
pub mod reap;
#[cfg(feature = "aws")]
pub mod wait;
