//! The dense layer's full products, x·W in the forward pass and xᵀ·g for the weight gradient,
//! with the bits of `matrixmultiply::sgemm`'s AVX-512 kernel and none of its packing.
//!
//! Before every product sgemm copies both operands into panels (`pack_avx512`); in the mlp
//! head's training step that copying took a fifth as long as the products themselves. Here the
//! operands are read where they lie: B's and C's rows must be contiguous, and A may have any
//! strides, so one routine serves x·W (A = x) and xᵀ·g (A = the transposed view of x).
//!
//! The bits are sgemm's because every output goes through the same operations (the rules are
//! spelled out in [`super::narrow`]): k is cut into blocks of [`KC`] from 0; within a block, one
//! chain of fused multiply-adds a·b + acc in k order, starting from +0; the first block's chain
//! stored as it is (`KernelAvx512` stores α·ab with α = 1, so −0 stays −0); each later block's
//! chain added with one rounding. sgemm's edge tiles go through a buffer and the same two
//! store rules, so they give the same bits as its full tiles, and as the masked tiles here.
//! [`product`] answers only where sgemm runs that kernel ([`narrow::kernel`] says
//! `FirstBlock::AsIs`); elsewhere the caller keeps sgemm.
//! `tests::direct_products_match_sgemm_bit_for_bit` checks the bits over tile, panel and block
//! edges, underflows to −0 included.

use ndarray::{Array2, ArrayView2};

use super::narrow::{self, FirstBlock, KC};

/// Rows of C per tile: each takes one broadcast of an A value per k.
const TILE_ROWS: usize = 12;

/// 16-lane vectors per tile row: a tile is 12 × 32 outputs in 24 of the 32 registers, read
/// with 2 vector loads of B and 12 broadcasts of A per k. Each B vector feeds 12 fused
/// multiply-adds (6 in the 6 × 64 tile this replaced), and a k block's panel of B, 256 × 32
/// values, is 32 KiB, so it stays in L1 while the task's tiles take their turns on it.
const TILE_VECTORS: usize = 2;

/// Columns of C per tile.
const TILE_COLUMNS: usize = 16 * TILE_VECTORS;

/// Rows of C per rayon task (four tiles) when k is one block. Each output belongs to one task,
/// which runs all its k blocks in order, so the bits do not depend on the thread count.
const TASK_ROWS: usize = 4 * TILE_ROWS;

