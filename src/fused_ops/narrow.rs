//! The dense layer's products when one dimension is 1 (the mlp head's output layer and the
//! linear head: a matrix times a vector, its transpose times a vector, and an outer product),
//! with the bits of `matrixmultiply::sgemm` and none of its packing.
//!
//! For these shapes sgemm spends its time packing: it copies the whole [S, h] operand into
//! panels and pads the vector to eight columns, so the output layer's three products took as
//! long as the [S, h] GELU backward pass. Each here reads the matrix once.
//!
//! The bits follow from how sgemm's fused multiply-add kernels compute C = A·B with α = 1 and
//! β = 0:
//! - k is cut into blocks of [`KC`] (`matrixmultiply`'s default `S_KC`);
//! - within a block, each output is one chain of fused multiply-adds in k order, starting from
//!   +0.0;
//! - the first block's result ab is stored as [`FirstBlock`] says: the FMA + AVX2 kernel
//!   (`KernelFmaAvx2`) stores fma(1, ab, +0), which turns a −0 (a chain that underflowed) into
//!   +0; the AVX-512 kernel (`KernelAvx512`, which `matrixmultiply` builds by default and picks
//!   where the CPU has AVX-512F) stores α·ab = ab, keeping −0;
//! - each later block's is added to it with one rounding (both kernels).
//!
//! So a product with k = 1 is one fused multiply-add onto +0, then that store.
//! `tests::narrow_products_match_sgemm_bit_for_bit` checks all three against sgemm over block
//! boundaries, underflows to −0 included, in whichever form sgemm runs: the AVX-512 form on an
//! AVX-512 CPU, and the FMA + AVX2 form in a build with `MMTEST_FEATURE=fma,avx2` (see
//! [`kernel`]), which `.ci/run` runs, so both are checked against sgemm on this project's
//! AVX-512 machines. Without FMA and AVX2 the callers keep sgemm, whose kernel then rounds each
//! multiply and add.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// `matrixmultiply`'s k block for f32 (`S_KC`, a build-time setting it defaults to 256).
pub(super) const KC: usize = 256;

/// How sgemm's fused multiply-add kernel stores the first k block's chain ab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FirstBlock {
    /// fma(1, ab, +0): a −0 becomes +0 (`KernelFmaAvx2`).
    PlusZero,
    /// α·ab = ab: a −0 stays −0 (`KernelAvx512`).
    AsIs,
}

impl FirstBlock {
    /// The first block's chain `ab` as sgemm stores it.
    #[inline(always)]
    pub(super) fn store(self, ab: f32) -> f32 {
        match self {
            FirstBlock::PlusZero => ab + 0.0,
            FirstBlock::AsIs => ab,
        }
    }

    /// g·w as sgemm gives it for k = 1: fma(g, w, +0), then [`Self::store`]. fma(g, w, +0) is
    /// g·w rounded once, except that an exactly zero product (a zero factor) gives +0.
    #[inline(always)]
    fn product(self, g: f32, w: f32) -> f32 {
        let p = g * w;
        let onto_zero = if p == 0.0 && (g == 0.0 || w == 0.0) {
            0.0
        } else {
            p
        };
        self.store(onto_zero)
    }
}

