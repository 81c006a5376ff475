//! A small probabilistic recurrent network in the manner of DeepAR (Salinas et al., 2020),
//! on `candle-nn`: one LSTM layer reads, at each step, the previous value, the value one
//! season earlier and the phase within the season, and outputs the mean and scale of a
//! Gaussian for the next value. It is trained per series on windows of the standardised
//! history by Gaussian negative log-likelihood with AdamW (teacher forcing), and it forecasts
//! by sampling paths step by step, feeding each sample back as the next input; the quantiles
//! of the paths at each step are the forecast, so they never cross.
//!
//! Training is bounded by a number of epochs and a wall-clock budget, and it is
//! deterministic for a seed: weights are initialised from a seeded generator (not candle's
//! thread-local one) and the paths use their own seeded normal draws.
//!
//! Behind the cargo feature `lstm`, so the default build does not compile candle.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::rnn::{LSTMConfig, LSTMState, LSTM, RNN};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::{check_finite, check_levels, quantile_sorted, Fitted, ForecastError, Forecaster};

/// Input features per step: previous value, value one season earlier, sin and cos of the
/// phase.
const FEATURES: usize = 4;

/// The LSTM forecaster's settings.
#[derive(Debug, Clone)]
pub struct Lstm {
    /// Season in steps for the lag and phase inputs (`None`: no seasonal inputs).
    pub season: Option<usize>,
    /// Hidden units.
    pub hidden: usize,
    /// Steps per training window.
    pub window: usize,
    /// Leading steps of each window that only warm the state up (no loss).
    pub warmup: usize,
    /// Most training windows (spread evenly over the history, newest kept).
    pub max_windows: usize,
    /// Windows per gradient step.
    pub batch: usize,
    /// Most passes over the windows.
    pub max_epochs: usize,
    /// Wall-clock limit for training; the epoch under way when it runs out is the last.
    pub budget: Duration,
    /// Sample paths drawn per forecast.
    pub samples: usize,
    /// Learning rate of AdamW.
    pub learning_rate: f64,
    /// Seed for the initial weights, the window order and the sample paths.
    pub seed: u64,
}

impl Default for Lstm {
    fn default() -> Self {
        Self {
            season: None,
            hidden: 32,
            window: 64,
            warmup: 16,
            max_windows: 2000,
            batch: 64,
            max_epochs: 30,
            budget: Duration::from_secs(30),
            samples: 300,
            learning_rate: 0.01,
            seed: 7,
        }
    }
}

impl Lstm {
    /// The defaults with a season.
    pub fn with_season(season: Option<usize>) -> Self {
        Self {
            season: season.filter(|m| *m >= 2),
            ..Self::default()
        }
    }
}

fn err(e: candle_core::Error) -> ForecastError {
    ForecastError::Invalid(format!("lstm: {e}"))
}

/// The network: an LSTM layer and a linear head to (mean, log-scale).
struct Net {
    lstm: LSTM,
    head: Linear,
}

impl Net {
    fn new(vb: VarBuilder, hidden: usize) -> candle_core::Result<Self> {
        let lstm = candle_nn::lstm(FEATURES, hidden, LSTMConfig::default(), vb.pp("lstm"))?;
        let head = candle_nn::linear(hidden, 2, vb.pp("head"))?;
        Ok(Self { lstm, head })
    }

    /// Gaussian parameters for hidden states `h` (`[.., hidden]`): mean and log-scale.
    fn params(&self, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let out = self.head.forward(h)?;
        let mu = out.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let log_sigma = out
            .narrow(D::Minus1, 1, 1)?
            .squeeze(D::Minus1)?
            .clamp(-6.0f32, 4.0f32)?;
        Ok((mu, log_sigma))
    }
}

/// Standardised series with the inputs for each step.
struct Inputs<'a> {
    z: &'a [f64],
    season: Option<usize>,
}

impl Inputs<'_> {
    /// Features for predicting step `t` (needs `t >= 1`); `lagged` is the value one
    /// season before `t` (or the previous value without a season).
    fn features(&self, prev: f64, lagged: f64, t: usize) -> [f32; FEATURES] {
        match self.season {
            Some(m) => {
                let a = 2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64;
                [prev as f32, lagged as f32, a.sin() as f32, a.cos() as f32]
            }
            None => [prev as f32, lagged as f32, 0.0, 0.0],
        }
    }

    fn lagged(&self, t: usize) -> f64 {
        match self.season {
            Some(m) if t >= m => self.z[t - m],
            _ => self.z[t - 1],
        }
    }
}

