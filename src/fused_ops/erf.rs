//! erf of f32 arguments, rounded to f32, bit-identical to `libm::erf(t as f64) as f32` (what
//! `burn-ndarray`'s `float_erf` computes) and several times faster.
//!
//! libm's f64 erf is branchy scalar code and was a third of the MLP head's training step. For
//! |t| ≤ 2.5 this module evaluates a degree-16 polynomial fit of erf(t)/t in t² (relative error
//! about 5e-14), rounds it to f32, and keeps the result where the rounding check of
//! [`super::checked`] with a margin of 2e-13 says it is libm's. The rest (near-midpoint values,
//! tiny results, and every |t| > 2.5) goes to libm. So the result is libm's bit for bit by
//! construction. The f32 domain is finite, so this was also checked exhaustively
//! (`tests::agrees_with_libm_on_every_f32_below_the_cut`, ignored: about a minute on two cores):
//! all 2,151,677,952 arguments with 0 < |t| ≤ 2.5 agree, through the portable, the AVX2+FMA and
//! the AVX-512 build of the fit (the first two round differently; the AVX-512 build repeats the
//! AVX2 one's operations on eight lanes). A test keeps arguments where the bare fit, rounded
//! without the check, misses.
//!
//! The polynomial is evaluated by Estrin's split into its even and odd powers (two independent
//! chains of multiply-adds in u², joined by one more), and the AVX2 build works sixteen arguments
//! at a time: eight independent chains, enough to keep both multiply-add units busy through each
//! step's latency. A single Horner chain, which the compiler laid out one lane after another,
//! ran at half the speed. On AVX-512F CPUs a build with eight lanes per vector does the same
//! operations per lane, thirty-two arguments at a time.

use super::checked::{self, FitBuild as Build};
#[cfg(target_arch = "x86_64")]
use super::lanes::{self, Avx2, Avx512, Lanes, VECTORS};

/// Arguments above this magnitude go to libm (erf(2.5) = 1 − 4.1e-4; GELU pre-activations past
/// 2.5·√2 ≈ 3.5 are rare).
const CUT: f64 = 2.5;

/// Chebyshev coefficients of erf(t)/t in u = 2t²/CUT² − 1 on [−1, 1], fitted at 6,000 Chebyshev
/// nodes to Python's `math.erf` (relative error 1.6e-15 with all nineteen). The fit evaluates the
/// first seventeen as [`POWERS`]; the last two (2.1e-14 and 1.8e-15) are what it leaves out.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the fit's source: tests derive POWERS from it")
)]
const CHEB: [f64; 19] = [
    0.654_110_388_282_194_5,
    -0.333_659_389_843_906_75,
    0.102_403_463_191_547_25,
    -0.028_937_016_163_782_112,
    0.007_264_493_178_116_533,
    -0.001_616_106_365_291_972_2,
    0.000_320_454_948_349_604_8,
    -5.708_351_684_310_697e-5,
    9.207_767_183_625_914e-6,
    -1.354_913_277_155_041_9e-6,
    1.830_971_487_532_791_3e-7,
    -2.285_859_533_500_565_6e-8,
    2.650_404_215_381_889e-9,
    -2.867_550_951_173_645_4e-10,
    2.907_144_444_856_213e-11,
    -2.772_059_992_268_595e-12,
    2.494_464_758_681_983e-13,
    -2.116_573_192_811_497_6e-14,
    1.751_311_280_012_578e-15,
];

/// Σ_{k ≤ 16} CHEB[k]·T_k(u) rewritten in powers of u, lowest first: summed exactly in rational
/// arithmetic, then rounded to f64 (`tests::the_powers_are_the_chebyshev_fit_rewritten`). A sum
/// of powers takes one multiply-add per power where Clenshaw's recurrence takes two per term, and
/// the powers are well conditioned here (Σ |a_j| = 1.13).
const POWERS: [f64; 17] = [
    0.558_659_990_612_031_2,
    -0.254_541_235_022_299_6,
    0.152_173_488_323_985_67,
    -0.086_464_950_763_717_06,
    0.044_136_293_220_058_22,
    -0.020_022_326_969_939_976,
    0.008_093_207_846_127_218,
    -0.002_934_501_707_239_043_3,
    0.000_961_789_075_848_143_4,
    -0.000_287_064_446_247_612,
    7.856_281_304_664_583e-5,
    -1.984_539_084_573_091e-5,
    4.647_621_481_661_055e-6,
    -1.004_233_503_675_742_7e-6,
    2.054_578_244_376_244_8e-7,
    -4.541_743_091_332_866e-8,
    8.173_862_121_249_122e-9,
];

