//! e_j = exp(−|z_j|) for every step of a rollout, four steps per AVX2 instruction: the
//! f32-sum engine's exponentials.
//!
//! The f64 engine calls the C library's `exp` once per step; with the division and the branch
//! of σ(z) that was about a tenth of the f32-sum engine's time. Here exp is a fixed sequence
//! of IEEE operations (multiplies, fused multiply-adds, one subtraction, and exact integer work
//! on the exponent bits), so the portable build, one step at a time, and the AVX2 build, four
//! at a time, give the same bits. They are not the C library's bits: the tests hold the result
//! within 2 ulp of it.
//!
//! The method (Cody and Waite's reduction, then a polynomial):
//! - n = round(x log₂e), by adding 1.5·2⁵² so that the rounding leaves n in the low bits;
//! - r = x − n ln 2, with ln 2 split into a head and a tail, each subtracted by one fused
//!   multiply-add, so |r| ≤ ln 2 / 2 to within a few ulp;
//! - e^r by its Taylor polynomial of degree 13 in Horner form (the first term left out is
//!   below 5·10⁻¹⁸ of the result);
//! - 2ⁿ as two powers of two of about n/2 each, so that results down to the subnormals are
//!   scaled without building an exponent field out of range.

use crate::logistic::INV_FACTORIAL;

/// The inputs are clamped from below here: exp(−746) is below half the smallest subnormal, so
/// every x below it gives 0, as the clamped value does.
const MIN_X: f64 = -746.0;
/// 1.5·2⁵²: x log₂e + SHIFTER rounds x log₂e to an integer held in the low mantissa bits.
const SHIFTER: f64 = 6_755_399_441_055_744.0;
/// ln 2 as the nearest double and the rest.
const LN2_HI: f64 = std::f64::consts::LN_2;
const LN2_LO: f64 = 2.319_046_813_846_299_6e-17;
/// 1/k! for k = 0..=13.
const TAYLOR: [f64; 14] = INV_FACTORIAL;

/// exp(x) for x ≤ 0 (or NaN, which stays NaN), one value: the portable twin of [`exp4_avx2`].
#[inline(always)]
pub(super) fn exp_nonpositive(x: f64) -> f64 {
    // `MIN_X > x`, not `x.max(MIN_X)`: a NaN passes through, as it does in `_mm256_max_pd`.
    let x = if MIN_X > x { MIN_X } else { x };
    let t = x.mul_add(std::f64::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = TAYLOR[13];
    for &c in TAYLOR[..13].iter().rev() {
        p = p.mul_add(r, c);
    }
    // t = SHIFTER + n exactly (both in [2⁵², 2⁵³), one unit apart per step of n), so the
    // difference of the bit patterns is −n ≥ 0. Wrapping: a NaN's bits give garbage, and the
    // product stays NaN whatever the scale.
    let m = SHIFTER.to_bits().wrapping_sub(t.to_bits());
    let m1 = m >> 1;
    let m2 = m.wrapping_sub(m1);
    (p * pow2_neg(m1)) * pow2_neg(m2)
}

/// 2^(−m) for 0 ≤ m ≤ 1022, from its bits.
#[inline(always)]
fn pow2_neg(m: u64) -> f64 {
    f64::from_bits(1023u64.wrapping_sub(m) << 52)
}

/// `out` ← exp(−|dot_j + b|) for every j, one step at a time ([`exp_nonpositive`]).
#[inline(always)]
pub(super) fn exps_portable(dots: &[f64], b: f64, out: &mut Vec<f64>) {
    out.clear();
    out.extend(dots.iter().map(|&dot| exp_nonpositive(-(dot + b).abs())));
}

/// [`exps_portable`] four steps at a time, with the same bits; the steps after the last four
/// one at a time.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exps_avx2(dots: &[f64], b: f64, out: &mut Vec<f64>) {
    use std::arch::x86_64::*;
    out.clear();
    out.reserve(dots.len());
    let mut quads = dots.chunks_exact(4);
    for quad in &mut quads {
        let mut e = [0.0f64; 4];
        // SAFETY: AVX2 and FMA are enabled for this function; `quad` holds four values and `e`
        // room for four.
        unsafe {
            let z = _mm256_add_pd(_mm256_loadu_pd(quad.as_ptr()), _mm256_set1_pd(b));
            // −|z|: the sign bit set, as `-(z.abs())` sets it.
            let x = _mm256_or_pd(z, _mm256_set1_pd(-0.0));
            _mm256_storeu_pd(e.as_mut_ptr(), exp4_avx2(x));
        }
        out.extend(e);
    }
    out.extend(
        quads
            .remainder()
            .iter()
            .map(|&dot| exp_nonpositive(-(dot + b).abs())),
    );
}