/// Which fused multiply-add kernel sgemm runs here, so that the products below are its bits;
/// `None` where it runs none (no FMA and AVX2), or where `matrixmultiply` was built with its
/// k block changed (`MATMUL_SGEMM_KC`), whose bits [`KC`] would not follow.
///
/// `matrixmultiply` has a build-time switch for its tests, `MMTEST_FEATURE`: set to a
/// comma-separated list, it detects only the features listed. This reads the same switch the
/// same way ([`sgemm_allows`]), so that a build with `MMTEST_FEATURE=fma,avx2` runs the FMA +
/// AVX2 kernel's rules on both sides, even on an AVX-512 CPU: that is how CI checks them here.
pub(super) fn kernel() -> Option<FirstBlock> {
    if option_env!("MATMUL_SGEMM_KC").is_some_and(|kc| !kc.is_empty()) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        static KERNEL: std::sync::OnceLock<Option<FirstBlock>> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            // Every answer but `None` promises the CPU's FMA and AVX2: the products here and in
            // `direct` run FMA + AVX2 code on that promise, whatever the switch allows sgemm.
            if !(std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2")) {
                None
            } else if sgemm_allows("avx512f") && std::is_x86_feature_detected!("avx512f") {
                Some(FirstBlock::AsIs)
            } else if sgemm_allows("fma") && sgemm_allows("avx2") {
                Some(FirstBlock::PlusZero)
            } else {
                None
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Whether `matrixmultiply` may detect `feature`: its `MMTEST_FEATURE` build-time switch, read
/// as it reads it (unset or empty allows every feature; otherwise only the exact words of the
/// comma-separated list).
fn sgemm_allows(feature: &str) -> bool {
    match option_env!("MMTEST_FEATURE") {
        None | Some("") => true,
        Some(list) => list.split(',').any(|word| word == feature),
    }
}

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 512;

/// x·w for x [S, k] in standard layout and w [k, 1]: one value per row. `None` where the shapes
/// or layout differ or sgemm runs no fused multiply-add kernel ([`kernel`]).
pub(super) fn matrix_vector(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    let (rows, k) = x.dim();
    let first = kernel()?;
    if w.dim() != (k, 1) {
        return None;
    }
    let xs = x.to_slice()?;
    let w: Vec<f32> = w.column(0).to_vec();
    let mut out = vec![0f32; rows];
    if k > 0 {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(xs.par_chunks(k * ROWS_PER_TASK))
            // SAFETY: `kernel` checked FMA and AVX2.
            .for_each(|(out, xs)| unsafe { fma::row_dots(out, xs, &w, first) });
    }
    Some(Array2::from_shape_vec((rows, 1), out).expect("S values"))
}

/// xᵀ·g for x [S, h] in standard layout and g [S, 1]: one value per column of x. `None` as for
/// [`matrix_vector`].
pub(super) fn transpose_vector(
    x: ArrayView2<'_, f32>,
    g: ArrayView2<'_, f32>,
) -> Option<Array2<f32>> {
    let (rows, cols) = x.dim();
    let first = kernel()?;
    if g.dim() != (rows, 1) {
        return None;
    }
    let xs = x.to_slice()?;
    let g: Vec<f32> = g.column(0).to_vec();
    let mut out = vec![0f32; cols];
    out.par_chunks_mut(fma::COLUMNS)
        .enumerate()
        // SAFETY: `kernel` checked FMA and AVX2.
        .for_each(|(task, out)| unsafe {
            fma::column_dots(out, task * fma::COLUMNS, xs, cols, &g, first)
        });
    Some(Array2::from_shape_vec((cols, 1), out).expect("h values"))
}

/// g·wᵀ for g [S, 1] and w [h, 1]: the outer product [S, h]. `None` as for [`matrix_vector`].
pub(super) fn outer(g: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    let ((rows, one), (cols, one_w)) = (g.dim(), w.dim());
    let first = kernel()?;
    if one != 1 || one_w != 1 {
        return None;
    }
    let (g, w): (Vec<f32>, Vec<f32>) = (g.column(0).to_vec(), w.column(0).to_vec());
    let mut out = Vec::<f32>::with_capacity(rows * cols);
    if cols > 0 {
        out.spare_capacity_mut()[..rows * cols]
            .par_chunks_mut(cols * ROWS_PER_TASK)
            .zip(g.par_chunks(ROWS_PER_TASK))
            .for_each(|(block, g)| {
                for (row, &gi) in block.chunks_exact_mut(cols).zip(g) {
                    for (o, &wj) in row.iter_mut().zip(&w) {
                        o.write(first.product(gi, wj));
                    }
                }
            });
    }
    // SAFETY: the loop above wrote all rows·cols values.
    unsafe { out.set_len(rows * cols) };
    Some(Array2::from_shape_vec((rows, cols), out).expect("S·h values"))
}

/// The chains, compiled with fused multiply-adds (`f32::mul_add` is one instruction here).
mod fma {
    use super::{FirstBlock, KC};

    /// Outputs per task of [`column_dots`] (eight vectors of eight accumulators).
    pub(super) const COLUMNS: usize = 64;

    /// Rows whose chains run side by side in [`row_dots`], hiding the multiply-add's latency.
    const SIDE_BY_SIDE: usize = 8;

    /// `out[i]` = Σ over blocks of KC of the chain Σ_k x[i, k]·w[k] (see the module docs), for
    /// the rows `xs` (row-major, `w.len()` values each).
    ///
    /// # Safety
    /// The CPU has FMA and AVX2.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "fma,avx2"))]
    pub(super) unsafe fn row_dots(out: &mut [f32], xs: &[f32], w: &[f32], first: FirstBlock) {
        let k = w.len();
        for (out, xs) in out
            .chunks_mut(SIDE_BY_SIDE)
            .zip(xs.chunks(k * SIDE_BY_SIDE))
        {
            let n = out.len();
            let rows: [&[f32]; SIDE_BY_SIDE] = std::array::from_fn(|l| {
                let l = l.min(n - 1);
                &xs[l * k..(l + 1) * k]
            });
            let mut total = [0f32; SIDE_BY_SIDE];
            for start in (0..k).step_by(KC) {
                let end = (start + KC).min(k);
                let mut acc = [0f32; SIDE_BY_SIDE];
                for kk in start..end {
                    for l in 0..SIDE_BY_SIDE {
                        acc[l] = rows[l][kk].mul_add(w[kk], acc[l]);
                    }
                }
                for l in 0..SIDE_BY_SIDE {
                    // sgemm stores the first block as `first` says and adds each later one
                    // with a single rounding.
                    total[l] = if start == 0 {
                        first.store(acc[l])
                    } else {
                        total[l] + acc[l]
                    };
                }
            }
            out.copy_from_slice(&total[..n]);
        }
    }

    /// `out[j]` = Σ over blocks of KC rows of the chain Σ_r x[r, first + j]·g[r] (see the module
    /// docs), for `xs` row-major with `cols` values per row and `out.len()` ≤ [`COLUMNS`].
    ///
    /// # Safety
    /// The CPU has FMA and AVX2.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "fma,avx2"))]
    pub(super) unsafe fn column_dots(
        out: &mut [f32],
        first: usize,
        xs: &[f32],
        cols: usize,
        g: &[f32],
        form: FirstBlock,
    ) {
        let width = out.len();
        for start in (0..g.len()).step_by(KC) {
            let end = (start + KC).min(g.len());
            let mut acc = [0f32; COLUMNS];
            for (r, &gr) in g.iter().enumerate().take(end).skip(start) {
                let values = &xs[r * cols + first..r * cols + first + width];
                for (a, &v) in acc.iter_mut().zip(values) {
                    *a = v.mul_add(gr, *a);
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = if start == 0 { form.store(a) } else { *o + a };
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fused_ops::ndarray_kernels::sgemm_product as product;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random values with zeros of both signs and pairs whose products underflow to ±0.
    pub(in crate::fused_ops) fn values(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.random_range(0..20) {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-30 * if rng.random() { 1.0 } else { -1.0 },
                _ => rng.random_range(-2.0f32..2.0),
            })
            .collect()
    }

    pub(in crate::fused_ops) fn same_bits(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
        assert_eq!(a.dim(), b.dim(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                x.to_bits(),
                y.to_bits(),
                "{what}: element {i}: {x} against {y}"
            );
        }
    }

    #[test]
    fn narrow_products_match_sgemm_bit_for_bit() {
        let Some(first) = kernel() else {
            eprintln!("no FMA and AVX2: the narrow products are not used here");
            return;
        };
        eprintln!("sgemm's kernel here stores the first block {first:?}");
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        // Lengths on both sides of sgemm's k block (256), and row counts that leave partial
        // tasks and partial groups of side-by-side rows.
        for (rows, k) in [
            (1, 1),
            (9, 7),
            (37, 256),
            (515, 257),
            (64, 600),
            (1030, 3072),
        ] {
            let mut x = Array2::from_shape_vec((rows, k), values(rows * k, &mut rng)).unwrap();
            // A row and a column whose every product underflows to −0 (with w, g and h ≥ 0 there).
            x.row_mut(0).fill(-1e-30);
            x.column_mut(0).fill(-1e-30);
            let mut w = Array2::from_shape_vec((k, 1), values(k, &mut rng)).unwrap();
            let mut g = Array2::from_shape_vec((rows, 1), values(rows, &mut rng)).unwrap();
            w.fill(1e-30);
            g.column_mut(0)
                .iter_mut()
                .step_by(2)
                .for_each(|v| *v = 1e-30);
            let label = format!("{rows}×{k}");
            let mv = matrix_vector(x.view(), w.view()).expect("standard layout");
            same_bits(&mv, &product(x.view(), w.view()), &format!("x·w {label}"));
            let tv = transpose_vector(x.view(), g.view()).expect("standard layout");
            same_bits(&tv, &product(x.t(), g.view()), &format!("xᵀ·g {label}"));
            let h = Array2::from_shape_vec((k, 1), values(k, &mut rng)).unwrap();
            let op = outer(g.view(), h.view()).expect("vectors");
            same_bits(&op, &product(g.view(), h.t()), &format!("g·hᵀ {label}"));
        }
        // .ci/run looks for this line in its FMA + AVX2 build.
        eprintln!("narrow products checked in the {first:?} form against sgemm");
    }

    #[test]
    fn the_zero_fix_and_the_block_sums_are_what_make_the_bits_agree() {
        // Negative control: a single unblocked chain, or a first block stored the other
        // kernel's way, must differ from sgemm on these inputs; otherwise the test above proves
        // little.
        let Some(first) = kernel() else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (rows, k) = (64, 3072);
        let x = Array2::from_shape_vec((rows, k), values(rows * k, &mut rng)).unwrap();
        let w = Array2::from_shape_vec((k, 1), values(k, &mut rng)).unwrap();
        let want = product(x.view(), w.view());
        let one_chain: Vec<f32> = x
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .zip(&w)
                    .fold(0f32, |acc, (&a, &b)| a.mul_add(b, acc))
            })
            .collect();
        assert!(
            one_chain
                .iter()
                .zip(&want)
                .any(|(a, b)| a.to_bits() != b.to_bits())
        );
        // A product that underflows to −0: sgemm returns +0 with the FMA + AVX2 kernel and −0
        // with the AVX-512 one, so the two stores are told apart by the test above.
        let tiny = Array2::from_shape_vec((1, 1), vec![-1e-30f32]).unwrap();
        let also_tiny = Array2::from_shape_vec((1, 1), vec![1e-30f32]).unwrap();
        let sgemm = product(tiny.view(), also_tiny.view())[[0, 0]];
        let (this, other) = match first {
            FirstBlock::PlusZero => (0.0f32, -0.0f32),
            FirstBlock::AsIs => (-0.0, 0.0),
        };
        assert_eq!(sgemm.to_bits(), this.to_bits());
        assert_ne!(sgemm.to_bits(), other.to_bits());
        assert_eq!((-1e-30f32 * 1e-30f32).to_bits(), (-0.0f32).to_bits());
        // A zero factor gives +0 in both forms (fma(−0, w, +0) = +0).
        let zero = Array2::from_shape_vec((1, 1), vec![-0.0f32]).unwrap();
        let one = Array2::from_shape_vec((1, 1), vec![1.0f32]).unwrap();
        assert_eq!(product(zero.view(), one.view())[[0, 0]].to_bits(), 0);
        assert_eq!(first.product(-0.0, 1.0).to_bits(), 0);
    }
}
