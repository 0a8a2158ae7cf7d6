//! The world's linear teacher: the ridge-penalised logistic regression of the verifier's step
//! correctness on the policy's hidden states.
//!
//! The simulator draws labels from a linear-logistic teacher q* = σ(⟨w*, ϕ⟩ + b*), the paper's
//! modelling assumption, and the experiments compare students against it. The world has no such
//! teacher: its truth is the verifier's. Its stand-in is the best linear-logistic account of that
//! truth on these features, fitted on the whole corpus: q* is then what a linear head could know
//! at best, and how far it is from the verifier (the fit's accuracy, recorded in the manifest)
//! says how well the theory's assumption holds here.
//!
//! Newton's method on ½λ‖w‖² + Σ BCE(⟨w, ϕ⟩ + b, z) (the bias unpenalised), sums taken over
//! fixed chunks in a fixed order, so the fit is the same on any number of threads.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::logistic::{bce_with_logits, sigmoid};

/// Rows per chunk of the sums.
const CHUNK: usize = 2048;
/// Newton iterations at most.
const MAX_ITER: usize = 50;

/// A fitted teacher.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinearTeacher {
    /// w*.
    #[serde(skip)]
    pub w: Vec<f64>,
    /// b*.
    pub b: f64,
    /// The ridge penalty λ.
    pub ridge: f64,
    /// Newton iterations run.
    pub iterations: usize,
    /// Mean BCE of the fit on its own rows.
    pub mean_loss: f64,
    /// Share of rows where 1[q* > ½] equals the label.
    pub accuracy: f64,
    /// Share of rows labelled 1.
    pub positive_share: f64,
}

impl LinearTeacher {
    /// q* of one feature row.
    pub fn q(&self, x: &[f32]) -> f64 {
        sigmoid(self.logit(x))
    }

    fn logit(&self, x: &[f32]) -> f64 {
        self.b
            + x.iter()
                .zip(&self.w)
                .map(|(&a, &w)| f64::from(a) * w)
                .sum::<f64>()
    }
}

/// Fits the teacher of labels `z` (0/1) on the rows of `x` ([n, d] row-major).
pub fn fit_linear_teacher(x: &[f32], d: usize, z: &[u8], ridge: f64) -> Result<LinearTeacher> {
    let n = z.len();
    if d == 0 || x.len() != n * d || n == 0 {
        return Err(Error::invalid(format!(
            "teacher fit: {} feature values for {n} labels of dimension {d}",
            x.len()
        )));
    }
    if !(ridge > 0.0 && ridge.is_finite()) {
        return Err(Error::invalid(
            "teacher fit: the ridge penalty must be positive",
        ));
    }
    let k = d + 1; // weights, then the bias
    let mut theta = vec![0.0f64; k];
    let mut iterations = 0;
    for _ in 0..MAX_ITER {
        iterations += 1;
        // gradient and Hessian of the penalised loss, chunk by chunk, added in chunk order
        let parts: Vec<(Vec<f64>, Vec<f64>)> = x
            .par_chunks(CHUNK * d)
            .zip(z.par_chunks(CHUNK))
            .map(|(xs, zs)| {
                let mut g = vec![0.0; k];
                let mut h = vec![0.0; k * k];
                let mut row = vec![0.0; k];
                for (xr, &zr) in xs.chunks_exact(d).zip(zs) {
                    row[..d]
                        .iter_mut()
                        .zip(xr)
                        .for_each(|(r, &v)| *r = f64::from(v));
                    row[d] = 1.0;
                    let s: f64 = row.iter().zip(&theta).map(|(a, b)| a * b).sum();
                    let p = sigmoid(s);
                    let (e, wgt) = (p - f64::from(zr), p * (1.0 - p));
                    for i in 0..k {
                        g[i] += e * row[i];
                        let wi = wgt * row[i];
                        for j in i..k {
                            h[i * k + j] += wi * row[j];
                        }
                    }
                }
                (g, h)
            })
            .collect();
        let mut g = vec![0.0; k];
        let mut h = vec![0.0; k * k];
        for (pg, ph) in &parts {
            g.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
            h.iter_mut().zip(ph).for_each(|(a, b)| *a += b);
        }
        for i in 0..k {
            for j in 0..i {
                h[i * k + j] = h[j * k + i];
            }
        }
        for i in 0..d {
            g[i] += ridge * theta[i];
            h[i * k + i] += ridge;
        }
        // a tiny damping on the bias keeps an all-one-label corpus solvable
        h[d * k + d] += 1e-9;
        let step = crate::linalg::solve(&mut h, &mut g, k);
        if step.iter().any(|v| !v.is_finite()) {
            return Err(Error::Other(
                "teacher fit: the Newton step is not finite".into(),
            ));
        }
        theta.iter_mut().zip(&step).for_each(|(t, s)| *t -= s);
        if step.iter().map(|s| s * s).sum::<f64>().sqrt() < 1e-10 {
            break;
        }
    }
    let mut t = LinearTeacher {
        b: theta[d],
        w: theta[..d].to_vec(),
        ridge,
        iterations,
        mean_loss: 0.0,
        accuracy: 0.0,
        positive_share: z.iter().filter(|&&v| v == 1).count() as f64 / n as f64,
    };
    let (mut loss, mut right) = (0.0, 0usize);
    for (xr, &zr) in x.chunks_exact(d).zip(z) {
        let s = t.logit(xr);
        loss += bce_with_logits(s, f64::from(zr));
        right += usize::from((s > 0.0) == (zr == 1));
    }
    t.mean_loss = loss / n as f64;
    t.accuracy = right as f64 / n as f64;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_fit_recovers_a_planted_teacher_on_any_thread_count() {
        let (n, d) = (6000, 4);
        let truth = [1.5, -2.0, 0.5, 0.0];
        let bias = 0.3;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut x = Vec::with_capacity(n * d);
        let mut z = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f32> = (0..d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            let s: f64 = bias
                + row
                    .iter()
                    .zip(&truth)
                    .map(|(&a, &w)| f64::from(a) * w)
                    .sum::<f64>();
            z.push(u8::from(rng.random::<f64>() < sigmoid(s)));
            x.extend(row);
        }
        let t = fit_linear_teacher(&x, d, &z, 1e-3).unwrap();
        for (w, want) in t.w.iter().zip(truth) {
            assert!((w - want).abs() < 0.2, "{:?}", t.w);
        }
        assert!((t.b - bias).abs() < 0.15, "{}", t.b);
        assert!(t.iterations < 20);
        // the gradient of the penalised loss vanishes at the fit
        let mut g = vec![0.0; d + 1];
        for (xr, &zr) in x.chunks_exact(d).zip(&z) {
            let e = t.q(xr) - f64::from(zr);
            for (gi, &xi) in g.iter_mut().zip(xr) {
                *gi += e * f64::from(xi);
            }
            g[d] += e;
        }
        for (gi, &wi) in g.iter_mut().zip(&t.w) {
            *gi += 1e-3 * wi;
        }
        assert!(g.iter().all(|v| v.abs() < 1e-6), "{g:?}");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let one = pool.install(|| fit_linear_teacher(&x, d, &z, 1e-3).unwrap());
        assert_eq!(one, t);
        assert_eq!(one.w, t.w);
        assert!(fit_linear_teacher(&x, d, &z[..10], 1.0).is_err());
        assert!(fit_linear_teacher(&x, d, &z, 0.0).is_err());
    }
}
