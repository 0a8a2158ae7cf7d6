//! exp of f32 arguments, rounded to f32, bit-identical to `f32::exp` (glibc's `expf`, what
//! `burn-ndarray`'s `float_exp` computes), four or eight arguments per instruction.
//!
//! glibc's `expf` evaluates exp in f64 with a relative error below 1.69·2⁻³⁴ ≈ 9.9e-11 before
//! its final rounding to f32 (the bound stated in its source). This module evaluates exp(a) in
//! f64 to about 1e-15 (a reduction by ln 2 and a degree-11 Taylor polynomial) and keeps the f32
//! rounding where the check of [`super::checked`] with a margin of 2e-10 passes: then every value
//! within the margin, glibc's unrounded result included, rounds to that f32, so it is glibc's
//! result. About one argument in 300 is refused (a near-midpoint value), as is every result that
//! is not a normal f32 and every argument outside [−87, 88]; those go to `f32::exp` itself.
//!
//! The argument rests on glibc's error bound, so the fast path runs on glibc targets only;
//! elsewhere every argument goes to `f32::exp`. It was checked exhaustively on this project's
//! machine (`tests::agrees_with_f32_exp_on_every_f32`, ignored: about 80 s on two cores),
//! through the portable, the AVX2+FMA and the AVX-512 build. As in [`super::erf`], the polynomial
//! is split into its even and odd powers; the AVX2 build works sixteen arguments at a time, the
//! AVX-512 build thirty-two.

use super::checked::{self, FitBuild};
#[cfg(target_arch = "x86_64")]
use super::lanes::{self, Avx2, Avx512, Lanes, VECTORS};
use crate::logistic::INV_FACTORIAL;

/// Arguments outside this range go to `f32::exp` (its results there are 0, subnormal, or
/// overflow to infinity, or lie next to those regions).
const LOW: f64 = -87.0;
const HIGH: f64 = 88.0;

/// log₂ e, and ln 2 split so that k·LN2_HI is exact for |k| < 2¹¹ (fdlibm's split).
const LOG2E: f64 = std::f64::consts::LOG2_E;
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// 1/j! for j = 0..=11 (the first twelve of the table): the Taylor polynomial of e^r on
/// |r| ≤ ln2/2, whose truncation error is below (ln2/2)¹²/12! ≈ 6e-15 relative.
const TAYLOR: &[f64] = INV_FACTORIAL.split_at(12).0;

/// Covers glibc's 9.9e-11 and this module's own error (measured below 1e-14 by
/// `tests::the_margin_bounds_the_error_with_room`), with room.
const REL_MARGIN: f64 = 2e-10;

/// 2⁵²: adding it to a small integer-valued f64 puts the integer in the low mantissa bits.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// exp(a) in f64 for a in [LOW, HIGH] (clamped outside, where the caller does not use it).
/// `FMA` fuses each polynomial step; the two forms round differently, and both are checked.
#[inline(always)]
fn approx_with<const FMA: bool>(a: f64) -> f64 {
    let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = a.clamp(LOW, HIGH);
    let k = (a * LOG2E).round_ties_even();
    let r = (a - k * LN2_HI) - k * LN2_LO;
    let v = r * r;
    let mut even = TAYLOR[10];
    let mut odd = TAYLOR[11];
    for j in (0..5).rev() {
        even = fma(even, v, TAYLOR[2 * j]);
        odd = fma(odd, v, TAYLOR[2 * j + 1]);
    }
    // 2^k from its exponent bits: k + 1023 sits in the low bits of k + 1023 + 2⁵², and shifting
    // it by 52 moves it into the exponent field (|k| ≤ 127 here, so 2^k is a normal f64).
    let scale = f64::from_bits((k + (1023.0 + TWO_52)).to_bits() << 52);
    fma(odd, r, even) * scale
}

/// `y` (exp at `a`) rounded to f32, and whether that is safely glibc's result: the check passes
/// and a is in range.
#[inline(always)]
fn round_checked(a: f32, y: f64) -> (f32, bool) {
    let (v, ok) = checked::round_checked(y, REL_MARGIN);
    (v, ok & (LOW..=HIGH).contains(&(a as f64)))
}

