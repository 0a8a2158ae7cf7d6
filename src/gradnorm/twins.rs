//! CPU twins of the CUDA building-block kernels that have no engine-level counterpart:
//! `gemm_nt_<dtype>`, `mlp_step_f32`, `project_f32` and `column_sum_f32` (kernels/gemm.cu,
//! mlp_stats.cu, project.cu). Each twin computes what its kernel computes, exactly, in f64, and
//! returns every output as a [`Bounded`] value: the exact result and the scale its f32
//! rounding error is bounded by. A kernel's output `got` passes when
//! `|got − value| ≤ 2(n + 8)·u · magnitude` with u = 2⁻²⁴ and n the length of the longest chain
//! of f32 additions behind the output ([`Bounded::allows`]): twice the worst-case bound on a
//! recursive or blocked f32 sum, the factor 2 and the + 8 covering libm's few-ulp expf/erff and
//! the product roundings. Unlike a fixed relative tolerance it scales with the chain:
//! at d = 1024 it is 1.2e-4 of Σ|terms|, an eighth of an average term, so a dropped term of
//! average size fails. At d = 4096 it is 4.9e-4, about two average terms; a tighter
//! (probabilistic, √n) bound would be needed there and is not adopted.
//!
//! The twins are the reference of the emulated kernel runs (tests/it/kernels_compile.rs) and of
//! the same checks on a device (scripts/gpu-check.sh), so a mismatch points at one kernel.

use crate::head::Activation;

/// An exact output and the magnitude that bounds its f32 rounding error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounded {
    /// The exact value, in f64 from the kernel's own f32 inputs.
    pub value: f64,
    /// Σ |terms| of the sums behind it (for an elementwise result, a scale of its inputs).
    pub magnitude: f64,
}

impl Bounded {
    fn sum(terms: impl Iterator<Item = f64>) -> Self {
        terms.fold(
            Bounded {
                value: 0.0,
                magnitude: 0.0,
            },
            |acc, t| Bounded {
                value: acc.value + t,
                magnitude: acc.magnitude + t.abs(),
            },
        )
    }

    /// The f32 bound for a chain of `chain` additions: 2(chain + 8)·2⁻²⁴ · magnitude.
    pub fn bound(&self, chain: usize) -> f64 {
        2.0 * (chain as f64 + 8.0) * 2f64.powi(-24) * self.magnitude
    }

    /// True when an f32 result `got` lies within [`Bounded::bound`] of the exact value.
    pub fn allows(&self, got: f32, chain: usize) -> bool {
        (got as f64 - self.value).abs() <= self.bound(chain) + f64::MIN_POSITIVE
    }
}

/// `gemm_nt`: C[i, j] = Σ_k x[i, k] · w[j, k] for x [m, k] (the feature rows, widened) and
/// w [n, k]; C is [m, n] row-major. Chain length k.
pub fn gemm_nt(x: &[f64], w: &[f32], m: usize, n: usize, k: usize) -> Vec<Bounded> {
    assert!(
        x.len() >= m * k && w.len() >= n * k,
        "gemm_nt twin: short inputs"
    );
    (0..m * n)
        .map(|at| {
            let (i, j) = (at / n, at % n);
            Bounded::sum((0..k).map(|c| x[i * k + c] * w[j * k + c] as f64))
        })
        .collect()
}

/// `mlp_step_f32`'s four outputs for S steps of width h.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpStep {
    /// a = φ(u + b₁), [S, h]; elementwise.
    pub a: Vec<Bounded>,
    /// e = w₂ ⊙ φ'(u + b₁), [S, h]; elementwise.
    pub e: Vec<Bounded>,
    /// z_j = w₂·a_j + b₂, [S]; chain h + 4.
    pub z: Vec<Bounded>,
    /// ‖a_j‖², [S]; chain h + 4.
    pub a_sq: Vec<Bounded>,
}

/// `mlp_step_f32` on u = W₁h ([S, h], f32 as the GEMM left it). The elementwise magnitudes are
/// |u + b₁| + |u| + |b₁| + 1: the f32 sum u + b₁ rounds once, and the activation's own error
/// (erf for GELU) is absolute, hence the + 1.
pub fn mlp_step(u: &[f32], b1: &[f32], w2: &[f32], b2: f32, activation: Activation) -> MlpStep {
    let h = b1.len();
    assert!(
        w2.len() == h && u.len().is_multiple_of(h.max(1)),
        "mlp_step twin: shapes"
    );
    let s = u.len() / h.max(1);
    let mut out = MlpStep {
        a: Vec::with_capacity(s * h),
        e: Vec::with_capacity(s * h),
        z: Vec::with_capacity(s),
        a_sq: Vec::with_capacity(s),
    };
    for j in 0..s {
        let mut z = Bounded {
            value: b2 as f64,
            magnitude: (b2 as f64).abs(),
        };
        let mut sq = Bounded {
            value: 0.0,
            magnitude: 0.0,
        };
        for m in 0..h {
            let (uv, bv, wv) = (u[j * h + m] as f64, b1[m] as f64, w2[m] as f64);
            let pre = uv + bv;
            let scale = pre.abs() + uv.abs() + bv.abs() + 1.0;
            let (av, dv) = (activation.apply(pre), activation.derivative(pre));
            out.a.push(Bounded {
                value: av,
                magnitude: scale,
            });
            out.e.push(Bounded {
                value: wv * dv,
                magnitude: wv.abs() * scale,
            });
            z.value += wv * av;
            z.magnitude += wv.abs() * scale;
            sq.value += av * av;
            sq.magnitude += scale * scale;
        }
        out.z.push(z);
        out.a_sq.push(sq);
    }
    out
}

