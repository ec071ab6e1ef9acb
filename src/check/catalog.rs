//! The GPU instance types bootforge knows: GPU, size and on-demand price.

use serde::Serialize;

use crate::compile::model::{Market, Retry};

/// One instance type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceType {
    pub name: &'static str,
    pub gpu: &'static str,
    pub gpu_count: u32,
    /// Memory of one GPU.
    pub gpu_memory_gib: u32,
    pub vcpus: u32,
    pub memory_gib: u32,
    /// On-demand Linux price per hour in us-east-2, USD.
    pub price_per_hour: f64,
}

/// Where the prices come from; `cost` prints it.
pub const PRICE_SOURCE: &str = "AWS on-demand Linux list prices for us-east-2 (as carried in the SkyPilot catalog); check the EC2 pricing page before relying on them";

/// The region the prices are for.
pub const PRICE_REGION: &str = "us-east-2";

/// Where the spot prices come from; `cost` prints it beside them.
pub const SPOT_PRICE_SOURCE: &str = "the catalog's figure: the middle of the range in the SkyPilot catalog's snapshot for us-east-2; spot prices move (DescribeSpotPriceHistory has today's)";

/// Spot prices per hour in us-east-2, where a public figure is known (the
/// SkyPilot catalog's snapshot: g6e.xlarge $0.59–0.75). Others are unknown:
/// `cost` says so rather than guess.
static SPOT: &[(&str, f64)] = &[("g6e.xlarge", 0.67)];

/// The catalog's spot price of `name` per hour, when one is known.
pub fn spot_price(name: &str) -> Option<f64> {
    SPOT.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

macro_rules! types {
    ($($name:literal $gpu:literal $count:literal $mem:literal $vcpu:literal $ram:literal $price:literal;)*) => {
        &[$(InstanceType {
            name: $name,
            gpu: $gpu,
            gpu_count: $count,
            gpu_memory_gib: $mem,
            vcpus: $vcpu,
            memory_gib: $ram,
            price_per_hour: $price,
        },)*]
    };
}

/// The catalog: the GPU families G4dn, G5, G6, G6e, P3, P4d and P5.
pub static CATALOG: &[InstanceType] = types! {
    "g4dn.xlarge"   "T4"   1 16   4   16  0.526;
    "g4dn.2xlarge"  "T4"   1 16   8   32  0.752;
    "g4dn.4xlarge"  "T4"   1 16  16   64  1.204;
    "g4dn.8xlarge"  "T4"   1 16  32  128  2.176;
    "g4dn.12xlarge" "T4"   4 16  48  192  3.912;
    "g4dn.16xlarge" "T4"   1 16  64  256  4.352;
    "g5.xlarge"     "A10G" 1 24   4   16  1.006;
    "g5.2xlarge"    "A10G" 1 24   8   32  1.212;
    "g5.4xlarge"    "A10G" 1 24  16   64  1.624;
    "g5.8xlarge"    "A10G" 1 24  32  128  2.448;
    "g5.12xlarge"   "A10G" 4 24  48  192  5.672;
    "g5.16xlarge"   "A10G" 1 24  64  256  4.096;
    "g5.24xlarge"   "A10G" 4 24  96  384  8.144;
    "g5.48xlarge"   "A10G" 8 24 192  768 16.288;
    "g6.xlarge"     "L4"   1 24   4   16  0.8048;
    "g6.2xlarge"    "L4"   1 24   8   32  0.9776;
    "g6.4xlarge"    "L4"   1 24  16   64  1.3232;
    "g6.8xlarge"    "L4"   1 24  32  128  2.0144;
    "g6.12xlarge"   "L4"   4 24  48  192  4.6016;
    "g6.16xlarge"   "L4"   1 24  64  256  3.3968;
    "g6.24xlarge"   "L4"   4 24  96  384  6.6752;
    "g6.48xlarge"   "L4"   8 24 192  768 13.3504;
    "g6e.xlarge"    "L40S" 1 48   4   32  1.861;
    "g6e.2xlarge"   "L40S" 1 48   8   64  2.24208;
    "g6e.4xlarge"   "L40S" 1 48  16  128  3.00424;
    "g6e.8xlarge"   "L40S" 1 48  32  256  4.52856;
    "g6e.12xlarge"  "L40S" 4 48  48  384 10.49264;
    "g6e.16xlarge"  "L40S" 1 48  64  512  7.57719;
    "g6e.24xlarge"  "L40S" 4 48  96  768 15.06559;
    "g6e.48xlarge"  "L40S" 8 48 192 1536 30.13118;
    "p3.2xlarge"    "V100" 1 16   8   61  3.06;
    "p3.8xlarge"    "V100" 4 16  32  244 12.24;
    "p3.16xlarge"   "V100" 8 16  64  488 24.48;
    "p4d.24xlarge"  "A100" 8 40  96 1152 32.7726;
    "p5.48xlarge"   "H100" 8 80 192 2048 98.32;
};

/// The catalog entry of `name`.
///
/// ```
/// let t = bootforge::check::catalog::lookup("g6e.xlarge").unwrap();
/// assert_eq!((t.gpu, t.gpu_memory_gib, t.price_per_hour), ("L40S", 48, 1.861));
/// ```
pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    CATALOG.iter().find(|t| t.name == name)
}

