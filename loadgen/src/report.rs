//! Latency histograms and the report: a human summary and a JSON document.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50/p90/p99/p99.9/max in milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

pub fn line(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("{name:<16} (none)");
    }
    format!(
        "{name:<16} {:>9}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>8.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    )
}
