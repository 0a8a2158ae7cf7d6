//! The rounding check shared by [`super::erf`] and [`super::expf`]: how a fast f64 approximation
//! returns exactly the f32 a library function would.
//!
//! Let the library's result be the f32 rounding of a value within `margin` (relative) of the true
//! function, and the approximation `y` be within `margin` too. If `y − margin·|y|` and
//! `y + margin·|y|` round to the same f32, every value between them does (rounding is monotone),
//! the library's unrounded value included, so that f32 is the library's result. Where the two
//! ends disagree (the true value lies near a rounding midpoint), or the result is not a normal
//! f32, the argument is *refused* and goes to the library itself. Computing the ends in f64 moves
//! them inward by at most half an f64 ulp, which each margin's room covers.
//!
//! The fast paths work a block of [`BLOCK`] arguments at a time and return the refused ones as a
//! bit mask, so that the common case, nothing refused, costs one comparison per block.

/// Arguments per block: one bit each in the refusal mask.
pub(super) const BLOCK: usize = 64;

/// `y` rounded to f32, and whether both ends of the margin around it round alike to a normal f32.
/// Branch-free, so a block of them vectorises.
#[inline(always)]
pub(super) fn round_checked(y: f64, rel_margin: f64) -> (f32, bool) {
    let delta = rel_margin * y.abs();
    let (low, high) = ((y - delta) as f32, (y + delta) as f32);
    let ok = (low == high) & (f32::MIN_POSITIVE..f32::MAX).contains(&low.abs());
    (low, ok)
}

/// A block through a one-argument `checked` (its rounded value and whether the check passed);
/// returns the block's refusal mask.
#[inline(always)]
pub(super) fn block_scalar(
    xs: &[f32],
    out: &mut [f32],
    checked: impl Fn(f32) -> (f32, bool),
) -> u64 {
    let mut refused = 0u64;
    for (i, (&x, o)) in xs.iter().zip(out.iter_mut()).enumerate() {
        let (value, ok) = checked(x);
        *o = value;
        refused |= u64::from(!ok) << i;
    }
    refused
}

/// `out[i] = f(xs[i])` where `fast(xs, out)` fills a block of at most [`BLOCK`] values and
/// returns the mask of the ones it refused, which `exact` then computes.
pub(super) fn map_checked(
    xs: &[f32],
    out: &mut [f32],
    mut fast: impl FnMut(&[f32], &mut [f32]) -> u64,
    exact: impl Fn(f32) -> f32,
) {
    assert_eq!(xs.len(), out.len());
    for (xs, out) in xs.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let mut refused = fast(xs, out);
        while refused != 0 {
            let i = refused.trailing_zeros() as usize;
            out[i] = exact(xs[i]);
            refused &= refused - 1;
        }
    }
}

/// Arguments of every kind for the lane-by-lane comparisons: a grid across the cut, tiny
/// and huge values, and the special ones.
#[cfg(test)]
pub(super) fn lane_arguments(scale: f32) -> Vec<f32> {
    (-3000..3000)
        .map(|i| i as f32 * scale)
        .chain((0..200).map(|i| f32::from_bits(1 + i * 40_000_017)))
        .chain([0.0, -0.0, 1e-40, f32::MIN_POSITIVE, 1e30, -1e30])
        .chain([f32::INFINITY, f32::NEG_INFINITY, f32::NAN])
        .collect()
}

/// [`round_checked`] four values per instruction.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    /// Four [`super::round_checked`]s: the rounded values, and a mask whose lanes are all ones
    /// where the check passed. The same operations in the same order, so the same bits.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::fused_ops) fn round_checked(y: __m256d, rel_margin: f64) -> (__m128, __m128) {
        let abs_y = _mm256_and_pd(y, _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)));
        let delta = _mm256_mul_pd(_mm256_set1_pd(rel_margin), abs_y);
        let low = _mm256_cvtpd_ps(_mm256_sub_pd(y, delta));
        let high = _mm256_cvtpd_ps(_mm256_add_pd(y, delta));
        let abs_low = _mm_and_ps(low, _mm_castsi128_ps(_mm_set1_epi32(i32::MAX)));
        let normal = _mm_and_ps(
            _mm_cmp_ps::<_CMP_GE_OQ>(abs_low, _mm_set1_ps(f32::MIN_POSITIVE)),
            _mm_cmp_ps::<_CMP_LT_OQ>(abs_low, _mm_set1_ps(f32::MAX)),
        );
        (low, _mm_and_ps(_mm_cmp_ps::<_CMP_EQ_OQ>(low, high), normal))
    }

    /// Stores four results at `out[at..at + 4]` and returns their refusals as bits `at..at + 4`
    /// of a block mask.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::fused_ops) fn store(
        out: &mut [f32],
        at: usize,
        value: __m128,
        ok: __m128,
    ) -> u64 {
        let out = &mut out[at..at + 4];
        // SAFETY: `out` has exactly four values.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), value) };
        ((!_mm_movemask_ps(ok) & 0xf) as u64) << at
    }

    /// Four arguments from `xs[at..at + 4]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::fused_ops) fn load(xs: &[f32], at: usize) -> __m128 {
        let xs = &xs[at..at + 4];
        // SAFETY: `xs` has exactly four values.
        unsafe { _mm_loadu_ps(xs.as_ptr()) }
    }
}

/// [`round_checked`] eight values per instruction (AVX-512F for the f64 side; the f32 side is
/// the AVX of [`avx2`]).
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    /// Eight [`super::round_checked`]s: the rounded values, and a mask whose lanes are all ones
    /// where the check passed. The same operations in the same order, so the same bits.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(in crate::fused_ops) fn round_checked(y: __m512d, rel_margin: f64) -> (__m256, __m256) {
        let abs_y = _mm512_abs_pd(y);
        let delta = _mm512_mul_pd(_mm512_set1_pd(rel_margin), abs_y);
        let low = _mm512_cvtpd_ps(_mm512_sub_pd(y, delta));
        let high = _mm512_cvtpd_ps(_mm512_add_pd(y, delta));
        let abs_low = _mm256_and_ps(low, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
        let normal = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(abs_low, _mm256_set1_ps(f32::MIN_POSITIVE)),
            _mm256_cmp_ps::<_CMP_LT_OQ>(abs_low, _mm256_set1_ps(f32::MAX)),
        );
        (
            low,
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(low, high), normal),
        )
    }

    /// Stores eight results at `out[at..at + 8]` and returns their refusals as bits `at..at + 8`
    /// of a block mask.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(in crate::fused_ops) fn store(
        out: &mut [f32],
        at: usize,
        value: __m256,
        ok: __m256,
    ) -> u64 {
        let out = &mut out[at..at + 8];
        // SAFETY: `out` has exactly eight values.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), value) };
        ((!_mm256_movemask_ps(ok) & 0xff) as u64) << at
    }

    /// Eight arguments from `xs[at..at + 8]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(in crate::fused_ops) fn load(xs: &[f32], at: usize) -> __m256 {
        let xs = &xs[at..at + 8];
        // SAFETY: `xs` has exactly eight values.
        unsafe { _mm256_loadu_ps(xs.as_ptr()) }
    }
}