/// What `seconds` of an instance at `price_per_hour` cost, in dollars: the
/// one place a job's cost is computed.
///
/// ```
/// // 120 minutes of timeout and 10 of grace on a g6e.xlarge.
/// let cost = bootforge::check::catalog::job_cost(1.861, 130 * 60);
/// assert!((cost - 4.032).abs() < 0.001);
/// ```
pub fn job_cost(price_per_hour: f64, seconds: u64) -> f64 {
    price_per_hour * seconds as f64 / 3600.0
}

/// The most an hour of one attempt on `t` can cost, in the worst case the
/// cost guard plans for: on demand, its price; spot only, its cap (the
/// profile's maximum spot price when lower, else the on-demand price: a
/// spot price can rise to it); spot then on demand, the on-demand price
/// (the attempt may end up there).
pub fn worst_hourly(t: &InstanceType, market: Market, max_spot_price: Option<f64>) -> f64 {
    match market {
        Market::Spot => max_spot_price.map_or(t.price_per_hour, |cap| cap.min(t.price_per_hour)),
        Market::OnDemand | Market::SpotThenOnDemand => t.price_per_hour,
    }
}

/// The most one job on `t` can cost over `seconds` of timeout and grace
/// per attempt, under the profile's retry policy: every attempt runs its
/// whole budget and is interrupted, each priced at its cap (see
/// [`worst_hourly`]), on demand once the policy turns there.
///
/// ```
/// use bootforge::compile::model::{Market, Retry, RetryOn};
/// let t = bootforge::check::catalog::lookup("g6e.xlarge").unwrap();
/// let retry = Retry { on: vec![RetryOn::Interrupted], attempts: 3, on_demand_after: Some(2) };
/// // Three attempts of 130 minutes, spot capped at $0.90, the third on demand.
/// let worst = bootforge::check::catalog::worst_case(t, Market::Spot, Some(0.90), Some(&retry), 130 * 60);
/// assert!((worst - (0.90 + 0.90 + 1.861) * 130.0 / 60.0).abs() < 1e-9);
/// ```
pub fn worst_case(
    t: &InstanceType,
    market: Market,
    max_spot_price: Option<f64>,
    retry: Option<&Retry>,
    seconds: u64,
) -> f64 {
    let attempts = retry.map_or(1, |r| r.attempts.max(1));
    (0..attempts)
        .map(|interruptions| {
            let market = retry.map_or(market, |r| r.market(market, interruptions));
            job_cost(worst_hourly(t, market, max_spot_price), seconds)
        })
        .sum()
}

/// GPU models ranked by what a job can expect of them (later is more).
const GPU_RANK: &[&str] = &["T4", "V100", "A10G", "L4", "L40S", "A100", "H100"];

/// How capable a GPU model is, for "the same GPU or better".
pub fn gpu_rank(gpu: &str) -> Option<usize> {
    GPU_RANK.iter().position(|g| g.eq_ignore_ascii_case(gpu))
}

/// Instance types that carry `gpu` (by model name), cheapest first.
pub fn with_gpu(gpu: &str) -> Vec<&'static InstanceType> {
    let mut found: Vec<_> = CATALOG
        .iter()
        .filter(|t| t.gpu.eq_ignore_ascii_case(gpu))
        .collect();
    found.sort_by(|a, b| a.price_per_hour.total_cmp(&b.price_per_hour));
    found
}

/// The known GPU model names.
pub fn gpu_models() -> &'static [&'static str] {
    GPU_RANK
}

/// An AMI family and the instance families it supports.
pub struct AmiFamily {
    pub name: &'static str,
    pub description: &'static str,
    /// Instance families (the part before the dot) it supports.
    pub supports: &'static [&'static str],
    /// AMI ids known to belong to it.
    pub amis: &'static [&'static str],
}

/// Deep Learning AMIs whose supported instance families are documented.
pub static AMI_FAMILIES: &[AmiFamily] = &[AmiFamily {
    name: "dlami-base-oss-nvidia",
    description: "Deep Learning Base OSS Nvidia Driver GPU AMI",
    supports: &[
        "g4dn", "g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5e", "p5en",
    ],
    amis: &["ami-0d67eb9a9a933bd88"],
}];

/// The family of a known AMI id.
pub fn ami_family(ami: &str) -> Option<&'static AmiFamily> {
    AMI_FAMILIES.iter().find(|f| f.amis.contains(&ami))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_page_prices_are_in_the_catalog() {
        for (name, price) in [
            ("g6e.xlarge", 1.861),
            ("g6.xlarge", 0.8048),
            ("g4dn.xlarge", 0.526),
            ("g5.xlarge", 1.006),
            ("p3.2xlarge", 3.06),
        ] {
            assert_eq!(lookup(name).unwrap().price_per_hour, price, "{name}");
        }
        assert_eq!(lookup("g6.xlarge").unwrap().gpu, "L4");
        assert_eq!(lookup("g6e.xlarge").unwrap().memory_gib, 32);
    }

    #[test]
    fn the_seed_ami_does_not_support_p3() {
        let family = ami_family("ami-0d67eb9a9a933bd88").unwrap();
        assert!(family.supports.contains(&"g6e"));
        assert!(!family.supports.contains(&"p3"));
    }

    #[test]
    fn every_gpu_is_ranked_and_names_are_unique() {
        for t in CATALOG {
            assert!(gpu_rank(t.gpu).is_some(), "{}", t.name);
            assert_eq!(CATALOG.iter().filter(|o| o.name == t.name).count(), 1);
        }
        assert_eq!(with_gpu("l4")[0].name, "g6.xlarge");
    }
}
