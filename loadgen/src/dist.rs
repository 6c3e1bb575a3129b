//! Deterministic randomness for load: a small PRNG, Zipf ranks and chat-like
//! message sizes.

/// splitmix64: fast, and a seed gives the same run every time.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A rank in 0..n, Zipf-like with s ≈ 1: rank r has weight 1/(r+1), so
    /// a few conversations or users carry most of the traffic.
    pub fn zipf(&mut self, n: usize) -> usize {
        let x = ((n as f64 + 1.0).ln() * self.unit()).exp() - 1.0;
        (x as usize).min(n.saturating_sub(1))
    }

    /// A message body length in bytes: log-normal around 40 bytes (most
    /// chat messages are a few words), capped at `max`.
    pub fn message_len(&mut self, max: usize) -> usize {
        // Box–Muller for a standard normal.
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let len = (40f64.ln() + 0.9 * normal).exp();
        (len as usize).clamp(1, max)
    }
}

const WORDS: &[&str] = &[
    "ok", "yes", "no", "lunch", "today", "tomorrow", "meeting", "call", "later", "thanks", "great",
    "sure", "the", "a", "to", "and", "you", "we", "deploy", "review", "ticket", "coffee", "see",
    "soon", "on", "my", "way", "done", "ready", "please", "check",
];

/// Text of about `len` bytes made of common words.
pub fn text(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 8);
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.zipf(WORDS.len())]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_sizes_stay_in_bounds() {
        let mut rng = Rng::new(7);
        let mut counts = [0usize; 100];
        for _ in 0..100_000 {
            counts[rng.zipf(100)] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[90]);
        let lens: Vec<usize> = (0..10_000).map(|_| rng.message_len(4096)).collect();
        assert!(lens.iter().all(|&l| (1..=4096).contains(&l)));
        let mut sorted = lens.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        assert!((25..=60).contains(&median), "median {median}");
    }
}
