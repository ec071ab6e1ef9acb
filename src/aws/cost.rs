//! `cost PROFILE`: what a job of the profile costs at its timeout, and the
//! catalog's cheaper types that carry the same GPU or a better one.

use serde::Serialize;

use crate::check::catalog;
use crate::compile::model::Profile;

/// `cost PROFILE`: the price of a job and the cheaper types that would do.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub profile: String,
    pub region: &'static str,
    pub source: &'static str,
    pub budget_hours: f64,
    pub max_cost_usd: Option<f64>,
    pub types: Vec<TypeCost>,
    /// Catalog types with the same GPU or a better one, cheaper than the
    /// profile's first type.
    pub cheaper: Vec<TypeCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeCost {
    pub instance_type: String,
    pub gpu: Option<String>,
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
}

fn type_cost(name: &str, seconds: u64) -> TypeCost {
    let entry = catalog::lookup(name);
    TypeCost {
        instance_type: name.to_string(),
        gpu: entry.map(|t| format!("{}× {} {} GB", t.gpu_count, t.gpu, t.gpu_memory_gib)),
        price_per_hour: entry.map(|t| t.price_per_hour),
        cost_at_timeout: entry.map(|t| catalog::job_cost(t.price_per_hour, seconds)),
    }
}

/// Prices the profile's types over its timeout and grace.
pub fn cost(name: &str, profile: &Profile) -> CostReport {
    let job = &profile.job;
    let seconds = job.timeout.seconds() + job.grace.seconds();
    let hours = seconds as f64 / 3600.0;
    let types: Vec<TypeCost> = profile
        .instance
        .types
        .iter()
        .map(|t| type_cost(t, seconds))
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
                cheaper.push(type_cost(t.name, seconds));
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
        max_cost_usd: profile.instance.max_cost_usd,
        types,
        cheaper,
    }
}
