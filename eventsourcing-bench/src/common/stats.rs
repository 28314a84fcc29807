//! Printing a figure line, and the statistics the figures are made of.

use std::time::Duration;

/// Prints one figure: `<figure> ours=<v> raw=<v> ratio=<ours/raw> unit=<unit>`.
pub(crate) fn report(figure: &str, ours: f64, raw: f64, unit: &str) {
    let ratio = if raw == 0.0 { f64::NAN } else { ours / raw };
    println!("{figure} ours={ours:.3} raw={raw:.3} ratio={ratio:.3} unit={unit}");
}

/// The median of some rates (the upper one of an even count; `NaN` if there are none).
pub(crate) fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_unstable_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of some durations, in milliseconds.
pub(crate) fn median_ms(mut samples: Vec<Duration>) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// The `q` quantile (nearest rank) of some durations, in milliseconds.
pub(crate) fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Events per second from a count and an elapsed time.
pub(crate) fn per_second(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}