/// A bound on |fit − erf| / |erf| on the fitted range, with room: the fit measures 5e-14
/// (`tests::the_margin_bounds_the_fit_error_with_room`), and libm's own error (one f64 ulp,
/// 1.1e-16 relative) is inside the margin.
const REL_MARGIN: f64 = 2e-13;

/// 2/CUT²: u = t²·U_SCALE − 1 maps t² ∈ [0, CUT²] onto [−1, 1]. (The multiply rounds u
/// differently from a division by CUT²/2; the fit does not care, and the check covers it.)
const U_SCALE: f64 = 2.0 / (CUT * CUT);

/// The fit at |t| ≤ CUT (clamped outside, where the caller does not use it), by Estrin's split:
/// p(u) = E(u²) + u·O(u²). `FMA` fuses each step; the two forms round differently, and both are
/// checked.
#[inline(always)]
fn fit_with<const FMA: bool>(t: f64) -> f64 {
    let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let t = t.clamp(-CUT, CUT);
    let u = fma(t * t, U_SCALE, -1.0);
    let v = u * u;
    let mut even = POWERS[16];
    let mut odd = POWERS[15];
    for j in (0..8).rev() {
        even = fma(even, v, POWERS[2 * j]);
        if j < 7 {
            odd = fma(odd, v, POWERS[2 * j + 1]);
        }
    }
    t * fma(odd, u, even)
}

/// The portable fit.
fn fit(t: f64) -> f64 {
    fit_with::<false>(t)
}

/// `approx` (the fit at t) rounded to f32, and whether that is safely libm's result: the check
/// of [`super::checked`] passes and t is inside the fit's range.
#[inline(always)]
fn round_checked(t: f32, approx: f64) -> (f32, bool) {
    let (r, ok) = checked::round_checked(approx, REL_MARGIN);
    (r, ok & ((t as f64).abs() <= CUT))
}

impl Build {
    /// `out[i]` = the rounded fit at `ts[i]` for a block of at most [`checked::BLOCK`]
    /// arguments; returns the mask of those that must go to libm.
    fn fit_block(self, ts: &[f32], out: &mut [f32]) -> u64 {
        match self {
            Build::Portable => fit_block_scalar::<false>(ts, out),
            // SAFETY: `fastest` (or a test that checked the same features) chose this build.
            #[cfg(target_arch = "x86_64")]
            Build::Avx2Fma => unsafe { lanes::with_avx2(|| fit_block_lanes::<Avx2>(ts, out)) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Build::Avx512 => unsafe { lanes::with_avx512(|| fit_block_lanes::<Avx512>(ts, out)) },
        }
    }
}

/// The fit and its check, one argument at a time.
#[inline(always)]
fn fit_block_scalar<const FMA: bool>(ts: &[f32], out: &mut [f32]) -> u64 {
    checked::block_scalar(ts, out, |t| round_checked(t, fit_with::<FMA>(t as f64)))
}

/// [`fit_block_scalar::<true>`] on vectors of `V`: each lane performs
/// [`fit_with::<true>`]'s operations in its order, so the results are the same bits
/// (`tests::the_vector_blocks_are_the_scalar_fit_lane_by_lane`).
///
/// # Safety
/// Only from a function compiled with `V`'s target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fit_block_lanes<V: Lanes>(ts: &[f32], out: &mut [f32]) -> u64 {
    let fit = |ts: [V; VECTORS]| {
        // SAFETY: the caller's contract.
        unsafe {
            let c = |v: f64| V::splat(v);
            let t = ts.map(|t| t.clamp(-CUT, CUT));
            let u = t.map(|t| t.mul(t).mul_add(c(U_SCALE), c(-1.0)));
            let v = u.map(|u| u.mul(u));
            let mut even = [c(POWERS[16]); VECTORS];
            let mut odd = [c(POWERS[15]); VECTORS];
            for j in (0..8).rev() {
                for l in 0..VECTORS {
                    even[l] = even[l].mul_add(v[l], c(POWERS[2 * j]));
                    if j < 7 {
                        odd[l] = odd[l].mul_add(v[l], c(POWERS[2 * j + 1]));
                    }
                }
            }
            std::array::from_fn(|l| t[l].mul(odd[l].mul_add(u[l], even[l])))
        }
    };
    // SAFETY: the caller's contract.
    unsafe {
        lanes::map_block::<V>(
            ts,
            out,
            REL_MARGIN,
            fit,
            |t| V::abs_at_most(t, CUT as f32),
            fit_block_scalar::<true>,
        )
    }
}

/// The fit at t rounded to f32 when that is safely libm's result.
fn safely_rounded(t: f32) -> Option<f32> {
    let (r, ok) = round_checked(t, fit(t as f64));
    ok.then_some(r)
}