/// [`exp_nonpositive`] of four values, the same operations in the same order.
///
/// # Safety
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp4_avx2(x: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX2 and FMA.
    unsafe {
        let splat = _mm256_set1_pd;
        // max(MIN_X, x) returns its second operand, x, when either is NaN.
        let x = _mm256_max_pd(splat(MIN_X), x);
        let t = _mm256_fmadd_pd(x, splat(std::f64::consts::LOG2_E), splat(SHIFTER));
        let n = _mm256_sub_pd(t, splat(SHIFTER));
        // fnmadd(a, b, c) = −(a b) + c with one rounding, as fma(−a, b, c).
        let r = _mm256_fnmadd_pd(n, splat(LN2_HI), x);
        let r = _mm256_fnmadd_pd(n, splat(LN2_LO), r);
        let mut p = splat(TAYLOR[13]);
        for &c in TAYLOR[..13].iter().rev() {
            p = _mm256_fmadd_pd(p, r, splat(c));
        }
        let m = _mm256_sub_epi64(
            _mm256_set1_epi64x(SHIFTER.to_bits() as i64),
            _mm256_castpd_si256(t),
        );
        let m1 = _mm256_srli_epi64::<1>(m);
        let m2 = _mm256_sub_epi64(m, m1);
        let bias = _mm256_set1_epi64x(1023);
        let s1 = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_sub_epi64(bias, m1)));
        let s2 = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_sub_epi64(bias, m2)));
        _mm256_mul_pd(_mm256_mul_pd(p, s1), s2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two non-negative finite doubles.
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    /// Inputs over the whole range: a dense grid near 0, a geometric sweep out to the clamp,
    /// the subnormal results, and the edges.
    fn inputs() -> Vec<f64> {
        let mut xs = vec![
            0.0,
            -0.0,
            -1e-300,
            -f64::MIN_POSITIVE,
            -1e-17,
            -0.5,
            -std::f64::consts::LN_2 / 2.0,
        ];
        xs.extend((0..20_000).map(|i| -(i as f64) * 1e-3));
        let mut v = 1e-12;
        while v < 760.0 {
            xs.push(-v);
            v *= 1.000_37;
        }
        xs.extend((0..4_000).map(|i| -700.0 - i as f64 * 0.0125));
        xs.extend([
            -745.0,
            -745.13,
            -745.14,
            -745.2,
            -746.0,
            -800.0,
            -1e300,
            f64::NEG_INFINITY,
        ]);
        xs
    }

    #[test]
    fn within_two_ulp_of_the_c_library_for_normal_results() {
        for x in inputs() {
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            if libm >= f64::MIN_POSITIVE {
                let d = ulps(ours, libm);
                assert!(d <= 2, "exp({x:e}): {ours:e} against {libm:e}, {d} ulp");
            } else {
                // Subnormal or zero: the absolute error stays within two of the smallest steps.
                assert!(
                    (ours - libm).abs() <= 2.0 * f64::from_bits(1),
                    "exp({x:e}): {ours:e} against {libm:e}"
                );
            }
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
    }

    #[test]
    fn one_wrong_coefficient_breaks_the_bound() {
        // A negative control for the test above: with the polynomial cut at degree 10 the
        // error near r = ±ln 2 / 2 exceeds 2 ulp, so that bound can fail.
        let x: f64 = -0.346_5;
        let t = x.mul_add(std::f64::consts::LOG2_E, SHIFTER);
        let n = t - SHIFTER;
        let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
        let mut p = 0.0f64;
        for &c in TAYLOR[..11].iter().rev() {
            p = p.mul_add(r, c);
        }
        assert!(ulps(p, x.exp()) > 2, "{p:e} against {:e}", x.exp());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn four_at_a_time_gives_the_same_bits() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let mut dots = inputs();
        dots.extend([f64::NAN, f64::INFINITY, 3.5, 1e-310, 745.5]);
        for b in [0.0, -0.75, 2.5] {
            // Every remainder (0 to 3 steps after the last four) occurs.
            for len in [
                dots.len(),
                dots.len() - 1,
                dots.len() - 2,
                dots.len() - 3,
                5,
                1,
                0,
            ] {
                let (mut one, mut four) = (Vec::new(), Vec::new());
                exps_portable(&dots[..len], b, &mut one);
                // SAFETY: AVX2 and FMA are present, checked above.
                unsafe { exps_avx2(&dots[..len], b, &mut four) };
                assert_eq!(one.len(), four.len());
                for (j, (a, c)) in one.iter().zip(&four).enumerate() {
                    assert!(
                        a.to_bits() == c.to_bits() || (a.is_nan() && c.is_nan()),
                        "step {j}, b = {b}: {a:e} against {c:e}"
                    );
                }
            }
        }
    }
}
