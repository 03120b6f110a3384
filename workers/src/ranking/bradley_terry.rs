//! Bradley–Terry over pairwise votes: P(i beats j) = w_i / (w_i + w_j).
//!
//! Fitted with the minorization–maximization iteration of Hunter (2004), in the form the
//! `choix` library uses (`mm_pairwise`), so its numbers are a reference: each step sets
//! w_i = (W_i + α) / (Σ_j n_ij / (w_i + w_j) + α), where W_i counts i's wins, n_ij the votes
//! between i and j, and α > 0 a small prior that keeps an item without wins finite. Log
//! strengths are centred (mean 0) and shown on the Elo scale: 1000 + 400·log10(w).
//! Confidence intervals come from a Poisson bootstrap over the vote counts (each cell of the
//! win matrix redrawn as Poisson(count)), which resamples votes without materialising them.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson};

/// `count` votes in which `winner` beat `loser` (indices into the item list).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub winner: usize,
    pub loser: usize,
    pub count: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitSettings {
    pub alpha: f64,
    pub max_iter: usize,
    /// Converged when the L1 change of the parameters is at most this.
    pub tol: f64,
}

impl Default for FitSettings {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            max_iter: 10_000,
            tol: 1e-8,
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no votes to fit")]
    Empty,
    #[error("did not converge in {0} iterations")]
    NoConvergence(usize),
}

/// Centred log strengths (choix's "params"), one per item.
pub fn fit(n_items: usize, cells: &[Cell], s: FitSettings) -> Result<Vec<f64>, FitError> {
    if n_items == 0 || cells.iter().all(|c| c.count <= 0.0) {
        return Err(FitError::Empty);
    }
    let mut wins = vec![0.0; n_items];
    for c in cells {
        wins[c.winner] += c.count;
    }
    let mut params = vec![0.0; n_items];
    for _ in 0..s.max_iter {
        let weights = exp_transform(&params);
        let mut denoms = vec![0.0; n_items];
        for c in cells {
            let v = c.count / (weights[c.winner] + weights[c.loser]);
            denoms[c.winner] += v;
            denoms[c.loser] += v;
        }
        let next = log_transform(
            &(0..n_items)
                .map(|i| (wins[i] + s.alpha) / (denoms[i] + s.alpha))
                .collect::<Vec<_>>(),
        );
        let change: f64 = next.iter().zip(&params).map(|(a, b)| (a - b).abs()).sum();
        params = next;
        if change <= s.tol {
            return Ok(params);
        }
    }
    Err(FitError::NoConvergence(s.max_iter))
}

/// exp(params − mean), scaled to sum to n (as choix does).
fn exp_transform(params: &[f64]) -> Vec<f64> {
    let mean = params.iter().sum::<f64>() / params.len() as f64;
    let w: Vec<f64> = params.iter().map(|p| (p - mean).exp()).collect();
    let scale = params.len() as f64 / w.iter().sum::<f64>();
    w.into_iter().map(|x| x * scale).collect()
}

/// log(weights), centred on 0.
fn log_transform(weights: &[f64]) -> Vec<f64> {
    let logs: Vec<f64> = weights.iter().map(|w| w.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    logs.into_iter().map(|l| l - mean).collect()
}

/// A centred log strength on the Elo scale.
pub fn to_rating(param: f64) -> f64 {
    1000.0 + 400.0 * param / std::f64::consts::LN_10
}

/// One item's fitted rating and its bootstrap interval.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Rated {
    pub rating: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The fit and a `level` (e.g. 0.95) percentile interval from `replicates` bootstrap fits.
pub fn fit_with_intervals(
    n_items: usize,
    cells: &[Cell],
    settings: FitSettings,
    replicates: usize,
    level: f64,
    seed: u64,
) -> Result<Vec<Rated>, FitError> {
    let point = fit(n_items, cells, settings)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(replicates); n_items];
    for _ in 0..replicates {
        let resampled: Vec<Cell> = cells
            .iter()
            .map(|c| Cell {
                count: match Poisson::new(c.count) {
                    Ok(p) => p.sample(&mut rng),
                    Err(_) => 0.0, // a zero count stays zero
                },
                ..*c
            })
            .collect();
        // A replicate without votes says nothing; skip it.
        if let Ok(params) = fit(n_items, &resampled, settings) {
            for (i, p) in params.into_iter().enumerate() {
                samples[i].push(to_rating(p));
            }
        }
    }
    let tail = (1.0 - level) / 2.0;
    Ok(point
        .into_iter()
        .zip(samples)
        .map(|(p, mut s)| {
            let rating = to_rating(p);
            s.sort_by(f64::total_cmp);
            Rated {
                rating,
                ci_low: percentile(&s, tail).unwrap_or(rating),
                ci_high: percentile(&s, 1.0 - tail).unwrap_or(rating),
            }
        })
        .collect())
}