/// `project_f32`: out[i, dir] = ⟨grad_i, dir_dir⟩ for grads [count, p] and dirs [k, p]; out is
/// [count, k] row-major. Chain length p.
pub fn project(grads: &[f32], dirs: &[f32], count: usize, p: usize, k: usize) -> Vec<Bounded> {
    assert!(
        grads.len() >= count * p && dirs.len() >= k * p,
        "project twin: short inputs"
    );
    (0..count * k)
        .map(|at| {
            let (i, dir) = (at / k, at % k);
            Bounded::sum((0..p).map(|q| grads[i * p + q] as f64 * dirs[dir * p + q] as f64))
        })
        .collect()
}

/// `column_sum_f32`: out[q] = Σ_i grad[i, q] over `count` rows of width p. Chain length count.
pub fn column_sum(grads: &[f32], count: usize, p: usize) -> Vec<Bounded> {
    assert!(grads.len() >= count * p, "column_sum twin: short input");
    (0..p)
        .map(|q| Bounded::sum((0..count).map(|i| grads[i * p + q] as f64)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[Bounded]) -> Vec<f64> {
        v.iter().map(|b| b.value).collect()
    }

    #[test]
    fn gemm_nt_multiplies_by_the_transpose() {
        // x = [[1, 2, 3], [4, 5, 6]], w = [[1, 0, -1], [2, 1, 0]]: C = x wᵀ.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let c = gemm_nt(&x, &w, 2, 2, 3);
        assert_eq!(values(&c), vec![-2.0, 4.0, -2.0, 13.0]);
        assert_eq!(c[0].magnitude, 4.0);
        assert_eq!(c[3].magnitude, 13.0);
    }

    #[test]
    fn mlp_step_applies_bias_activation_and_reductions() {
        // Two steps, h = 2, ReLU: pre = u + b₁ = [[1, -3], [2, 0.5]].
        let u = [0.5, -1.0, 1.5, 2.5];
        let b1 = [0.5, -2.0];
        let w2 = [2.0, -1.0];
        let out = mlp_step(&u, &b1, &w2, 0.25, Activation::Relu);
        assert_eq!(values(&out.a), vec![1.0, 0.0, 2.0, 0.5]);
        assert_eq!(values(&out.e), vec![2.0, 0.0, 2.0, -1.0]);
        assert_eq!(values(&out.z), vec![2.25, 3.75]);
        assert_eq!(values(&out.a_sq), vec![1.0, 4.25]);
        // |pre| + |u| + |b₁| + 1 for the first element: 1 + 0.5 + 0.5 + 1.
        assert_eq!(out.a[0].magnitude, 3.0);
    }

    #[test]
    fn project_and_column_sum_by_hand() {
        let grads = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
        let dirs = [1.0, -1.0, 1.0, 0.0, 2.0, 0.0];
        assert_eq!(
            values(&project(&grads, &dirs, 2, 3, 2)),
            vec![2.0, 4.0, 2.5, 1.0]
        );
        assert_eq!(values(&column_sum(&grads, 2, 3)), vec![0.0, 2.5, 7.0]);
        assert_eq!(column_sum(&grads, 2, 3)[0].magnitude, 2.0);
    }

    #[test]
    fn the_bound_passes_rounding_and_refuses_a_dropped_term() {
        // 1024 terms of mixed sign: an f32 recursive sum passes, the same sum without one term
        // (about 1e-3 of the total magnitude, the bound being 1.2e-4) does not.
        let terms: Vec<f64> = (0..1024)
            .map(|i| {
                ((i * 7919 % 1000) as f64 / 1000.0 + 0.5) * if i % 3 == 0 { -1.0 } else { 1.0 }
            })
            .collect();
        let exact = Bounded::sum(terms.iter().copied());
        let f32_sum = terms.iter().fold(0.0f32, |a, &t| a + t as f32);
        assert!(exact.allows(f32_sum, terms.len()));
        let dropped = f32_sum - terms[17] as f32;
        assert!(!exact.allows(dropped, terms.len()));
    }
}