impl Forecaster for Lstm {
    fn name(&self) -> String {
        "lstm".into()
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        check_finite(y)?;
        let first = self.season.unwrap_or(1).max(1);
        let needed = first + self.window + self.batch.min(32);
        if y.len() < needed {
            return Err(ForecastError::TooShort {
                model: "lstm".into(),
                needed,
                got: y.len(),
            });
        }
        let started = Instant::now();
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let scale = if sd > 1e-9 * mean.abs().max(1.0) {
            sd
        } else {
            1.0
        };
        let z: Vec<f64> = y.iter().map(|v| (v - mean) / scale).collect();
        let inputs = Inputs {
            z: &z,
            season: self.season,
        };

        // Window starts: every position whose window has its lag inputs, thinned evenly
        // to at most `max_windows`, the newest always included.
        let last_start = z.len() - self.window;
        let starts: Vec<usize> = {
            let all = last_start + 1 - first;
            let k = all.min(self.max_windows);
            (0..k)
                .map(|i| last_start - (i as f64 * all as f64 / k as f64) as usize)
                .collect()
        };

        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let net = Net::new(vb, self.hidden).map_err(err)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        init_weights(&varmap, self.hidden, &mut rng).map_err(err)?;
        let mut opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: self.learning_rate,
                weight_decay: 1e-4,
                ..ParamsAdamW::default()
            },
        )
        .map_err(err)?;

        let w = self.window;
        let mut order = starts.clone();
        let mut epochs = 0;
        let mut last_loss = f64::NAN;
        while epochs < self.max_epochs && (epochs == 0 || started.elapsed() < self.budget) {
            // Shuffle (Fisher-Yates) with the seeded generator.
            for i in (1..order.len()).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
            let (mut sum, mut count) = (0.0, 0usize);
            for chunk in order.chunks(self.batch) {
                let b = chunk.len();
                let mut x = Vec::with_capacity(b * w * FEATURES);
                let mut target = Vec::with_capacity(b * (w - self.warmup));
                for &s in chunk {
                    for t in s..s + w {
                        x.extend_from_slice(&inputs.features(z[t - 1], inputs.lagged(t), t));
                    }
                    target.extend(z[s + self.warmup..s + w].iter().map(|v| *v as f32));
                }
                let x = Tensor::from_vec(x, (b, w, FEATURES), &dev).map_err(err)?;
                let target = Tensor::from_vec(target, (b, w - self.warmup), &dev).map_err(err)?;
                let loss = (|| {
                    let states = net.lstm.seq(&x)?;
                    let h = net.lstm.states_to_tensor(&states[self.warmup..])?;
                    let (mu, log_sigma) = net.params(&h)?;
                    // Gaussian negative log-likelihood, constant dropped.
                    let r = ((target - mu)? / log_sigma.exp()?)?;
                    (log_sigma + (r.sqr()? * 0.5)?)?.mean_all()
                })()
                .map_err(err)?;
                opt.backward_step(&loss).map_err(err)?;
                sum += loss.to_scalar::<f32>().map_err(err)? as f64 * b as f64;
                count += b;
            }
            last_loss = sum / count.max(1) as f64;
            if !last_loss.is_finite() {
                return Err(ForecastError::Invalid(
                    "lstm: training diverged (non-finite loss); the series may have extreme outliers"
                        .into(),
                ));
            }
            epochs += 1;
        }

        let context = (4 * w).max(self.season.unwrap_or(0)).min(z.len() - first);
        let state = final_state(&net, &inputs, context)?;
        Ok(Box::new(FittedLstm {
            net: std::sync::Arc::new(net),
            state,
            context,
            z,
            mean,
            scale,
            season: self.season,
            samples: self.samples,
            seed: self.seed,
            epochs,
            loss: last_loss,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }
}

/// Uniform(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight, as PyTorch initialises an
/// LSTM, drawn in name order from the seeded generator.
fn init_weights(varmap: &VarMap, hidden: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<()> {
    let k = 1.0 / (hidden as f64).sqrt();
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| rng.random_range(-k..k) as f32)
            .collect();
        var.set(&Tensor::from_vec(values, shape, var.device())?)?;
    }
    Ok(())
}

/// The state after reading the last `context` steps of the history, the last value
/// included: the input at `t` is `z[t - 1]`, and the output predicts `z[t]`.
fn final_state(net: &Net, inputs: &Inputs, context: usize) -> Result<LSTMState, ForecastError> {
    let z = inputs.z;
    let from = z.len() + 1 - context;
    let mut x = Vec::with_capacity(context * FEATURES);
    for t in from..=z.len() {
        x.extend_from_slice(&inputs.features(z[t - 1], inputs.lagged(t), t));
    }
    let x = Tensor::from_vec(x, (1, context, FEATURES), &Device::Cpu).map_err(err)?;
    let states = net.lstm.seq(&x).map_err(err)?;
    Ok(states.last().expect("context is not empty").clone())
}

