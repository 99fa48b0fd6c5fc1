//! Forecasting models fitted on recent 1 s bar closes: pure functions on `&[f64]`.
//!
//! - [`ar`]: an autoregressive AR(p) model with intercept on first differences (an ARIMA(p,1,0)),
//!   fitted by ordinary least squares through the normal equations and a small Gaussian
//!   elimination solver. Its h-step interval uses the ψ-weights of the integrated process.
//! - [`ewma`]: exponentially weighted drift and volatility of log returns (RiskMetrics style,
//!   λ = 0.94); the forecast is `last × exp(μh)` with a lognormal interval `± z σ √h`.
//!
//! Each [`Forecast`] reports the in-sample RMSE (one-step residuals with the final parameters)
//! and a walk-forward RMSE (one-step forecasts made only from data before each of the last
//! points), both in price units, and how many closes it used. Beside the walk-forward RMSE it
//! reports the naive random-walk forecast's (the next close is the last one) on the same
//! points, and the skill score `1 - model / naive`: above 0 the model beats "the price stays
//! where it is", below 0 it does worse.

/// Two-sided 95 % normal quantile.
pub(crate) const Z95: f64 = 1.959_963_984_540_054;

/// Default EWMA decay.
pub(crate) const EWMA_LAMBDA: f64 = 0.94;

/// A model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    #[error("need at least {need} closes, have {have}")]
    TooFewPoints { need: usize, have: usize },
    #[error("the least-squares system is singular (constant or collinear closes)")]
    Singular,
    #[error("closes must be finite and > 0")]
    BadInput,
}

/// A point forecast with its interval and fit quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub point: f64,
    pub low: f64,
    pub high: f64,
    pub rmse_in_sample: f64,
    pub rmse_walk_forward: f64,
    /// The naive forecast's (next close = last close) walk-forward RMSE on the same points.
    pub rmse_naive_walk_forward: f64,
    /// Closes the model was fitted on.
    pub points: usize,
    /// Fitted parameters, named.
    pub params: Vec<(String, f64)>,
}

impl Forecast {
    /// `1 - rmse_walk_forward / rmse_naive_walk_forward`; `None` when the naive forecast made
    /// no error (constant closes), where no ratio means anything.
    pub(crate) fn skill(&self) -> Option<f64> {
        (self.rmse_naive_walk_forward > 0.0)
            .then(|| 1.0 - self.rmse_walk_forward / self.rmse_naive_walk_forward)
    }
}

/// The models offered: REST's `model=`, the keys of a `prediction` event's `models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    Ar,
    Ewma,
}

impl Model {
    /// Every model, in the order a `prediction` event lists them.
    pub(crate) const ALL: [Model; 2] = [Model::Ar, Model::Ewma];

    pub(crate) fn parse(s: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Model::Ar => "ar",
            Model::Ewma => "ewma",
        }
    }

    /// This model fitted on `closes` (oldest first; AR of order `ar_order`, EWMA with
    /// [`EWMA_LAMBDA`]), forecasting `h` bars ahead.
    pub(crate) fn forecast(
        self,
        closes: &[f64],
        ar_order: usize,
        h: usize,
    ) -> Result<Forecast, PredictError> {
        match self {
            Model::Ar => ar(closes, ar_order, h),
            Model::Ewma => ewma(closes, EWMA_LAMBDA, h),
        }
    }
}

/// Every model's forecast from the same closes: what a `prediction` event carries (and what
/// REST answers per model for the same bars).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionSet {
    /// `start` (ms) of the newest 1 s bar used.
    pub as_of_ms: i64,
    pub horizon_s: u64,
    pub last_close: f64,
    /// In [`Model::ALL`]'s order; a model that cannot be fitted yet says why.
    pub models: Vec<(Model, Result<Forecast, PredictError>)>,
}

impl PredictionSet {
    /// Every model on `closes` (oldest first, the newest bar starting at `as_of_ms`), `horizon_s`
    /// one-second bars ahead; `None` without closes.
    pub(crate) fn compute(
        closes: &[f64],
        as_of_ms: i64,
        ar_order: usize,
        horizon_s: u64,
    ) -> Option<PredictionSet> {
        let last_close = *closes.last()?;
        let h = usize::try_from(horizon_s).unwrap_or(usize::MAX);
        Some(PredictionSet {
            as_of_ms,
            horizon_s,
            last_close,
            models: Model::ALL
                .into_iter()
                .map(|m| (m, m.forecast(closes, ar_order, h)))
                .collect(),
        })
    }
}