/// erf of one f32 argument (see the module docs).
pub fn erf_f32(t: f32) -> f32 {
    safely_rounded(t).unwrap_or_else(|| libm_erf(t))
}

fn libm_erf(t: f32) -> f32 {
    libm::erf(t as f64) as f32
}

/// `out[i] = erf(ts[i])` (see the module docs); the slices have equal lengths.
pub fn erf_f32_slice(ts: &[f32], out: &mut [f32]) {
    static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();
    erf_f32_slice_with(*BUILD.get_or_init(Build::fastest), ts, out);
}

fn erf_f32_slice_with(build: Build, ts: &[f32], out: &mut [f32]) {
    checked::map_checked(ts, out, |ts, out| build.fit_block(ts, out), libm_erf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn libm_f32(t: f32) -> f32 {
        libm::erf(t as f64) as f32
    }

    /// Every build this CPU runs.
    fn builds() -> Vec<Build> {
        Build::available()
    }

    /// Arguments where a build differs from libm, arguments sent to libm, arguments checked, and
    /// the arguments where the portable fit rounded without the check differs from libm.
    type Sweep = (Vec<(Build, f32)>, usize, usize, Vec<f32>);

    /// The positive f32 bit patterns up to the cut, every `stride`-th one, and their negatives,
    /// through every build; returns the arguments where a result differs from libm's, how many
    /// went to libm, and how many were checked.
    fn sweep(stride: u32) -> Sweep {
        let last = (CUT as f32).to_bits();
        let starts: Vec<u32> = (1..=last).step_by(stride as usize * 4096).collect();
        let per_block: Vec<Sweep> = starts
            .par_iter()
            .map(|&start| {
                let ts: Vec<f32> = (0..4096u32)
                    .map(|i| start.saturating_add(i.saturating_mul(stride)))
                    .filter(|&bits| bits <= last)
                    .flat_map(|bits| [f32::from_bits(bits), -f32::from_bits(bits)])
                    .collect();
                let want: Vec<u32> = ts.iter().map(|&t| libm_f32(t).to_bits()).collect();
                let mut bad = Vec::new();
                let mut out = vec![0f32; ts.len()];
                for build in builds() {
                    erf_f32_slice_with(build, &ts, &mut out);
                    for ((&t, o), &w) in ts.iter().zip(&out).zip(&want) {
                        if o.to_bits() != w {
                            bad.push((build, t));
                        }
                    }
                }
                let fallback = ts.iter().filter(|&&t| safely_rounded(t).is_none()).count();
                let bare_misses = ts
                    .iter()
                    .zip(&want)
                    .filter(|&(&t, &w)| (fit(t as f64) as f32).to_bits() != w)
                    .map(|(&t, _)| t)
                    .collect();
                (bad, fallback, ts.len(), bare_misses)
            })
            .collect();
        let fallback = per_block.iter().map(|b| b.1).sum();
        let checked = per_block.iter().map(|b| b.2).sum();
        let bare_misses = per_block.iter().flat_map(|b| b.3.iter().copied()).collect();
        (
            per_block.into_iter().flat_map(|b| b.0).collect(),
            fallback,
            checked,
            bare_misses,
        )
    }

    #[test]
    fn agrees_with_libm_on_a_strided_sample_of_f32() {
        // Every 997th positive pattern below the cut, and its negative: about 2.2 million.
        let (bad, fallback, checked, _) = sweep(997);
        assert!(checked > 2_000_000, "{checked}");
        assert!(
            bad.is_empty(),
            "differs from libm at {:?}",
            &bad[..bad.len().min(8)]
        );
        // Only tiny arguments (results below f32::MIN_POSITIVE: 0.8% of the patterns below the
        // cut) and the rare near-midpoint values go to libm; more would mean a poor fit.
        assert!(
            fallback * 100 < checked,
            "{fallback} of {checked} went to libm"
        );
    }

    #[test]
    #[ignore = "exhaustive: every f32 with 0 < |t| <= 2.5, about 70 s on two cores"]
    fn agrees_with_libm_on_every_f32_below_the_cut() {
        let (bad, fallback, checked, bare_misses) = sweep(1);
        let normal: Vec<u32> = bare_misses
            .iter()
            .filter(|&&t| t > 0.0 && libm_f32(t).abs() >= f32::MIN_POSITIVE)
            .map(|t| t.to_bits())
            .collect();
        eprintln!(
            "{checked} arguments, {fallback} sent to libm; the bare fit misses {} of them, \
             {} positive ones with a normal result, as bits: {:?}",
            bare_misses.len(),
            normal.len(),
            &normal[..normal.len().min(16)]
        );
        assert!(
            bad.is_empty(),
            "differs from libm at {:?}",
            &bad[..bad.len().min(8)]
        );
    }

    #[test]
    fn the_powers_are_the_chebyshev_fit_rewritten() {
        // T_k's integer coefficients by T_k = 2u·T_{k−1} − T_{k−2}.
        let n = POWERS.len();
        let mut t: Vec<Vec<i64>> = vec![vec![0; n]; n];
        t[0][0] = 1;
        t[1][1] = 1;
        for k in 2..n {
            for j in 0..n {
                let up = if j > 0 { 2 * t[k - 1][j - 1] } else { 0 };
                t[k][j] = up - t[k - 2][j];
            }
        }
        for (j, &a) in POWERS.iter().enumerate() {
            let terms: Vec<f64> = (0..n).map(|k| CHEB[k] * t[k][j] as f64).collect();
            let sum: f64 = terms.iter().sum();
            let scale: f64 = terms.iter().map(|v| v.abs()).sum();
            assert!(
                (sum - a).abs() <= 4.0 * f64::EPSILON * scale,
                "power {j}: {a} against {sum}"
            );
        }
    }

    #[test]
    fn the_margin_bounds_the_fit_error_with_room() {
        // Every 9,973rd positive pattern below the cut (about 108,000), through both roundings.
        let last = (CUT as f32).to_bits();
        let mut worst = 0.0f64;
        for bits in (1..=last).step_by(9_973) {
            let t = f32::from_bits(bits) as f64;
            let exact = libm::erf(t);
            for approx in [fit_with::<false>(t), fit_with::<true>(t)] {
                worst = worst.max((approx - exact).abs() / exact);
            }
        }
        assert!(worst > 0.0 && worst * 4.0 < REL_MARGIN, "worst {worst:e}");
    }

    #[test]
    fn slices_agree_with_single_values_and_with_libm_outside_the_cut() {
        let ts: Vec<f32> = (-4000..4000)
            .map(|i| i as f32 * 1.37e-3)
            .chain([
                0.0, -0.0, 1e-40, -1e-40, 2.5, -2.5, 2.500_001, 3.9, 10.0, -1e30,
            ])
            .chain([f32::INFINITY, f32::NEG_INFINITY, f32::NAN])
            .collect();
        let mut out = vec![0f32; ts.len()];
        erf_f32_slice(&ts, &mut out);
        for (&t, &o) in ts.iter().zip(&out) {
            assert_eq!(o.to_bits(), erf_f32(t).to_bits(), "{t}");
            assert_eq!(o.to_bits(), libm_f32(t).to_bits(), "{t}");
        }
    }

    #[test]
    fn the_rounding_check_catches_arguments_the_bare_fit_gets_wrong() {
        // The exhaustive sweep finds 263 positive f32 arguments below the cut (and their
        // negatives) where the fit, rounded without the check, differs from libm: the true erf
        // lies next to an f32 rounding midpoint. 207 are two mantissas that recur in every
        // binade of tiny arguments, where erf(t) ≈ 2t/√π (the first two below); 56 others lie
        // between 7.3e-8 and 0.91 (three of them below). The check must send them, and their negatives,
        // to libm.
        for bits in [
            10_571_392u32,
            10_862_662,
            917_415_014,
            960_555_734,
            968_885_629,
        ] {
            for t in [f32::from_bits(bits), -f32::from_bits(bits)] {
                assert_ne!(
                    (fit(t as f64) as f32).to_bits(),
                    libm_f32(t).to_bits(),
                    "{t}"
                );
                assert!(safely_rounded(t).is_none(), "{t}");
                assert_eq!(erf_f32(t).to_bits(), libm_f32(t).to_bits(), "{t}");
                for build in builds() {
                    let mut out = [0f32];
                    erf_f32_slice_with(build, &[t], &mut out);
                    assert_eq!(out[0].to_bits(), libm_f32(t).to_bits(), "{build:?} {t}");
                }
            }
        }
    }

    #[test]
    fn the_vector_blocks_are_the_scalar_fit_lane_by_lane() {
        let vector_builds: Vec<Build> = builds()
            .into_iter()
            .filter(|&b| b != Build::Portable)
            .collect();
        if vector_builds.is_empty() {
            eprintln!("no AVX2+FMA on this CPU: nothing to compare");
            return;
        }
        let ts = checked::lane_arguments(1.1e-3);
        for build in vector_builds {
            checked::assert_lanes_match_scalar(
                &ts,
                |ts, out| build.fit_block(ts, out),
                fit_block_scalar::<true>,
                &format!("{build:?}"),
            );
        }
    }
}
