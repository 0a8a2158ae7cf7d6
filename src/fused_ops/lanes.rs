//! The vector widths of the erf and exp fits ([`super::erf`], [`super::expf`]): each block is
//! written once over [`Lanes`], and each width runs it inside a function that enables that
//! width's target features, where these methods inline to single instructions.
//!
//! Every method performs the scalar code's operation in the scalar code's order, so each lane
//! gets the scalar bits; the tests compare every width with the scalar fits lane by lane.

use std::arch::x86_64::*;

/// f64 lanes of one vector width, with the f32 vector of as many lanes that carries arguments,
/// results and check masks (all ones where a check passed).
///
/// # Safety
/// The methods run the width's intrinsics: call them only from code compiled with the width's
/// target features ([`Avx2`]: `avx2,fma`; [`Avx512`]: `avx512f,avx2,fma`).
pub(super) unsafe trait Lanes: Copy {
    /// The f32 vector with one value per lane.
    type F32: Copy;
    /// Lanes per vector.
    const LANES: usize;

    /// Every lane `v`.
    unsafe fn splat(v: f64) -> Self;
    /// `Self::LANES` arguments from `xs[at..]`, widened to f64, and as they are.
    unsafe fn load(xs: &[f32], at: usize) -> (Self, Self::F32);
    /// `min(max(self, low), high)` (a NaN lane becomes `low`: `max` returns its second operand).
    unsafe fn clamp(self, low: f64, high: f64) -> Self;
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn sub(self, other: Self) -> Self;
    unsafe fn mul(self, other: Self) -> Self;
    /// `self·b + c` with one rounding.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// Rounded to an integer, ties to even.
    unsafe fn round_ties_even(self) -> Self;
    /// The bits of each lane shifted left by 52 (an integer in the low mantissa bits becomes
    /// the exponent field).
    unsafe fn shift_into_exponent(self) -> Self;
    /// [`super::checked::round_checked`] in every lane: the values and the check mask.
    unsafe fn round_checked(self, rel_margin: f64) -> (Self::F32, Self::F32);
    /// The mask of lanes with `low ≤ x ≤ high` (ordered: false for NaN).
    unsafe fn within(x: Self::F32, low: f32, high: f32) -> Self::F32;
    /// The mask of lanes with `|x| ≤ bound` (false for NaN).
    unsafe fn abs_at_most(x: Self::F32, bound: f32) -> Self::F32;
    /// Both masks.
    unsafe fn and(a: Self::F32, b: Self::F32) -> Self::F32;
    /// Stores `value` at `out[at..at + Self::LANES]` and returns the lanes where `ok` is off as
    /// bits `at..` of a block mask.
    unsafe fn store(out: &mut [f32], at: usize, value: Self::F32, ok: Self::F32) -> u64;
}

/// Four f64 lanes (AVX2 + FMA).
#[derive(Clone, Copy)]
pub(super) struct Avx2(__m256d);

/// Eight f64 lanes (AVX-512F; the f32 side uses AVX).
#[derive(Clone, Copy)]
pub(super) struct Avx512(__m512d);