struct FittedLstm {
    net: std::sync::Arc<Net>,
    state: LSTMState,
    /// Steps read into the state before forecasting.
    context: usize,
    z: Vec<f64>,
    mean: f64,
    scale: f64,
    season: Option<usize>,
    samples: usize,
    seed: u64,
    epochs: usize,
    loss: f64,
    seconds: f64,
}

impl Fitted for FittedLstm {
    fn describe(&self) -> String {
        format!(
            "lstm(hidden={}, season={}, epochs={}, nll={:.3}, {:.1}s)",
            self.net.lstm_hidden(),
            self.season.map_or("none".to_string(), |m| m.to_string()),
            self.epochs,
            self.loss,
            self.seconds
        )
    }

    /// The trained network reads the new points (standardised as in training) into its
    /// state; the history it keeps drops whole seasons from its front, so the season's
    /// phase stays where training put it.
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        Some((|| {
            check_finite(new)?;
            let mut z = self.z.clone();
            z.extend(new.iter().map(|v| (v - self.mean) / self.scale));
            let m = self.season.unwrap_or(1);
            let excess = z.len().saturating_sub(self.z.len());
            z.drain(..excess / m * m);
            let inputs = Inputs {
                z: &z,
                season: self.season,
            };
            let state = final_state(&self.net, &inputs, self.context)?;
            Ok(Box::new(FittedLstm {
                net: self.net.clone(),
                state,
                context: self.context,
                z,
                mean: self.mean,
                scale: self.scale,
                season: self.season,
                samples: self.samples,
                seed: self.seed,
                epochs: self.epochs,
                loss: self.loss,
                seconds: self.seconds,
            }) as Box<dyn Fitted>)
        })())
    }

    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let n = self.z.len();
        let s = self.samples.max(1);
        let dev = Device::Cpu;
        let inputs = Inputs {
            z: &self.z,
            season: self.season,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        // paths[k][p]: sample p at step n + k (standardised).
        let mut paths: Vec<Vec<f64>> = Vec::with_capacity(horizon);
        let broadcast = |t: &Tensor| t.broadcast_as((s, t.dim(1)?))?.contiguous();
        let mut state = LSTMState {
            h: broadcast(&self.state.h).map_err(err)?,
            c: broadcast(&self.state.c).map_err(err)?,
        };
        // The state already saw step n - 1 as input; its output is the distribution of z[n].
        let (mut mu, mut log_sigma) = self.net.params(&state.h).map_err(err)?;
        for k in 0..horizon {
            let mu_v: Vec<f32> = mu.to_vec1().map_err(err)?;
            let ls_v: Vec<f32> = log_sigma.to_vec1().map_err(err)?;
            let draws: Vec<f64> = (0..s)
                .map(|p| {
                    mu_v[p] as f64 + (ls_v[p] as f64).exp() * rng.sample::<f64, _>(StandardNormal)
                })
                .collect();
            paths.push(draws);
            if k + 1 == horizon {
                break;
            }
            // Inputs for step n + k + 1: the value just drawn and the one a season earlier.
            let t = n + k + 1;
            let mut x = Vec::with_capacity(s * FEATURES);
            for (p, &prev) in paths[k].iter().enumerate() {
                let lagged = match self.season {
                    Some(m) if t - m >= n => paths[t - m - n][p],
                    Some(m) => self.z[t - m],
                    None => prev,
                };
                x.extend_from_slice(&inputs.features(prev, lagged, t));
            }
            let x = Tensor::from_vec(x, (s, FEATURES), &dev).map_err(err)?;
            state = self.net.lstm.step(&x, &state).map_err(err)?;
            (mu, log_sigma) = self.net.params(&state.h).map_err(err)?;
        }
        Ok(paths
            .into_iter()
            .map(|mut draws| {
                draws.sort_by(f64::total_cmp);
                levels
                    .iter()
                    .map(|l| self.mean + self.scale * quantile_sorted(&draws, *l))
                    .collect()
            })
            .collect())
    }
}