/// a·b as a new row-major matrix, the bits of sgemm's AVX-512 kernel (see the module docs);
/// `None` where sgemm runs another kernel, where b's rows are not contiguous, or where a
/// dimension is 0 (the caller's sgemm handles those).
pub(super) fn product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    if narrow::kernel()? != FirstBlock::AsIs {
        return None;
    }
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 || m == 0 || n == 0 || k == 0 {
        return None;
    }
    if n > 1 && b.strides()[1] != 1 {
        return None;
    }
    let b_row_stride = usize::try_from(b.strides()[0]).ok()?;
    #[cfg(target_arch = "x86_64")]
    {
        Some(avx512::product(a, b, b_row_stride))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = b_row_stride;
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use ndarray::{Array2, ArrayView2};
    use rayon::prelude::*;

    use super::{KC, TASK_ROWS, TILE_COLUMNS, TILE_ROWS, TILE_VECTORS};

    /// Where the operands lie: A's element (i, k) at `a + i·a_rows + k·a_cols`, B's (k, j) at
    /// `b + k·b_row + j`, C's (i, j) at `c + i·n + j`.
    #[derive(Clone, Copy)]
    struct Operands {
        a: *const f32,
        a_rows: isize,
        a_cols: isize,
        b: *const f32,
        b_row: usize,
        c: *mut f32,
        k: usize,
        n: usize,
    }
    // SAFETY: the tasks read A and B and write disjoint row ranges of C (see `product`).
    unsafe impl Send for Operands {}
    // SAFETY: as above.
    unsafe impl Sync for Operands {}

    pub(super) fn product(
        a: ArrayView2<'_, f32>,
        b: ArrayView2<'_, f32>,
        b_row: usize,
    ) -> Array2<f32> {
        let ((m, k), n) = (a.dim(), b.ncols());
        let mut out = Vec::<f32>::with_capacity(m * n);
        let ops = Operands {
            a: a.as_ptr(),
            a_rows: a.strides()[0],
            a_cols: a.strides()[1],
            b: b.as_ptr(),
            b_row,
            c: out.as_mut_ptr(),
            k,
            n,
        };
        let rows_per_task = task_rows_for(m, k, rayon::current_num_threads());
        (0..m.div_ceil(rows_per_task))
            .into_par_iter()
            .for_each(|task| {
                let rows = task * rows_per_task..((task + 1) * rows_per_task).min(m);
                // SAFETY: `super::product` checked AVX-512F (sgemm's AVX-512 kernel runs only
                // where it is present); every A, B and C address a tile touches lies inside the
                // views and the m·n output; this task alone writes the rows `rows` of C.
                unsafe { task_rows(&ops, rows) };
            });
        // SAFETY: the first k block's tiles wrote every value of every row.
        unsafe { out.set_len(m * n) };
        Array2::from_shape_vec((m, n), out).expect("m·n values")
    }

    /// Rows of C per rayon task. With more than one k block, every task streams all of B once per
    /// block, so the fewest tasks that keep every thread busy are best: one run of whole tiles per
    /// thread (the weight gradient xᵀ·g, k = the step rows). With one block, [`TASK_ROWS`]. Each
    /// output still belongs to one task, so the bits do not depend on the split.
    fn task_rows_for(m: usize, k: usize, threads: usize) -> usize {
        if k <= KC {
            return TASK_ROWS;
        }
        let tiles = m.div_ceil(TILE_ROWS);
        tiles.div_ceil(threads.max(1)).max(1) * TILE_ROWS
    }

    /// Rows `rows` of C, k block by k block: within a block, panel of columns by panel, each
    /// panel of B reused from L1 by all the task's tiles.
    ///
    /// # Safety
    /// AVX-512F is present; see [`product`] for the addresses.
    #[target_feature(enable = "avx512f")]
    unsafe fn task_rows(ops: &Operands, rows: std::ops::Range<usize>) {
        for k0 in (0..ops.k).step_by(KC) {
            let kc = KC.min(ops.k - k0);
            let first = k0 == 0;
            for j0 in (0..ops.n).step_by(TILE_COLUMNS) {
                let masks = lane_masks(ops.n - j0);
                for i0 in rows.clone().step_by(TILE_ROWS) {
                    let height = TILE_ROWS.min(rows.end - i0);
                    // SAFETY: as for this function; the tile's rows and columns lie inside C.
                    unsafe {
                        match height {
                            12 => tile::<12>(ops, i0, j0, k0, kc, masks, first),
                            11 => tile::<11>(ops, i0, j0, k0, kc, masks, first),
                            10 => tile::<10>(ops, i0, j0, k0, kc, masks, first),
                            9 => tile::<9>(ops, i0, j0, k0, kc, masks, first),
                            8 => tile::<8>(ops, i0, j0, k0, kc, masks, first),
                            7 => tile::<7>(ops, i0, j0, k0, kc, masks, first),
                            6 => tile::<6>(ops, i0, j0, k0, kc, masks, first),
                            5 => tile::<5>(ops, i0, j0, k0, kc, masks, first),
                            4 => tile::<4>(ops, i0, j0, k0, kc, masks, first),
                            3 => tile::<3>(ops, i0, j0, k0, kc, masks, first),
                            2 => tile::<2>(ops, i0, j0, k0, kc, masks, first),
                            _ => tile::<1>(ops, i0, j0, k0, kc, masks, first),
                        }
                    }
                }
            }
        }
    }

    /// The lanes of each of a tile's vectors that hold columns of C, for `left` columns from
    /// the tile's first.
    fn lane_masks(left: usize) -> [__mmask16; TILE_VECTORS] {
        std::array::from_fn(|v| {
            let lanes = left.saturating_sub(16 * v).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        })
    }

    /// One tile, `R` rows from `i0` and the masked columns from `j0`, over the k block
    /// `k0..k0 + kc`: each output's chain of fused multiply-adds from +0 in k order, then stored
    /// (first block) or added to C with one rounding. Masked-off lanes read zeros and are not
    /// written.
    ///
    /// # Safety
    /// AVX-512F is present; the rows `i0..i0 + R`, the unmasked columns and the k block lie
    /// inside the operands.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(
        ops: &Operands,
        i0: usize,
        j0: usize,
        k0: usize,
        kc: usize,
        masks: [__mmask16; TILE_VECTORS],
        first: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); TILE_VECTORS]; R];
        // SAFETY (the pointer arithmetic and loads): the caller's contract; masked loads do not
        // touch masked-off lanes.
        unsafe {
            let mut a = ops
                .a
                .offset(i0 as isize * ops.a_rows + k0 as isize * ops.a_cols);
            let mut b = ops.b.add(k0 * ops.b_row + j0);
            for _ in 0..kc {
                let bv: [__m512; TILE_VECTORS] = std::array::from_fn(|v| {
                    _mm512_maskz_loadu_ps(masks[v], b.wrapping_add(16 * v))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.offset(r as isize * ops.a_rows));
                    for v in 0..TILE_VECTORS {
                        acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
                    }
                }
                // Wrapping: after the block's last k these point past the operands, unread.
                a = a.wrapping_offset(ops.a_cols);
                b = b.wrapping_add(ops.b_row);
            }
            for (r, acc) in acc.iter().enumerate() {
                let c = ops.c.add((i0 + r) * ops.n + j0);
                for v in 0..TILE_VECTORS {
                    let at = c.wrapping_add(16 * v);
                    let value = if first {
                        acc[v]
                    } else {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], at), acc[v])
                    };
                    _mm512_mask_storeu_ps(at, masks[v], value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::narrow::tests::{same_bits, values};
    use crate::fused_ops::ndarray_kernels::sgemm_product;
    use ndarray::s;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    /// The module's rules one output at a time, for sgemm's AVX-512 kernel: blocks of [`KC`]
    /// from 0, one fused multiply-add chain per block from +0 in k order, the first block
    /// stored as it is and each later one added with one rounding.
    fn blocked_chains(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
        let ((m, k), n) = (a.dim(), b.ncols());
        Array2::from_shape_fn((m, n), |(i, j)| {
            let chain = |k0: usize| {
                (k0..(k0 + KC).min(k)).fold(0f32, |acc, kk| a[[i, kk]].mul_add(b[[kk, j]], acc))
            };
            (KC..k)
                .step_by(KC)
                .fold(FirstBlock::AsIs.store(chain(0)), |c, k0| c + chain(k0))
        })
    }

    /// With more than one k block the rows are split one run of tiles per thread
    /// (`task_rows_for`); the bits must not follow the split.
    #[test]
    fn direct_products_do_not_depend_on_the_thread_count() {
        if narrow::kernel() != Some(FirstBlock::AsIs) {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        for (m, k, n) in [(50, 600, 70), (256, 3072, 64), (13, 100, 40)] {
            // x [k, m], read through its transpose, as the weight gradient reads the features
            let x = Array2::from_shape_vec((k, m), values(m * k, &mut rng)).unwrap();
            let b = Array2::from_shape_vec((k, n), values(k * n, &mut rng)).unwrap();
            let runs: Vec<Array2<f32>> = [1, 2, 3, 7]
                .into_iter()
                .map(|threads| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| product(x.t(), b.view()).expect("AVX-512 kernel"))
                })
                .collect();
            let want = sgemm_product(x.t(), b.view());
            for got in &runs {
                same_bits(got, &want, &format!("xᵀ·B {m}×{k}·{k}×{n} by thread count"));
            }
        }
    }

    #[test]
    fn direct_products_match_sgemm_bit_for_bit() {
        if narrow::kernel() != Some(FirstBlock::AsIs) {
            eprintln!("sgemm does not run its AVX-512 kernel here: the direct products are unused");
            let a = Array2::<f32>::ones((3, 3));
            assert!(product(a.view(), a.view()).is_none());
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(29);
        let (mut negative_zeros, mut blocked_differs) = (0usize, 0usize);
        // m on both sides of a tile (12) and a task (48), and every height of a last tile; n on
        // both sides of a vector (16) and a tile (32); k on both sides of sgemm's block (256).
        for (m, k, n) in [
            (1, 1, 1),
            (3, 20, 5),
            (5, 7, 15),
            (6, 256, 16),
            (7, 257, 17),
            (11, 40, 31),
            (20, 270, 40),
            (12, 255, 32),
            (13, 255, 63),
            (23, 300, 33),
            (34, 9, 48),
            (45, 513, 8),
            (48, 300, 64),
            (50, 513, 65),
            (97, 600, 130),
            (256, 1030, 256),
        ] {
            let mut x = Array2::from_shape_vec((m, k), values(m * k, &mut rng)).unwrap();
            // A row whose products with a non-negative B row underflow to −0.
            x.row_mut(0).fill(-1e-30);
            // B as a view into a wider matrix, so its row stride is not n.
            let mut wide =
                Array2::from_shape_vec((k, n + 3), values(k * (n + 3), &mut rng)).unwrap();
            wide.column_mut(0).fill(1e-30);
            let b = wide.slice(s![.., ..n]);
            let label = format!("{m}×{k}·{k}×{n}");
            let got = product(x.view(), b).expect("AVX-512 kernel");
            let want = sgemm_product(x.view(), b);
            same_bits(&got, &want, &format!("x·B {label}"));
            // The rules themselves, one output at a time, against sgemm.
            same_bits(
                &blocked_chains(x.view(), b),
                &want,
                &format!("rules, x·B {label}"),
            );
            negative_zeros += want
                .iter()
                .filter(|v| v.to_bits() == (-0f32).to_bits())
                .count();
            if k > KC {
                let one_chain = |i: usize, j: usize| {
                    (0..k).fold(0f32, |acc, kk| x[[i, kk]].mul_add(b[[kk, j]], acc))
                };
                blocked_differs += (0..m)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .filter(|&(i, j)| one_chain(i, j).to_bits() != want[[i, j]].to_bits())
                    .count();
            }
            // The transposed view, as the weight gradient reads x.
            let xt = Array2::from_shape_vec((k, m), values(k * m, &mut rng)).unwrap();
            let b2 = Array2::from_shape_vec((k, n), values(k * n, &mut rng)).unwrap();
            let got = product(xt.t(), b2.view()).expect("AVX-512 kernel");
            same_bits(
                &got,
                &sgemm_product(xt.t(), b2.view()),
                &format!("xᵀ·B {label}"),
            );
        }
        // The fixture reaches what the bits depend on: first blocks stored as −0, and outputs
        // whose blocked sum differs from one unblocked chain.
        assert!(
            negative_zeros > 0,
            "no −0 output: the store rule is untested"
        );
        assert!(blocked_differs > 0, "no output depends on the k blocks");
    }

    #[test]
    fn direct_products_decline_what_they_do_not_cover() {
        // B with non-contiguous rows (a transposed view), and an empty k: sgemm's.
        let a = Array2::<f32>::ones((4, 5));
        assert!(product(a.view(), a.t()).is_none());
        let empty = Array2::<f32>::zeros((4, 0));
        assert!(product(empty.view(), Array2::<f32>::zeros((0, 3)).view()).is_none());
        // Both still come out of the trainer's product, through sgemm.
        let through = crate::fused_ops::ndarray_kernels::product(a.view(), a.t());
        assert_eq!(through, Array2::from_elem((4, 4), 5.0f32));
    }
}