// SAFETY: every method runs AVX, AVX2 or FMA intrinsics only (the trait's contract).
unsafe impl Lanes for Avx2 {
    type F32 = __m128;
    const LANES: usize = 4;

    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        unsafe { Avx2(_mm256_set1_pd(v)) }
    }
    #[inline(always)]
    unsafe fn load(xs: &[f32], at: usize) -> (Self, __m128) {
        let xs = &xs[at..at + 4];
        // SAFETY: `xs` has exactly four values.
        unsafe {
            let x = _mm_loadu_ps(xs.as_ptr());
            (Avx2(_mm256_cvtps_pd(x)), x)
        }
    }
    #[inline(always)]
    unsafe fn clamp(self, low: f64, high: f64) -> Self {
        unsafe {
            let raised = _mm256_max_pd(self.0, _mm256_set1_pd(low));
            Avx2(_mm256_min_pd(raised, _mm256_set1_pd(high)))
        }
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_add_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_sub_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_mul_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { Avx2(_mm256_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn round_ties_even(self) -> Self {
        unsafe {
            Avx2(_mm256_round_pd::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(self.0))
        }
    }
    #[inline(always)]
    unsafe fn shift_into_exponent(self) -> Self {
        unsafe {
            let shifted = _mm256_slli_epi64::<52>(_mm256_castpd_si256(self.0));
            Avx2(_mm256_castsi256_pd(shifted))
        }
    }
    #[inline(always)]
    unsafe fn round_checked(self, rel_margin: f64) -> (__m128, __m128) {
        unsafe {
            let abs_y = _mm256_and_pd(self.0, _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)));
            let delta = _mm256_mul_pd(_mm256_set1_pd(rel_margin), abs_y);
            let low = _mm256_cvtpd_ps(_mm256_sub_pd(self.0, delta));
            let high = _mm256_cvtpd_ps(_mm256_add_pd(self.0, delta));
            let abs_low = _mm_and_ps(low, _mm_castsi128_ps(_mm_set1_epi32(i32::MAX)));
            let normal = _mm_and_ps(
                _mm_cmp_ps::<_CMP_GE_OQ>(abs_low, _mm_set1_ps(f32::MIN_POSITIVE)),
                _mm_cmp_ps::<_CMP_LT_OQ>(abs_low, _mm_set1_ps(f32::MAX)),
            );
            let same = _mm_cmp_ps::<_CMP_EQ_OQ>(low, high);
            (low, _mm_and_ps(same, normal))
        }
    }
    #[inline(always)]
    unsafe fn within(x: __m128, low: f32, high: f32) -> __m128 {
        unsafe {
            _mm_and_ps(
                _mm_cmp_ps::<_CMP_GE_OQ>(x, _mm_set1_ps(low)),
                _mm_cmp_ps::<_CMP_LE_OQ>(x, _mm_set1_ps(high)),
            )
        }
    }
    #[inline(always)]
    unsafe fn abs_at_most(x: __m128, bound: f32) -> __m128 {
        unsafe {
            let abs = _mm_and_ps(x, _mm_castsi128_ps(_mm_set1_epi32(i32::MAX)));
            _mm_cmp_ps::<_CMP_LE_OQ>(abs, _mm_set1_ps(bound))
        }
    }
    #[inline(always)]
    unsafe fn and(a: __m128, b: __m128) -> __m128 {
        unsafe { _mm_and_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn store(out: &mut [f32], at: usize, value: __m128, ok: __m128) -> u64 {
        let out = &mut out[at..at + 4];
        // SAFETY: `out` has exactly four values.
        unsafe {
            _mm_storeu_ps(out.as_mut_ptr(), value);
            ((!_mm_movemask_ps(ok) & 0xf) as u64) << at
        }
    }
}

// SAFETY: every method runs AVX-512F, AVX, AVX2 or FMA intrinsics only (the trait's contract).
unsafe impl Lanes for Avx512 {
    type F32 = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        unsafe { Avx512(_mm512_set1_pd(v)) }
    }
    #[inline(always)]
    unsafe fn load(xs: &[f32], at: usize) -> (Self, __m256) {
        let xs = &xs[at..at + 8];
        // SAFETY: `xs` has exactly eight values.
        unsafe {
            let x = _mm256_loadu_ps(xs.as_ptr());
            (Avx512(_mm512_cvtps_pd(x)), x)
        }
    }
    #[inline(always)]
    unsafe fn clamp(self, low: f64, high: f64) -> Self {
        unsafe {
            let raised = _mm512_max_pd(self.0, _mm512_set1_pd(low));
            Avx512(_mm512_min_pd(raised, _mm512_set1_pd(high)))
        }
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_add_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_sub_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_mul_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { Avx512(_mm512_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn round_ties_even(self) -> Self {
        unsafe {
            Avx512(_mm512_roundscale_pd::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(self.0))
        }
    }
    #[inline(always)]
    unsafe fn shift_into_exponent(self) -> Self {
        unsafe {
            let shifted = _mm512_slli_epi64::<52>(_mm512_castpd_si512(self.0));
            Avx512(_mm512_castsi512_pd(shifted))
        }
    }
    #[inline(always)]
    unsafe fn round_checked(self, rel_margin: f64) -> (__m256, __m256) {
        unsafe {
            let delta = _mm512_mul_pd(_mm512_set1_pd(rel_margin), _mm512_abs_pd(self.0));
            let low = _mm512_cvtpd_ps(_mm512_sub_pd(self.0, delta));
            let high = _mm512_cvtpd_ps(_mm512_add_pd(self.0, delta));
            let abs_low = _mm256_and_ps(low, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
            let normal = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GE_OQ>(abs_low, _mm256_set1_ps(f32::MIN_POSITIVE)),
                _mm256_cmp_ps::<_CMP_LT_OQ>(abs_low, _mm256_set1_ps(f32::MAX)),
            );
            let same = _mm256_cmp_ps::<_CMP_EQ_OQ>(low, high);
            (low, _mm256_and_ps(same, normal))
        }
    }
    #[inline(always)]
    unsafe fn within(x: __m256, low: f32, high: f32) -> __m256 {
        unsafe {
            _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(low)),
                _mm256_cmp_ps::<_CMP_LE_OQ>(x, _mm256_set1_ps(high)),
            )
        }
    }
    #[inline(always)]
    unsafe fn abs_at_most(x: __m256, bound: f32) -> __m256 {
        unsafe {
            let abs = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
            _mm256_cmp_ps::<_CMP_LE_OQ>(abs, _mm256_set1_ps(bound))
        }
    }
    #[inline(always)]
    unsafe fn and(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn store(out: &mut [f32], at: usize, value: __m256, ok: __m256) -> u64 {
        let out = &mut out[at..at + 8];
        // SAFETY: `out` has exactly eight values.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), value);
            ((!_mm256_movemask_ps(ok) & 0xff) as u64) << at
        }
    }
}

/// `block()` compiled for four lanes: it inlines here, where AVX2 and FMA are enabled.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn with_avx2(block: impl FnOnce() -> u64) -> u64 {
    block()
}

/// `block()` compiled for eight lanes: it inlines here, where AVX-512F, AVX2 and FMA are
/// enabled.
///
/// # Safety
/// The CPU has AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn with_avx512(block: impl FnOnce() -> u64) -> u64 {
    block()
}