impl Net {
    fn lstm_hidden(&self) -> usize {
        self.head.weight().dim(1).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cv::{cross_validate, CvConfig};
    use crate::SeasonalNaive;

    /// A daily-like season of 24 steps with noise and an AR(1) component.
    fn seasonal(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ar = 0.0;
        (0..n)
            .map(|t| {
                ar = 0.8 * ar + 0.5 * rng.sample::<f64, _>(StandardNormal);
                let a = 2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0;
                50.0 + 10.0 * a.sin() + 4.0 * (2.0 * a).cos() + ar
            })
            .collect()
    }

    /// Smaller than the defaults so the test takes seconds, not minutes.
    fn quick() -> Lstm {
        Lstm {
            season: Some(24),
            hidden: 16,
            max_windows: 1200,
            max_epochs: 40,
            samples: 200,
            // Epochs bound it, not the clock: the same on a busy machine as on an idle one.
            budget: Duration::from_secs(3600),
            ..Lstm::default()
        }
    }

    #[test]
    fn learns_a_season_and_beats_seasonal_naive_out_of_sample() {
        let y = seasonal(1400, 1);
        let cv = CvConfig::back_to_back(24, 3, 24, 2000);
        let lstm = cross_validate(&quick(), &y, &cv)
            .scores
            .expect("lstm folds");
        let snaive = cross_validate(&SeasonalNaive { season: 24 }, &y, &cv)
            .scores
            .expect("snaive folds");
        // The AR(1) part makes the last season a noisy template; a model of the
        // season plus the recent level must do clearly better.
        assert!(
            lstm.mase < 0.9 * snaive.mase,
            "lstm MASE {} vs snaive {}",
            lstm.mase,
            snaive.mase
        );
        assert!(lstm.crps < snaive.crps, "{} vs {}", lstm.crps, snaive.crps);
        assert!(
            (0.6..=0.98).contains(&lstm.coverage80),
            "80% interval covered {}",
            lstm.coverage80
        );
    }

    #[test]
    fn mean_reverts_after_a_high_value_and_is_deterministic() {
        // AR(1) around 100 with phi 0.9 (sd 2.3), ending 4 sd high.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut v = 0.0;
        let mut y: Vec<f64> = (0..1200)
            .map(|_| {
                v = 0.9 * v + rng.sample::<f64, _>(StandardNormal);
                100.0 + v
            })
            .collect();
        *y.last_mut().expect("non-empty") = 100.0 + 4.0 * (1.0f64 / 0.19).sqrt();
        let spec = Lstm {
            season: None,
            max_windows: 600,
            max_epochs: 20,
            // Bounded by epochs alone: a wall-clock budget would stop a run on a busy
            // machine at another epoch than the next, and the forecasts would differ.
            budget: Duration::from_secs(3600),
            ..Lstm::default()
        };
        let f = spec.fit(&y).expect("fits");
        let q = f.predict(30, &[0.1, 0.5, 0.9]).expect("predicts");
        let first = q[0][1];
        let last = q[29][1];
        assert!(
            first > 104.0,
            "one step after the spike the median is {first}"
        );
        assert!(
            (last - 100.0).abs() < 0.5 * (first - 100.0),
            "median does not revert: {first} then {last}"
        );
        for step in &q {
            assert!(step[0] <= step[1] && step[1] <= step[2]);
        }
        // The interval widens with the lead, as an AR(1)'s does.
        assert!(q[29][2] - q[29][0] > q[0][2] - q[0][0]);
        let again = spec.fit(&y).expect("fits").predict(30, &[0.1, 0.5, 0.9]);
        assert_eq!(again.expect("predicts"), q, "same seed, same forecast");
        // Advancing over no new points changes nothing; a network trained before the
        // spike and advanced over the last 100 points (no training) sees the spike too.
        let same = f.advance(&[]).expect("lstm advances").expect("advances");
        assert_eq!(same.predict(30, &[0.1, 0.5, 0.9]).expect("predicts"), q);
        let early = spec.fit(&y[..1100]).expect("fits");
        let moved = early
            .advance(&y[1100..])
            .expect("lstm advances")
            .expect("advances");
        assert_eq!(
            moved.describe(),
            early.describe(),
            "same network, not retrained"
        );
        let p = moved.predict(30, &[0.1, 0.5, 0.9]).expect("predicts");
        assert!(
            p[0][1] > 104.0,
            "advanced model ignores the spike: {:?}",
            p[0]
        );
        assert!(f.advance(&[f64::NAN]).expect("lstm advances").is_err());
    }

    #[test]
    fn too_short_and_non_finite_histories_are_refused() {
        let spec = quick();
        assert!(matches!(
            spec.fit(&[1.0; 50]),
            Err(ForecastError::TooShort { .. })
        ));
        let mut y = seasonal(500, 2);
        y[10] = f64::NAN;
        assert!(matches!(spec.fit(&y), Err(ForecastError::NonFinite(10))));
    }
}
