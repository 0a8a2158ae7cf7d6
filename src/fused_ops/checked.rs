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

/// A build of a fit's block: one argument at a time, or vectors of one width
/// ([`super::lanes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FitBuild {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl FitBuild {
    /// Every build this CPU runs, slowest first: AVX2 needs FMA too, and AVX-512F comes on top
    /// of both.
    pub(super) fn available() -> Vec<Self> {
        let mut builds = vec![FitBuild::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            builds.push(FitBuild::Avx2Fma);
            if std::is_x86_feature_detected!("avx512f") {
                builds.push(FitBuild::Avx512);
            }
        }
        builds
    }

    /// The fastest build this CPU runs.
    pub(super) fn fastest() -> Self {
        *Self::available()
            .last()
            .expect("the portable build runs anywhere")
    }
}

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

/// Asserts that `vector` (a vector build of a block) gives `scalar`'s refusals and, where it
/// keeps a value, its bits: over every block length up to [`BLOCK`], at every offset of `args`
/// modulo the vector groups, so the vector part, the scalar tail and the mask positions are all
/// exercised. (A refused lane's value is overwritten by the library's, and a NaN argument clamps
/// differently in the two: `maxpd` returns its second operand, `f64::clamp` the NaN.)
#[cfg(test)]
pub(super) fn assert_lanes_match_scalar(
    args: &[f32],
    vector: impl Fn(&[f32], &mut [f32]) -> u64,
    scalar: impl Fn(&[f32], &mut [f32]) -> u64,
    build: &str,
) {
    for len in 1..=BLOCK {
        for chunk in args.chunks(len) {
            let (mut from_vector, mut from_scalar) =
                (vec![0f32; chunk.len()], vec![0f32; chunk.len()]);
            let refused_vector = vector(chunk, &mut from_vector);
            let refused_scalar = scalar(chunk, &mut from_scalar);
            assert_eq!(refused_vector, refused_scalar, "{build} {chunk:?}");
            for (i, ((v, s), x)) in from_vector.iter().zip(&from_scalar).zip(chunk).enumerate() {
                if refused_scalar >> i & 1 == 0 {
                    assert_eq!(v.to_bits(), s.to_bits(), "{build} {x}");
                }
            }
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