/// The approximation and its check, one argument at a time.
#[inline(always)]
fn block_scalar<const FMA: bool>(xs: &[f32], out: &mut [f32]) -> u64 {
    checked::block_scalar(xs, out, |x| round_checked(x, approx_with::<FMA>(x as f64)))
}

/// Which build of the block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// Every argument to `f32::exp` (a C library whose `expf` error this module does not know).
    Libm,
    /// The approximation, through a build of its block.
    Fit(FitBuild),
}

impl Build {
    /// The builds of the approximation this CPU runs, slowest first (none of them is used off
    /// glibc, see [`Build::detect`]).
    #[cfg(test)]
    fn approximations() -> Vec<Self> {
        FitBuild::available().into_iter().map(Build::Fit).collect()
    }

    fn detect() -> Self {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return Build::Libm;
        }
        Build::Fit(FitBuild::fastest())
    }

    /// `out[i]` = the rounded approximation at `xs[i]` for a block of at most
    /// [`checked::BLOCK`] arguments; returns the mask of those that must go to `f32::exp`.
    fn block(self, xs: &[f32], out: &mut [f32]) -> u64 {
        match self {
            Build::Libm => u64::MAX.checked_shr(64 - xs.len() as u32).unwrap_or(0),
            Build::Fit(FitBuild::Portable) => block_scalar::<false>(xs, out),
            // SAFETY: `detect` (or a test that checked the same features) chose this build.
            #[cfg(target_arch = "x86_64")]
            Build::Fit(FitBuild::Avx2Fma) => unsafe {
                lanes::with_avx2(|| block_lanes::<Avx2>(xs, out))
            },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Build::Fit(FitBuild::Avx512) => unsafe {
                lanes::with_avx512(|| block_lanes::<Avx512>(xs, out))
            },
        }
    }
}

/// [`block_scalar::<true>`] on vectors of `V`: each lane performs [`approx_with::<true>`]'s
/// operations in its order, so the results are the same bits
/// (`tests::the_vector_blocks_are_the_scalar_approximation_lane_by_lane`).
///
/// # Safety
/// Only from a function compiled with `V`'s target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_lanes<V: Lanes>(xs: &[f32], out: &mut [f32]) -> u64 {
    let approx = |xs: [V; VECTORS]| {
        // SAFETY: the caller's contract.
        unsafe {
            let c = |v: f64| V::splat(v);
            let a = xs.map(|x| x.clamp(LOW, HIGH));
            let k = a.map(|a| a.mul(c(LOG2E)).round_ties_even());
            let r: [V; VECTORS] =
                std::array::from_fn(|l| a[l].sub(k[l].mul(c(LN2_HI))).sub(k[l].mul(c(LN2_LO))));
            let v = r.map(|r| r.mul(r));
            let mut even = [c(TAYLOR[10]); VECTORS];
            let mut odd = [c(TAYLOR[11]); VECTORS];
            for j in (0..5).rev() {
                for l in 0..VECTORS {
                    even[l] = even[l].mul_add(v[l], c(TAYLOR[2 * j]));
                    odd[l] = odd[l].mul_add(v[l], c(TAYLOR[2 * j + 1]));
                }
            }
            std::array::from_fn(|l| {
                let scale = k[l].add(c(1023.0 + TWO_52)).shift_into_exponent();
                odd[l].mul_add(r[l], even[l]).mul(scale)
            })
        }
    };
    // SAFETY: the caller's contract.
    unsafe {
        lanes::map_block::<V>(
            xs,
            out,
            REL_MARGIN,
            approx,
            |x| V::within(x, LOW as f32, HIGH as f32),
            block_scalar::<true>,
        )
    }
}

/// `out[i] = xs[i].exp()`, bit for bit (see the module docs); the slices have equal lengths.
pub fn exp_f32_slice(xs: &[f32], out: &mut [f32]) {
    static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();
    exp_f32_slice_with(*BUILD.get_or_init(Build::detect), xs, out);
}

