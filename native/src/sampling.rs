//! The sampling decision of OpenTelemetry tracing (`edge.tracing`), as the
//! route table holds it: the Python SDK's `TraceIdRatioBased` bound, compiled
//! once at table load (`crate::tracing` makes the decision per request).

use serde::Deserialize;

/// The table's `edge.tracing` section (`null`: tracing off).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    pub sample_ratio: f64,
}

/// `TraceIdRatioBased(ratio)`, compiled: a root is sampled when its trace
/// id's 64 low bits are below `bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    bound: u128,
}

impl Sampler {
    /// `TraceIdRatioBased.get_bound_for_rate`: `round(ratio * 2**64)`.
    pub fn from_section(section: TracingSection) -> Result<Self, String> {
        let ratio = section.sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "tracing: sample_ratio {ratio} is not within [0, 1]"
            ));
        }
        // Exact in f64 (a power of two); Python's round() rounds half to even.
        let bound = (ratio * 18_446_744_073_709_551_616.0).round_ties_even();
        Ok(Sampler {
            bound: bound as u128,
        })
    }

    /// Whether a root span of `trace_id` is sampled.
    pub fn samples(self, trace_id: u128) -> bool {
        u128::from(trace_id as u64) < self.bound
    }
}