/// Solves `a x = b` (n×n, row-major) by Gaussian elimination with partial pivoting.
pub(crate) fn solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Result<Vec<f64>, PredictError> {
    let n = b.len();
    if a.len() != n * n {
        return Err(PredictError::BadInput);
    }
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        if a[pivot * n + col].abs() <= 1e-12 * scale {
            return Err(PredictError::Singular);
        }
        if pivot != col {
            for k in 0..n {
                a.swap(pivot * n + k, col * n + k);
            }
            b.swap(pivot, col);
        }
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    Ok(x)
}

fn rmse(errors: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = errors.fold((0.0, 0usize), |(s, n), e| (s + e * e, n + 1));
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

fn check(closes: &[f64]) -> Result<(), PredictError> {
    if closes.iter().all(|c| c.is_finite() && *c > 0.0) {
        Ok(())
    } else {
        Err(PredictError::BadInput)
    }
}

/// Points held out for the walk-forward error.
fn holdout(n: usize) -> usize {
    (n / 5).clamp(1, 30)
}

/// AR(p) coefficients `[c, φ1..φp]` fitted on the differences `d`.
fn ar_fit(d: &[f64], p: usize) -> Result<Vec<f64>, PredictError> {
    let k = p + 1;
    let mut xtx = vec![0.0; k * k];
    let mut xty = vec![0.0; k];
    let mut row = vec![0.0; k];
    for t in p..d.len() {
        row[0] = 1.0;
        for i in 1..=p {
            row[i] = d[t - i];
        }
        for i in 0..k {
            xty[i] += row[i] * d[t];
            for j in 0..k {
                xtx[i * k + j] += row[i] * row[j];
            }
        }
    }
    solve(xtx, xty)
}

/// The one-step forecast of the next difference after `d` (which holds at least p values).
fn ar_next(beta: &[f64], d: &[f64]) -> f64 {
    let p = beta.len() - 1;
    beta[0] + (1..=p).map(|i| beta[i] * d[d.len() - i]).sum::<f64>()
}

/// Least closes AR(p) needs: enough differences for a determined fit and a holdout.
pub(crate) fn ar_min_points(p: usize) -> usize {
    4 * p + 4
}

/// AR(p) on first differences, forecasting `h` steps (bars) ahead.
pub(crate) fn ar(closes: &[f64], p: usize, h: usize) -> Result<Forecast, PredictError> {
    check(closes)?;
    let need = ar_min_points(p);
    if p == 0 || closes.len() < need {
        return Err(PredictError::TooFewPoints {
            need,
            have: closes.len(),
        });
    }
    let d: Vec<f64> = closes.windows(2).map(|w| w[1] - w[0]).collect();
    let beta = ar_fit(&d, p)?;
    let residuals: Vec<f64> = (p..d.len())
        .map(|t| d[t] - ar_next(&beta, &d[..t]))
        .collect();
    let rmse_in = rmse(residuals.iter().copied());
    // Residual variance with the degrees of freedom the fit used.
    let dof = residuals.len().saturating_sub(p + 1).max(1);
    let sigma = (residuals.iter().map(|e| e * e).sum::<f64>() / dof as f64).sqrt();

    // Walk-forward: refit on everything before each held-out difference.
    // The naive forecast of close t+1 is close t: its error is the difference d[t] itself.
    let k = holdout(d.len());
    let mut wf = Vec::with_capacity(k);
    let mut naive = Vec::with_capacity(k);
    for t in d.len() - k..d.len() {
        if let Ok(b) = ar_fit(&d[..t], p) {
            wf.push(d[t] - ar_next(&b, &d[..t]));
            naive.push(d[t]);
        }
    }

    // Recursive h-step forecast of differences, summed onto the last close.
    let mut hist = d.clone();
    let mut level = closes[closes.len() - 1];
    for _ in 0..h {
        let next = ar_next(&beta, &hist);
        hist.push(next);
        level += next;
    }
    // ψ-weights of the AR on differences; cumulative sums give the level's error weights.
    let mut psi = vec![1.0];
    for j in 1..h {
        let v: f64 = (1..=p.min(j)).map(|i| beta[i] * psi[j - i]).sum();
        psi.push(v);
    }
    let mut cum = 0.0;
    let mut var = 0.0;
    for w in psi.iter().take(h) {
        cum += w;
        var += cum * cum;
    }
    let half = Z95 * sigma * var.sqrt();
    let mut params = vec![("intercept".to_owned(), beta[0])];
    params.extend((1..=p).map(|i| (format!("phi_{i}"), beta[i])));
    params.push(("sigma".to_owned(), sigma));
    Ok(Forecast {
        point: level,
        low: level - half,
        high: level + half,
        rmse_in_sample: rmse_in,
        rmse_walk_forward: rmse(wf.into_iter()),
        rmse_naive_walk_forward: rmse(naive.into_iter()),
        points: closes.len(),
        params,
    })
}

/// EWMA drift and volatility of log returns, forecasting `h` steps ahead.
pub(crate) fn ewma(closes: &[f64], lambda: f64, h: usize) -> Result<Forecast, PredictError> {
    check(closes)?;
    if closes.len() < 3 {
        return Err(PredictError::TooFewPoints {
            need: 3,
            have: closes.len(),
        });
    }
    let r: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
    // State before return t: (μ, σ²); one-step forecast of close t+1 is close_t × exp(μ).
    let mut mu = r[0];
    let mut var = 0.0;
    let mut one_step = Vec::with_capacity(r.len());
    for (t, &rt) in r.iter().enumerate().skip(1) {
        one_step.push(closes[t + 1] - closes[t] * mu.exp());
        let dev = rt - mu;
        mu = lambda * mu + (1.0 - lambda) * rt;
        var = lambda * var + (1.0 - lambda) * dev * dev;
    }
    let sigma = var.sqrt();
    let k = holdout(one_step.len());
    let rmse_wf = rmse(one_step[one_step.len() - k..].iter().copied());
    // one_step[j] forecasts close j + 2 (from close j + 1): the naive error on the same points.
    let held = one_step.len() - k..one_step.len();
    let rmse_naive = rmse(held.map(|j| closes[j + 2] - closes[j + 1]));
    let rmse_in = rmse((1..closes.len()).map(|t| closes[t] - closes[t - 1] * mu.exp()));
    let last = closes[closes.len() - 1];
    let hf = h as f64;
    let half = Z95 * sigma * hf.sqrt();
    Ok(Forecast {
        point: last * (mu * hf).exp(),
        low: last * (mu * hf - half).exp(),
        high: last * (mu * hf + half).exp(),
        rmse_in_sample: rmse_in,
        rmse_walk_forward: rmse_wf,
        rmse_naive_walk_forward: rmse_naive,
        points: closes.len(),
        params: vec![
            ("lambda".to_owned(), lambda),
            ("drift".to_owned(), mu),
            ("volatility".to_owned(), sigma),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn solver_matches_hand_solution() {
        // 2x + y = 5, x + 3y = 10  =>  x = 1, y = 3
        let x = solve(vec![2.0, 1.0, 1.0, 3.0], vec![5.0, 10.0]).unwrap();
        assert!(close(x[0], 1.0) && close(x[1], 3.0), "{x:?}");
        // Needs a pivot swap: 0x + y = 2, x + y = 3 => x = 1, y = 2
        let x = solve(vec![0.0, 1.0, 1.0, 1.0], vec![2.0, 3.0]).unwrap();
        assert!(close(x[0], 1.0) && close(x[1], 2.0), "{x:?}");
        assert_eq!(
            solve(vec![1.0, 2.0, 2.0, 4.0], vec![1.0, 2.0]),
            Err(PredictError::Singular)
        );
    }

    #[test]
    fn ar1_recovers_an_exact_process() {
        // Differences follow d_t = 1 + 0.5 d_{t-1} exactly (approaching the fixed point 2), so
        // the fit is exact: c = 1, φ = 0.5, zero residuals. The regressors (1, d_{t-1}) are not
        // collinear while d is still moving.
        let mut clean = vec![100.0];
        let mut d = 10.0;
        for _ in 0..40 {
            d = 1.0 + 0.5 * d;
            clean.push(clean[clean.len() - 1] + d);
        }
        let f = ar(&clean[..16], 1, 2).unwrap();
        let beta: Vec<f64> = f.params.iter().map(|p| p.1).collect();
        assert!(close(beta[0], 1.0), "{:?}", f.params);
        assert!(close(beta[1], 0.5), "{:?}", f.params);
        assert!(f.rmse_in_sample < 1e-9);
        assert!(f.rmse_walk_forward < 1e-9);
        // The naive forecast's error on the same held-out points is the differences
        // themselves: the exact model has all the skill there is.
        let k = holdout(15);
        let naive: Vec<f64> = (15 - k..15).map(|t| clean[t + 1] - clean[t]).collect();
        let want = (naive.iter().map(|e| e * e).sum::<f64>() / k as f64).sqrt();
        assert!(close(f.rmse_naive_walk_forward, want), "{f:?}");
        assert!(close(f.skill().unwrap(), 1.0));
        // Two steps: next differences follow the recursion.
        let last = clean[15];
        let d15 = clean[15] - clean[14];
        let d16 = 1.0 + 0.5 * d15;
        let d17 = 1.0 + 0.5 * d16;
        assert!(
            close(f.point, last + d16 + d17),
            "{} vs {}",
            f.point,
            last + d16 + d17
        );
        assert!(
            close(f.low, f.point) && close(f.high, f.point),
            "zero noise, zero width"
        );
        assert_eq!(f.points, 16);
    }

    #[test]
    fn ar_interval_widths_follow_psi_weights() {
        // Noisy series: interval must widen with h, and h = 1 is ± z σ exactly.
        let closes: Vec<f64> = (0..200)
            .map(|i| 100.0 + ((i * 7919) % 13) as f64 * 0.1 + i as f64 * 0.01)
            .collect();
        let f1 = ar(&closes, 3, 1).unwrap();
        let sigma = f1.params.last().unwrap().1;
        assert!(close(f1.high - f1.point, Z95 * sigma));
        let f10 = ar(&closes, 3, 10).unwrap();
        assert!(f10.high - f10.low > f1.high - f1.low);
        assert!(f1.rmse_in_sample > 0.0 && f1.rmse_walk_forward > 0.0);
    }

    #[test]
    fn ar_needs_enough_points() {
        assert_eq!(
            ar(&[1.0; 10], 3, 1),
            Err(PredictError::TooFewPoints { need: 16, have: 10 })
        );
        assert_eq!(ar(&[1.0, -1.0], 1, 1), Err(PredictError::BadInput));
    }

    #[test]
    fn ewma_on_constant_growth() {
        // 1 % per step: every log return is ln 1.01, so drift = ln 1.01, volatility 0, and the
        // two-step forecast is last × 1.01².
        let closes: Vec<f64> = (0..30).map(|i| 100.0 * 1.01f64.powi(i)).collect();
        let f = ewma(&closes, EWMA_LAMBDA, 2).unwrap();
        assert!(close(f.point, closes[29] * 1.01 * 1.01), "{f:?}");
        assert!(close(f.low, f.point) && close(f.high, f.point));
        assert!(f.rmse_in_sample < 1e-9 && f.rmse_walk_forward < 1e-9);
        assert!(close(f.params[1].1, 1.01f64.ln()));
        assert!(f.rmse_naive_walk_forward > 0.0 && close(f.skill().unwrap(), 1.0));
        // Constant closes: the naive forecast is exact, and no skill is reported.
        assert_eq!(ewma(&[5.0; 10], EWMA_LAMBDA, 1).unwrap().skill(), None);
    }

    #[test]
    fn ewma_volatility_by_hand() {
        // closes 100, 110, 99: r1 = ln 1.1, r2 = ln 0.9. μ0 = r1; after r2 (λ = 0.5):
        // dev = r2 - r1, μ = 0.5 r1 + 0.5 r2, σ² = 0.5 dev².
        let (r1, r2) = (1.1f64.ln(), 0.9f64.ln());
        let f = ewma(&[100.0, 110.0, 99.0], 0.5, 1).unwrap();
        let mu = 0.5 * r1 + 0.5 * r2;
        let sigma = (0.5 * (r2 - r1).powi(2)).sqrt();
        assert!(close(f.point, 99.0 * mu.exp()));
        assert!(close(f.high, 99.0 * (mu + Z95 * sigma).exp()));
        assert!(close(f.low, 99.0 * (mu - Z95 * sigma).exp()));
        // One held-out point, close 99 forecast from 110: the naive error is 99 - 110, the
        // model's 99 - 110 × e^r1 = 99 - 121.
        assert!(close(f.rmse_naive_walk_forward, 11.0), "{f:?}");
        assert!(close(f.rmse_walk_forward, 22.0), "{f:?}");
        assert_eq!(f.skill().map(|s| (s * 1e9).round() / 1e9), Some(-1.0));
    }
}