fn exp_f32_slice_with(build: Build, xs: &[f32], out: &mut [f32]) {
    checked::map_checked(xs, out, |xs, out| build.block(xs, out), f32::exp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn builds() -> Vec<Build> {
        let mut b = vec![Build::Libm];
        b.extend(Build::approximations());
        b
    }

    /// Arguments where a build differs from `f32::exp`, arguments in (−80, 80) the portable
    /// build refused, and arguments checked.
    type Sweep = (Vec<(Build, u32)>, usize, usize);

    /// Every `stride`-th f32 bit pattern (all signs, NaN and infinities included) through every
    /// build: the patterns where a result differs from `f32::exp`, how many the fast builds
    /// refused, and how many were checked.
    fn sweep(stride: u64) -> Sweep {
        let starts: Vec<u64> = (0..1u64 << 32).step_by(stride as usize * 8192).collect();
        let parts: Vec<Sweep> = starts
            .par_iter()
            .map(|&start| {
                let xs: Vec<f32> = (0..8192u64)
                    .map(|i| start + i * stride)
                    .filter(|&b| b < 1 << 32)
                    .map(|b| f32::from_bits(b as u32))
                    .collect();
                let want: Vec<u32> = xs.iter().map(|x| x.exp().to_bits()).collect();
                let mut out = vec![0f32; xs.len()];
                let mut bad = Vec::new();
                for build in builds() {
                    exp_f32_slice_with(build, &xs, &mut out);
                    for ((&x, o), &w) in xs.iter().zip(&out).zip(&want) {
                        // NaN payloads aside, NaN in gives NaN out.
                        if o.to_bits() != w && !(o.is_nan() && x.is_nan()) {
                            bad.push((build, x.to_bits()));
                        }
                    }
                }
                let in_range = xs
                    .iter()
                    .filter(|&&x| {
                        let (_, ok) = round_checked(x, approx_with::<false>(x as f64));
                        !ok && (-80.0..80.0).contains(&x)
                    })
                    .count();
                (bad, in_range, xs.len())
            })
            .collect();
        let refused = parts.iter().map(|p| p.1).sum();
        let checked = parts.iter().map(|p| p.2).sum();
        (
            parts.into_iter().flat_map(|p| p.0).collect(),
            refused,
            checked,
        )
    }

    #[test]
    fn agrees_with_f32_exp_on_a_strided_sample() {
        // Every 1,999th bit pattern: about 2.1 million arguments of every kind.
        let (bad, _, checked) = sweep(1_999);
        assert!(checked > 2_000_000, "{checked}");
        assert!(bad.is_empty(), "differs at {:?}", &bad[..bad.len().min(8)]);
    }

    #[test]
    #[ignore = "exhaustive: every f32 bit pattern through four builds, about 80 s on two cores"]
    fn agrees_with_f32_exp_on_every_f32() {
        let (bad, refused, checked) = sweep(1);
        eprintln!("{checked} arguments; {refused} in (−80, 80) refused by the portable build");
        assert!(bad.is_empty(), "differs at {:?}", &bad[..bad.len().min(8)]);
    }

    #[test]
    fn the_margin_bounds_the_error_with_room() {
        // exp in f64 from libm (within an ulp) against both roundings, over the fast range.
        let mut worst = 0.0f64;
        let mut a = LOW;
        while a <= HIGH {
            let exact = libm::exp(a);
            for y in [approx_with::<false>(a), approx_with::<true>(a)] {
                worst = worst.max((y - exact).abs() / exact);
            }
            a += 0.000_73;
        }
        assert!(worst > 0.0 && worst < 1e-14, "worst {worst:e}");
        assert!(worst * 1e4 < REL_MARGIN);
    }

    #[test]
    fn most_arguments_take_the_fast_path() {
        // Refusals inside (−80, 80) should be the rare near-midpoint values (about 2 × 2e-10 ×
        // 2²⁴ ≈ 0.7% at most); many more would mean a broken approximation.
        let (_, refused, checked) = sweep(7_919);
        assert!(refused * 50 < checked, "{refused} of {checked} refused");
    }

    #[test]
    fn the_vector_blocks_are_the_scalar_approximation_lane_by_lane() {
        let vector_builds: Vec<Build> = Build::approximations()
            .into_iter()
            .filter(|&b| b != Build::Fit(FitBuild::Portable))
            .collect();
        if vector_builds.is_empty() {
            eprintln!("no AVX2+FMA on this CPU: nothing to compare");
            return;
        }
        let xs = checked::lane_arguments(0.03);
        for build in vector_builds {
            checked::assert_lanes_match_scalar(
                &xs,
                |xs, out| build.block(xs, out),
                block_scalar::<true>,
                &format!("{build:?}"),
            );
        }
    }
}