/// Linear-interpolated percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn cells(raw: &[(usize, usize, u32)]) -> Vec<Cell> {
        raw.iter()
            .map(|&(winner, loser, count)| Cell {
                winner,
                loser,
                count: count as f64,
            })
            .collect()
    }

    /// A fixed vote set; the expected values are what `choix.mm_pairwise(5, data, alpha=…)`
    /// (choix 0.4.1, Python) returns for the same votes, printed to 9 decimals.
    const REFERENCE_VOTES: [(usize, usize, u32); 14] = [
        (0, 1, 7),
        (1, 0, 3),
        (0, 2, 9),
        (2, 0, 2),
        (1, 2, 6),
        (2, 1, 5),
        (3, 0, 4),
        (0, 3, 4),
        (3, 4, 8),
        (4, 3, 1),
        (1, 4, 5),
        (4, 1, 2),
        (2, 3, 3),
        (3, 2, 6),
    ];

    #[test]
    fn matches_the_reference_implementation() {
        let votes = cells(&REFERENCE_VOTES);
        for (alpha, expected) in [
            (
                0.0,
                [
                    0.871420004,
                    -0.099557713,
                    -0.297617325,
                    0.693866955,
                    -1.168111921,
                ],
            ),
            (
                0.1,
                [
                    0.853694601,
                    -0.095156399,
                    -0.298559525,
                    0.680532100,
                    -1.140510777,
                ],
            ),
        ] {
            let got = fit(
                5,
                &votes,
                FitSettings {
                    alpha,
                    ..Default::default()
                },
            )
            .unwrap();
            for (g, e) in got.iter().zip(expected) {
                assert!(
                    (g - e).abs() < 1e-6,
                    "alpha {alpha}: {got:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn recovers_known_strengths_from_simulated_votes() {
        let strengths = [1.0, 2.0, 4.0, 8.0, 16.0];
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..40_000 {
            let i = rng.random_range(0..5);
            let j = (i + rng.random_range(1..5)) % 5;
            let p_i = strengths[i] / (strengths[i] + strengths[j]);
            let (w, l) = if rng.random_bool(p_i) { (i, j) } else { (j, i) };
            *counts.entry((w, l)).or_insert(0u32) += 1;
        }
        let votes: Vec<Cell> = counts
            .into_iter()
            .map(|((winner, loser), n)| Cell {
                winner,
                loser,
                count: n as f64,
            })
            .collect();
        let rated = fit_with_intervals(5, &votes, FitSettings::default(), 100, 0.95, 1).unwrap();
        // The order is recovered and each neighbour ratio (truly 2) within 10 %.
        for pair in rated.windows(2) {
            let ratio = 10f64.powf((pair[1].rating - pair[0].rating) / 400.0);
            assert!((ratio - 2.0).abs() < 0.2, "ratio {ratio}: {rated:?}");
        }
        // The true rating lies inside each 95 % interval (a fixed seed keeps this stable).
        let true_params = log_transform(&strengths);
        for (r, p) in rated.iter().zip(true_params) {
            assert!(r.ci_low <= r.rating && r.rating <= r.ci_high, "{r:?}");
            let truth = to_rating(p);
            assert!(
                r.ci_low <= truth && truth <= r.ci_high,
                "{truth} outside {r:?}"
            );
            assert!(
                r.ci_high - r.ci_low < 40.0,
                "intervals are tight with 40k votes: {r:?}"
            );
        }
    }

    #[test]
    fn an_item_that_never_won_stays_finite_with_a_prior() {
        let votes = cells(&[(0, 1, 10), (0, 2, 10), (1, 2, 5), (2, 1, 5)]);
        let params = fit(3, &votes, FitSettings::default()).unwrap();
        assert!(params.iter().all(|p| p.is_finite()));
        assert!(params[0] > params[1] && (params[1] - params[2]).abs() < 1e-9);
        assert_eq!(fit(3, &[], FitSettings::default()), Err(FitError::Empty));
    }

    #[test]
    fn percentiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&s, 0.5), Some(3.0));
        assert_eq!(percentile(&s, 0.125), Some(1.5));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