/// Vectors a block's group evaluates side by side: with two chains each (the fits' even and odd
/// powers), eight independent chains, enough to keep both multiply-add units busy through each
/// step's latency.
pub(super) const VECTORS: usize = 4;

/// A block of at most [`super::checked::BLOCK`] arguments through a fit on vectors of `V`:
/// `fit` maps [`VECTORS`] vectors of widened arguments to their unrounded results, each result
/// is rounded and checked with `rel_margin` and refused too where `in_range` of its f32
/// argument is off, and the arguments after the last whole group go through `scalar`. Returns
/// the block's refusal mask.
///
/// # Safety
/// Only from a function compiled with `V`'s target features.
#[inline(always)]
pub(super) unsafe fn map_block<V: Lanes>(
    xs: &[f32],
    out: &mut [f32],
    rel_margin: f64,
    fit: impl Fn([V; VECTORS]) -> [V; VECTORS],
    in_range: impl Fn(V::F32) -> V::F32,
    scalar: impl Fn(&[f32], &mut [f32]) -> u64,
) -> u64 {
    let group = V::LANES * VECTORS;
    let groups = xs.len() / group;
    let mut refused = 0u64;
    for base in (0..groups).map(|g| g * group) {
        // SAFETY: the caller's contract.
        unsafe {
            let args: [(V, V::F32); VECTORS] =
                std::array::from_fn(|l| V::load(xs, base + V::LANES * l));
            let y = fit(args.map(|(wide, _)| wide));
            for l in 0..VECTORS {
                let (value, ok) = y[l].round_checked(rel_margin);
                let ok = V::and(ok, in_range(args[l].1));
                refused |= V::store(out, base + V::LANES * l, value, ok);
            }
        }
    }
    let done = groups * group;
    refused | (scalar(&xs[done..], &mut out[done..]) << done)
}
