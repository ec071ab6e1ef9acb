//! `cost PROFILE`: what a job of the profile costs at its timeout, on
//! demand and, where the profile buys spot, at the spot price (the saving
//! expected, and the worst case: a spot attempt is priced at its cap, the
//! on-demand price); and the catalog's cheaper types that carry the same
//! GPU or a better one. The spot price is EC2's own
//! (DescribeSpotPriceHistory, asked by the command line) when it answers,
//! otherwise the catalog's figure, labelled as such.

use serde::Serialize;

use crate::check::catalog;
use crate::compile::model::Profile;

/// One spot price EC2 quoted: DescribeSpotPriceHistory's latest for a type
/// in a zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpotQuote {
    pub instance_type: String,
    pub zone: String,
    pub price_per_hour: f64,
    /// When the price took effect (RFC 3339), as EC2 says.
    pub since: Option<String>,
}

/// Where `cost` takes spot prices from.
#[derive(Debug, Clone, PartialEq)]
pub enum SpotPrices {
    /// EC2 answered DescribeSpotPriceHistory with these.
    Ec2(Vec<SpotQuote>),
    /// The catalog's figures; why EC2 was not asked or did not answer.
    Catalog(Option<String>),
}

impl SpotPrices {
    /// The spot price of `name` in `zone` (any of the region's zones when
    /// `None`: the highest, as a job may land in any), and where it comes
    /// from.
    fn price(&self, name: &str, zone: Option<&str>) -> Option<(f64, &'static str)> {
        let quoted = match self {
            SpotPrices::Ec2(quotes) => quotes
                .iter()
                .filter(|q| q.instance_type == name && zone.is_none_or(|z| q.zone == z))
                .map(|q| q.price_per_hour)
                .max_by(f64::total_cmp),
            SpotPrices::Catalog(_) => None,
        };
        match quoted {
            Some(p) => Some((p, "ec2")),
            None => catalog::spot_price(name).map(|p| (p, "catalog")),
        }
    }

    /// What the report says of its spot prices.
    fn source(&self, region: &str, zone: Option<&str>) -> String {
        match self {
            SpotPrices::Ec2(_) => format!(
                "EC2's DescribeSpotPriceHistory (Linux/UNIX, now) in {}; the catalog's figure where EC2 quoted none",
                zone.map_or(
                    format!("{region}, the highest of its zones"),
                    str::to_string
                )
            ),
            SpotPrices::Catalog(None) => catalog::SPOT_PRICE_SOURCE.to_string(),
            SpotPrices::Catalog(Some(why)) => {
                format!("{} (EC2 did not answer: {why})", catalog::SPOT_PRICE_SOURCE)
            }
        }
    }
}

/// `cost PROFILE`: the price of a job and the cheaper types that would do.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub profile: String,
    pub region: &'static str,
    pub source: &'static str,
    pub budget_hours: f64,
    /// `on-demand`, `spot` or `spot-then-on-demand`.
    pub market: &'static str,
    /// Where the spot prices come from, when the profile buys spot.
    pub spot_source: Option<String>,
    pub max_cost_usd: Option<f64>,
    /// The retry policy's attempts in all (1 without one).
    pub attempts: u32,
    pub types: Vec<TypeCost>,
    /// Catalog types with the same GPU or a better one, cheaper than the
    /// profile's first type.
    pub cheaper: Vec<TypeCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeCost {
    pub instance_type: String,
    pub gpu: Option<String>,
    /// On demand.
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
    /// The spot price, when the profile buys spot and one is known.
    pub spot_price_per_hour: Option<f64>,
    /// Whose spot price it is: `ec2` or `catalog`.
    pub spot_from: Option<&'static str>,
    /// What a job costs at the timeout as the profile buys it: at the spot
    /// price when its first attempt is spot and that price is known.
    pub expected_at_timeout: Option<f64>,
    /// 1 − expected / on demand.
    pub expected_saving: Option<f64>,
    /// The most a job can cost: every attempt of its retry policy run to
    /// the end of its budget, each at its cap (a spot instance's price can
    /// rise to the on-demand one).
    pub worst_case: Option<f64>,
}

fn type_cost(name: &str, seconds: u64, profile: &Profile, prices: &SpotPrices) -> TypeCost {
    let (market, max_spot) = (profile.instance.market, profile.instance.max_spot_price_usd);
    let entry = catalog::lookup(name);
    let on_demand = entry.map(|t| catalog::job_cost(t.price_per_hour, seconds));
    let quoted = prices
        .price(name, profile.instance.availability_zone.as_deref())
        .filter(|_| market.uses_spot());
    let spot = quoted.map(|(p, _)| p);
    let expected = match (market.attempts().first(), spot) {
        (Some(true), Some(price)) => Some(catalog::job_cost(price, seconds)),
        _ => on_demand,
    };
    TypeCost {
        instance_type: name.to_string(),
        gpu: entry.map(|t| format!("{}× {} {} GB", t.gpu_count, t.gpu, t.gpu_memory_gib)),
        price_per_hour: entry.map(|t| t.price_per_hour),
        cost_at_timeout: on_demand,
        spot_price_per_hour: spot,
        spot_from: quoted.map(|(_, from)| from),
        expected_at_timeout: expected,
        expected_saving: expected
            .zip(on_demand)
            .filter(|(_, d)| *d > 0.0)
            .map(|(e, d)| 1.0 - e / d),
        worst_case: entry
            .map(|t| catalog::worst_case(t, market, max_spot, profile.job.retry.as_ref(), seconds)),
    }
}

/// Prices the profile's types over its timeout and grace, spot at `prices`.
pub fn cost(name: &str, profile: &Profile, prices: &SpotPrices) -> CostReport {
    let job = &profile.job;
    let seconds = job.timeout.seconds() + job.grace.seconds();
    let hours = seconds as f64 / 3600.0;
    let market = profile.instance.market;
    let types: Vec<TypeCost> = profile
        .instance
        .types
        .iter()
        .map(|t| type_cost(t, seconds, profile, prices))
        .collect();
    let mut cheaper = Vec::new();
    if let Some(first) = profile
        .instance
        .types
        .first()
        .and_then(|t| catalog::lookup(t))
    {
        let rank = catalog::gpu_rank(first.gpu);
        for t in catalog::CATALOG {
            let good = catalog::gpu_rank(t.gpu) >= rank
                && t.gpu_count >= first.gpu_count
                && t.gpu_memory_gib >= first.gpu_memory_gib;
            if good && t.price_per_hour < first.price_per_hour && t.name != first.name {
                cheaper.push(type_cost(t.name, seconds, profile, prices));
            }
        }
        cheaper.sort_by(|a, b| {
            a.price_per_hour
                .unwrap_or(0.0)
                .total_cmp(&b.price_per_hour.unwrap_or(0.0))
        });
    }
    CostReport {
        profile: name.to_string(),
        region: catalog::PRICE_REGION,
        source: catalog::PRICE_SOURCE,
        budget_hours: hours,
        market: market.name(),
        spot_source: market.uses_spot().then(|| {
            prices.source(
                &profile.instance.region,
                profile.instance.availability_zone.as_deref(),
            )
        }),
        max_cost_usd: profile.instance.max_cost_usd,
        attempts: profile.job.retry.as_ref().map_or(1, |r| r.attempts),
        types,
        cheaper,
    }
}
