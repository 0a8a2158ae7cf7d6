//! Small numerical tools the calibration needs: Gauss–Hermite quadrature for expectations over
//! normal latents, the standard normal quantile, and a bracketing root finder.
//!
//! The calibration evaluates expected corpus statistics thousands of times, so expectations over
//! the model's normal latents are taken by quadrature (exact to high order for smooth integrands)
//! rather than by Monte Carlo, which would make the fitted parameters noisy and seed-dependent.

/// Nodes and weights of the n-point Gauss–Hermite rule for a standard normal:
/// `E[f(X)] ≈ Σ w_i f(x_i)` with X ~ N(0, 1), weights summing to 1, exact for polynomials of
/// degree < 2n.
///
/// Golub–Welsch: the nodes are the eigenvalues of the Jacobi matrix of the (probabilists')
/// Hermite polynomials, the weights the squared first components of its eigenvectors.
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(n >= 1, "a quadrature rule needs at least one node");
    let mut d = vec![0.0; n];
    // Sub-diagonal: e[i] couples i and i + 1; the last entry is scratch.
    let mut e: Vec<f64> = (0..n).map(|i| ((i + 1) as f64).sqrt()).collect();
    e[n - 1] = 0.0;
    let mut z0 = vec![0.0; n];
    z0[0] = 1.0;
    tridiagonal_ql(&mut d, &mut e, &mut z0);
    let mut pairs: Vec<(f64, f64)> = d.into_iter().zip(z0.into_iter().map(|v| v * v)).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs.into_iter().unzip()
}

/// Implicit QL on a symmetric tridiagonal matrix (diagonal `d`, sub-diagonal `e`), tracking only
/// the first row `z0` of the eigenvector matrix. On return `d` holds the eigenvalues.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64], z0: &mut [f64]) {
    let n = d.len();
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let scale = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * scale {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            assert!(iterations < 100, "QL iteration did not converge");
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut deflated = false;
            let mut i = m;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                let f = z0[i + 1];
                z0[i + 1] = s * z0[i] + c * f;
                z0[i] = c * z0[i] - s * f;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
}

/// The standard normal quantile Φ⁻¹(u) for u in (0, 1).
pub fn normal_quantile(u: f64) -> f64 {
    -std::f64::consts::SQRT_2 * statrs::function::erf::erfc_inv(2.0 * u)
}

/// A root of the increasing-or-decreasing function `f` in `[lo, hi]` by the Illinois variant of
/// regula falsi, which keeps a bracket (so it cannot diverge) but converges superlinearly.
/// When `f` does not change sign, the end point with the smaller |f| is returned.
pub fn bracketed_root(mut f: impl FnMut(f64) -> f64, mut lo: f64, mut hi: f64, tol: f64) -> f64 {
    let mut f_lo = f(lo);
    let mut f_hi = f(hi);
    if f_lo == 0.0 {
        return lo;
    }
    if f_hi == 0.0 {
        return hi;
    }
    if f_lo.signum() == f_hi.signum() {
        return if f_lo.abs() < f_hi.abs() { lo } else { hi };
    }
    let mut side = 0i8;
    for _ in 0..200 {
        let x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo);
        let fx = f(x);
        if fx == 0.0 || (hi - lo).abs() < tol {
            return x;
        }
        if fx.signum() == f_hi.signum() {
            hi = x;
            f_hi = fx;
            if side == 1 {
                f_lo /= 2.0;
            }
            side = 1;
        } else {
            lo = x;
            f_lo = fx;
            if side == -1 {
                f_hi /= 2.0;
            }
            side = -1;
        }
        if (hi - lo).abs() < tol {
            break;
        }
    }
    (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logistic::sigmoid;

    #[test]
    fn three_point_rule_is_the_textbook_one() {
        // Probabilists' Hermite: nodes 0, ±√3 with weights 2/3, 1/6.
        let (x, w) = gauss_hermite(3);
        assert!((x[0] + 3f64.sqrt()).abs() < 1e-14);
        assert!(x[1].abs() < 1e-14);
        assert!((w[1] - 2.0 / 3.0).abs() < 1e-14);
        assert!((w[0] - 1.0 / 6.0).abs() < 1e-14);
    }

    #[test]
    fn rule_integrates_normal_moments() {
        let (x, w) = gauss_hermite(24);
        let moment = |k: i32| x.iter().zip(&w).map(|(x, w)| w * x.powi(k)).sum::<f64>();
        assert!((moment(0) - 1.0).abs() < 1e-13);
        assert!(moment(1).abs() < 1e-13);
        assert!((moment(2) - 1.0).abs() < 1e-12);
        assert!((moment(4) - 3.0).abs() < 1e-11);
        assert!((moment(8) - 105.0).abs() < 1e-8);
        // E[σ(X)] = 1/2 by symmetry; E[σ(2 + X)] checked against a fine Riemann sum.
        let quad: f64 = x.iter().zip(&w).map(|(x, w)| w * sigmoid(2.0 + x)).sum();
        let h = 1e-3;
        let riemann: f64 = (-10_000..10_000)
            .map(|i| {
                let t = (i as f64 + 0.5) * h;
                sigmoid(2.0 + t) * (-t * t / 2.0).exp() * h
            })
            .sum::<f64>()
            / (2.0 * std::f64::consts::PI).sqrt();
        assert!((quad - riemann).abs() < 1e-9, "{quad} vs {riemann}");
    }

    #[test]
    fn quantile_inverts_the_cdf() {
        assert!(normal_quantile(0.5).abs() < 1e-15);
        assert!((normal_quantile(0.975) - 1.959963984540054).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090232306167813).abs() < 1e-10);
    }

    #[test]
    fn root_finder_solves_monotone_equations() {
        let r = bracketed_root(|x| x * x * x - 2.0, 0.0, 5.0, 1e-12);
        assert!((r - 2f64.cbrt()).abs() < 1e-10);
        let r = bracketed_root(|x| 1.0 - sigmoid(x) - 0.2, -10.0, 10.0, 1e-12);
        assert!((sigmoid(r) - 0.8).abs() < 1e-10);
        // No sign change: the closer end point.
        assert_eq!(bracketed_root(|x| x + 10.0, 0.0, 1.0, 1e-9), 0.0);
    }
}
