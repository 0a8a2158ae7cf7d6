//! The dense layer's full products, x·W in the forward pass and xᵀ·g for the weight gradient,
//! with the bits of `matrixmultiply::sgemm`'s AVX-512 kernel and none of its packing.
//!
//! Before every product sgemm copies both operands into panels (`pack_avx512`); in the mlp
//! head's training step that copying took a fifth as long as the products themselves. Here the
//! operands are read where they lie, with two small exceptions, so one routine serves x·W (A = x)
//! and xᵀ·g (A = the transposed view of x). A may have any strides; B's rows must be contiguous.
//! The tiles run k block by k block, and within a block tile by tile over every panel of B, so
//! a tile's rows of A (12 KiB) stay in L1 while B streams past them from L2, fetched a few rows
//! ahead. The exceptions are copies where reading in place would put a block's lines 1 KiB
//! apart (rows of x, W or g at d = 256), into a handful of L1's 64 sets:
//! - where k is one block (x·W), B is copied into panels once per product (256 KiB for W);
//! - where A's rows are adjacent (xᵀ·g), each tile's part of a k block is copied into a 12 KiB
//!   buffer, k by k, before the tile runs over the panels.
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
/// multiply-adds (6 in the 6 × 64 tile this replaced).
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
    #[cfg(target_arch = "x86_64")]
    {
        Some(avx512::product(a, b))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _MM_HINT_T0, _mm_prefetch, _mm512_add_ps, _mm512_fmadd_ps,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use ndarray::{Array2, ArrayView2};
    use rayon::prelude::*;

    use super::{KC, TASK_ROWS, TILE_COLUMNS, TILE_ROWS, TILE_VECTORS};

    /// Where the operands lie: A's element (i, k) at `a + i·a_rows + k·a_cols`, B's (k, j) at
    /// `b + k·b_row + ⌊j / TILE_COLUMNS⌋·b_panel + j mod TILE_COLUMNS` (in place, b_panel =
    /// TILE_COLUMNS; packed by [`pack_panels`], b_row = TILE_COLUMNS and b_panel = k·b_row),
    /// C's (i, j) at `c + i·n + j`.
    #[derive(Clone, Copy)]
    struct Operands {
        a: *const f32,
        a_rows: isize,
        a_cols: isize,
        b: *const f32,
        b_row: isize,
        b_panel: isize,
        c: *mut f32,
        k: usize,
        n: usize,
    }
    // SAFETY: the tasks read A and B and write disjoint row ranges of C (see `product`).
    unsafe impl Send for Operands {}
    // SAFETY: as above.
    unsafe impl Sync for Operands {}

    /// B copied into panels of [`TILE_COLUMNS`] columns, each panel's k rows one after another
    /// (the last panel's missing columns are zeros). Used where k is one block (x·W, B = the
    /// weights): every tile then reads all of B, whose rows in place lie a row of W (1 KiB)
    /// apart. Where k is longer (xᵀ·g, B = g, 3 MiB in the mlp step), copying cost more than it
    /// saved: a first, panel-by-panel copy took 0.7 ms of a 3.4 ms product on one thread.
    fn pack_panels(b: ArrayView2<'_, f32>) -> Vec<f32> {
        let (k, n) = b.dim();
        let panels = n.div_ceil(TILE_COLUMNS);
        let mut packed = vec![0f32; panels * k * TILE_COLUMNS];
        for (kk, row) in b.rows().into_iter().enumerate() {
            let row = row.to_slice().expect("B's rows are contiguous (checked)");
            for (p, src) in row.chunks(TILE_COLUMNS).enumerate() {
                let at = (p * k + kk) * TILE_COLUMNS;
                packed[at..at + src.len()].copy_from_slice(src);
            }
        }
        packed
    }

    pub(super) fn product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
        let ((m, k), n) = (a.dim(), b.ncols());
        let packed = (k <= KC).then(|| pack_panels(b));
        let (b_at, b_row, b_panel) = match &packed {
            Some(p) => (
                p.as_ptr(),
                TILE_COLUMNS as isize,
                (k * TILE_COLUMNS) as isize,
            ),
            None => (b.as_ptr(), b.strides()[0], TILE_COLUMNS as isize),
        };
        let mut out = Vec::<f32>::with_capacity(m * n);
        let ops = Operands {
            a: a.as_ptr(),
            a_rows: a.strides()[0],
            a_cols: a.strides()[1],
            b: b_at,
            b_row,
            b_panel,
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

    /// Rows of C per rayon task. With more than one k block (the weight gradient xᵀ·g, k = the
    /// step rows, m = 256), one run of whole tiles per thread: the fewest tasks that keep every
    /// thread busy. With one block, [`TASK_ROWS`]. Each output still belongs to one task, so the
    /// bits do not depend on the split.
    fn task_rows_for(m: usize, k: usize, threads: usize) -> usize {
        if k <= KC {
            return TASK_ROWS;
        }
        let tiles = m.div_ceil(TILE_ROWS);
        tiles.div_ceil(threads.max(1)).max(1) * TILE_ROWS
    }

    /// Where a tile reads A: element (r, k) of the tile at `a + r·rows + k·cols`.
    #[derive(Clone, Copy)]
    struct TileA {
        a: *const f32,
        rows: isize,
        cols: isize,
    }

    /// Rows of B's panel ahead of the one being read that a tile asks L1 to fetch: the panels
    /// stream from L2, and the hardware's own prefetch leaves the loads waiting.
    const B_PREFETCH_ROWS: isize = 8;

    /// One tile's rows of A over the k block `k0..k0 + kc`, copied into `out` k by k, each k's
    /// [`TILE_ROWS`] values one after another (past a partial tile's last row, whatever an
    /// earlier tile left there), so that the tile reads one contiguous run per k. Used where
    /// A's rows are adjacent in memory (the transposed view in xᵀ·g): read in place, the
    /// values for one k lie a row of x (1 KiB) from the next k's, so the block's 256 lines
    /// fall into 4 of L1's 64 sets and each comes again from L2 for every panel of B.
    ///
    /// # Safety
    /// See [`product`] for the addresses; A's rows are adjacent (`a_rows` = 1), and the tile's
    /// rows `i0..i0 + height` and the k block lie inside A.
    unsafe fn pack_tile(
        ops: &Operands,
        (i0, height): (usize, usize),
        (k0, kc): (usize, usize),
        out: &mut [f32; KC * TILE_ROWS],
    ) {
        debug_assert_eq!(ops.a_rows, 1);
        for (kk, out) in (k0..k0 + kc).zip(out.chunks_exact_mut(TILE_ROWS)) {
            let from = ops
                .a
                .wrapping_offset(i0 as isize + kk as isize * ops.a_cols);
            if height == TILE_ROWS {
                // A whole tile: a copy of fixed length, three vector moves rather than a call
                // to memcpy per k.
                // SAFETY: rows i0..i0 + TILE_ROWS of column kk lie inside A, adjacent.
                let src = unsafe { &*from.cast::<[f32; TILE_ROWS]>() };
                out.copy_from_slice(src);
            } else {
                // SAFETY: rows i0..i0 + height of column kk lie inside A, adjacent.
                let src = unsafe { std::slice::from_raw_parts(from, height) };
                // Rows past `height` keep stale values: a partial tile reads only its own rows.
                out[..height].copy_from_slice(src);
            }
        }
    }

    /// Rows `rows` of C, k block by k block, and within a block tile by tile: each tile's
    /// rows of A (packed by [`pack_tile`] where they are adjacent) stay in L1 while the tile
    /// runs over every panel of B, which streams from L2 in order.
    ///
    /// # Safety
    /// AVX-512F is present; see [`product`] for the addresses.
    #[target_feature(enable = "avx512f")]
    unsafe fn task_rows(ops: &Operands, rows: std::ops::Range<usize>) {
        // Only a task that packs sets the 12 KiB buffer up (x·W's 64 tasks per product do not).
        let mut buffer = if ops.a_rows == 1 {
            Some([0f32; KC * TILE_ROWS])
        } else {
            None
        };
        let pack = buffer.is_some();
        for k0 in (0..ops.k).step_by(KC) {
            let kc = KC.min(ops.k - k0);
            let first = k0 == 0;
            for i0 in rows.clone().step_by(TILE_ROWS) {
                let height = TILE_ROWS.min(rows.end - i0);
                let a = if let Some(packed) = buffer.as_mut() {
                    // SAFETY: as for this function; A's rows are adjacent.
                    unsafe { pack_tile(ops, (i0, height), (k0, kc), packed) };
                    TileA {
                        a: packed.as_ptr(),
                        rows: 1,
                        cols: TILE_ROWS as isize,
                    }
                } else {
                    TileA {
                        a: ops
                            .a
                            .wrapping_offset(i0 as isize * ops.a_rows + k0 as isize * ops.a_cols),
                        rows: ops.a_rows,
                        cols: ops.a_cols,
                    }
                };
                for j0 in (0..ops.n).step_by(TILE_COLUMNS) {
                    let masks = lane_masks(ops.n - j0);
                    let at = (i0, j0, k0, kc);
                    // SAFETY: as for this function; the tile's rows and columns lie inside C.
                    unsafe {
                        match (height, pack) {
                            (12, true) => tile::<12, true>(ops, a, at, masks, first),
                            (12, false) => tile::<12, false>(ops, a, at, masks, first),
                            (11, _) => tile::<11, false>(ops, a, at, masks, first),
                            (10, _) => tile::<10, false>(ops, a, at, masks, first),
                            (9, _) => tile::<9, false>(ops, a, at, masks, first),
                            (8, _) => tile::<8, false>(ops, a, at, masks, first),
                            (7, _) => tile::<7, false>(ops, a, at, masks, first),
                            (6, _) => tile::<6, false>(ops, a, at, masks, first),
                            (5, _) => tile::<5, false>(ops, a, at, masks, first),
                            (4, _) => tile::<4, false>(ops, a, at, masks, first),
                            (3, _) => tile::<3, false>(ops, a, at, masks, first),
                            (2, _) => tile::<2, false>(ops, a, at, masks, first),
                            _ => tile::<1, false>(ops, a, at, masks, first),
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
    unsafe fn tile<const R: usize, const PACKED: bool>(
        ops: &Operands,
        a: TileA,
        (i0, j0, k0, kc): (usize, usize, usize, usize),
        masks: [__mmask16; TILE_VECTORS],
        first: bool,
    ) {
        // Packed (see `pack_tile`), A's steps are constants, and the 12 loads of a k are one
        // address plus fixed offsets rather than a chain of 11 dependent additions.
        let (a_rows, a_cols) = if PACKED {
            (1, TILE_ROWS as isize)
        } else {
            (a.rows, a.cols)
        };
        let mut acc = [[_mm512_setzero_ps(); TILE_VECTORS]; R];
        // SAFETY (the pointer arithmetic and loads): the caller's contract; masked loads do not
        // touch masked-off lanes, and prefetches never fault.
        unsafe {
            let mut a = a.a;
            let mut b = ops
                .b
                .offset(k0 as isize * ops.b_row + (j0 / TILE_COLUMNS) as isize * ops.b_panel);
            for _ in 0..kc {
                let bv: [__m512; TILE_VECTORS] = std::array::from_fn(|v| {
                    _mm512_maskz_loadu_ps(masks[v], b.wrapping_add(16 * v))
                });
                for v in 0..TILE_VECTORS {
                    _mm_prefetch::<_MM_HINT_T0>(
                        b.wrapping_offset(B_PREFETCH_ROWS * ops.b_row + 16 * v as isize)
                            .cast(),
                    );
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.offset(r as isize * a_rows));
                    for v in 0..TILE_VECTORS {
                        acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
                    }
                }
                // Wrapping: after the block's last k these point past the operands, unread.
                a = a.wrapping_offset(a_cols);
                b = b.wrapping_offset(ops.b_row);
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
            // B's rows in reverse (a negative row stride), read in place or packed alike.
            let reversed = wide.slice(s![..;-1, ..n]);
            same_bits(
                &product(x.view(), reversed).expect("AVX-512 kernel"),
                &sgemm_product(x.view(), reversed),
                &format!("x·B, B's rows reversed, {label}"),
            );
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
