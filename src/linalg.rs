//! Small dense linear algebra for the few places that need it: the least-squares fits of the
//! experiments' statistics and the damped Hessian solves of the influence scores. The systems are
//! at most a few hundred unknowns, so plain Gaussian elimination in f64 is enough.

/// Solves the k × k system a·x = b (row-major, overwritten) by Gaussian elimination with
/// partial pivoting.
pub fn solve(a: &mut [f64], b: &mut [f64], k: usize) -> Vec<f64> {
    for p in 0..k {
        let pivot = (p..k)
            .max_by(|&i, &j| a[i * k + p].abs().total_cmp(&a[j * k + p].abs()))
            .expect("non-empty");
        if pivot != p {
            for c in 0..k {
                a.swap(p * k + c, pivot * k + c);
            }
            b.swap(p, pivot);
        }
        let d = a[p * k + p];
        for r in p + 1..k {
            let f = a[r * k + p] / d;
            for c in p..k {
                a[r * k + c] -= f * a[p * k + c];
            }
            b[r] -= f * b[p];
        }
    }
    let mut x = vec![0.0; k];
    for p in (0..k).rev() {
        let s: f64 = (p + 1..k).map(|c| a[p * k + c] * x[c]).sum();
        x[p] = (b[p] - s) / a[p * k + p];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_recovers_a_known_solution_with_pivoting() {
        // The zero in the top-left corner forces a row swap.
        let mut a = vec![0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 3.0];
        let x = [1.0, -2.0, 0.5];
        let mut b: Vec<f64> = (0..3)
            .map(|r| (0..3).map(|c| a[r * 3 + c] * x[c]).sum())
            .collect();
        let got = solve(&mut a, &mut b, 3);
        for (g, w) in got.iter().zip(x) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }
}
