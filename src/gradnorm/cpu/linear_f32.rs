//! The linear head with f32 sums ([`Accumulation::F32`]): the opt-in fast form of
//! [`super::linear`].
//!
//! The two passes are those of the f64 engine, but the per-element work is f32:
//! - **row pass**: each row's dot product with w and its squared norm, as fused f32
//!   multiply-adds over [`UNIT`] lanes (two AVX2 registers), folded pairwise;
//! - **column pass**: g = Σ r_j h_j and u = Σ (r_j − r̄) h_j per column, fused f32 sums over the
//!   rows in order, then ‖g‖² and ‖u‖² over [`NORM_LANES`] fused f32 lanes. u is summed directly,
//!   not formed as g − r̄ s, so that the centred norm never cancels against g.
//!
//! An AVX2 instruction then handles eight elements instead of four, and nothing is widened to
//! f64 per element. What happens once per step (σ(z), the loss, the residuals) stays in f64,
//! through the f64 engine's own code, with two exceptions: the loss takes its logarithm once per
//! rollout rather than once per step ([`ProductLoss`]), and e_j = exp(−|z_j|) comes from
//! [`super::exp`], four steps per instruction, rather than from the C library.
//!
//! **Lane order.** Columns are taken sixteen at a time (a *unit*). A bf16 unit is loaded as one
//! 32-byte vector and split into its even and its odd columns by a shift and a mask, which
//! costs a third of widening eight at a time; lane L of the unit then holds column
//! [`Elem::UNIT_ORDER`]`[L]`. f32 units are in column order. w is stored in the same lane order
//! ([`lane_order_weights`]), so the row pass needs no shuffle, and the portable build follows the
//! same order.
//!
//! The order of every operation is fixed and the portable build uses `f32::mul_add` where the
//! AVX2 build fuses, so the results are the same bits on every CPU and thread count, though not
//! the f64 engine's bits. How far they may stray from the f64 engine is bounded in the tests
//! (the γₙ bounds of floating-point sums, Higham, *Accuracy and Stability of Numerical
//! Algorithms*, ch. 3).
//!
//! [`Accumulation::F32`]: crate::gradnorm::Accumulation::F32

#[cfg(target_arch = "x86_64")]
use super::exp::exps_avx2;
use super::exp::exps_portable;
#[cfg(target_arch = "x86_64")]
use super::linear::{Avx2, RowLanes, rollout_with_avx2, rollout_with_avx512, rows_avx2};
use super::linear::{Engine, LossSum, Passes, Portable, StepSums, prepare_grad, rollout_with};
use super::{Elem, Scratch, fold_pairwise};
use crate::gradnorm::RolloutRow;

/// Columns per unit: the lanes of one row reduction (two AVX2 registers of f32).
pub(super) const UNIT: usize = 16;

/// Lanes of ‖g‖² and ‖u‖²: two units, lane k taking unit-lane k mod 16 of the even units
/// (k < 16) or of the odd units (k ≥ 16).
const NORM_LANES: usize = 2 * UNIT;

/// w in the lane order of `E`'s units (each whole unit permuted by [`Elem::UNIT_ORDER`]; the
/// columns after the last whole unit as they are).
pub(super) fn lane_order_weights<E: Elem>(w: &[f32]) -> Vec<f32> {
    let mut out = w.to_vec();
    for (o, unit) in out.chunks_exact_mut(UNIT).zip(w.chunks_exact(UNIT)) {
        for (lane, &col) in E::UNIT_ORDER.iter().enumerate() {
            o[lane] = unit[col];
        }
    }
    out
}

/// One rollout's statistics for the linear head (w, b) with f32 sums. Arguments as
/// [`super::linear::linear_rollout`], with `lane_w` = [`lane_order_weights`] of w.
pub(super) fn linear_rollout_f32<E: Elem>(
    lane_w: &[f32],
    b: f64,
    x: &[E],
    y: &[f32],
    c: f64,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX2, FMA and AVX-512F, checked just above.
            return unsafe { rollout_with_avx512(&Avx512::new(lane_w), b, x, y, c, scratch, grad) };
        }
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { rollout_with_avx2(&Avx2::new(lane_w), b, x, y, c, scratch, grad) };
    }
    rollout_with(&Portable(lane_w), b, x, y, c, scratch, grad)
}

/// The f32-sum passes with AVX-512F registers (w in lane order): the AVX2 passes' operations
/// lane for lane, so the same bits, in half the instructions. Each 512-bit register holds two
/// of the AVX2 passes' 256-bit ones: the row pass packs the same unit of two rows
/// ([`Elem::load_unit_rows`]), the column pass two units of one row ([`Elem::load_unit_pair`]).
/// Measured on the 565k-rollout bundles in experiments/results/gradient/cpu-gradnorm-engine.md
/// (seventh session).
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx512<'w>(&'w [f32]);

#[cfg(target_arch = "x86_64")]
impl<'w> Avx512<'w> {
    /// # Safety
    /// The CPU must support AVX2, FMA and AVX-512F.
    pub(super) unsafe fn new(lane_w: &'w [f32]) -> Self {
        Avx512(lane_w)
    }
}

#[cfg(target_arch = "x86_64")]
impl<E: Elem> Passes<E> for Avx512<'_> {
    type Engine = f32;

    #[inline(always)]
    fn rows(&self, x: &[E], dots: &mut Vec<f64>, sqs: &mut Vec<f64>) {
        // SAFETY: AVX2, FMA and AVX-512F are present (an `Avx512` exists only where they are).
        unsafe { rows_avx512(x, self.0, dots, sqs) }
    }

    #[inline(always)]
    fn columns(
        &self,
        x: &[E],
        scratch: &mut Scratch,
        sums: &StepSums,
        grad: Option<&mut Vec<f64>>,
    ) -> (f64, f64) {
        // SAFETY: as in `rows`.
        unsafe { column_pass_avx512(x, &scratch.r32, &scratch.q32, sums, self.0.len(), grad) }
    }

    #[inline(always)]
    fn exps(&self, dots: &[f64], b: f64, out: &mut Vec<f64>) {
        // SAFETY: as in `rows`.
        unsafe { exps_avx2(dots, b, out) }
    }
}

/// The f32-sum passes, portable (w in lane order).
impl<E: Elem> Passes<E> for Portable<'_, f32> {
    type Engine = f32;

    #[inline(always)]
    fn rows(&self, x: &[E], dots: &mut Vec<f64>, sqs: &mut Vec<f64>) {
        for row in x.chunks_exact(self.0.len()) {
            let (dot, sq) = dot_and_sq(row, self.0);
            dots.push(dot as f64);
            sqs.push(sq as f64);
        }
    }

    #[inline(always)]
    fn columns(
        &self,
        x: &[E],
        scratch: &mut Scratch,
        sums: &StepSums,
        grad: Option<&mut Vec<f64>>,
    ) -> (f64, f64) {
        column_pass(x, &scratch.r32, &scratch.q32, sums, self.0.len(), grad)
    }
}

/// The f32-sum AVX2 passes (w in lane order).
#[cfg(target_arch = "x86_64")]
impl<E: Elem> Passes<E> for Avx2<'_, f32> {
    type Engine = f32;

    #[inline(always)]
    fn rows(&self, x: &[E], dots: &mut Vec<f64>, sqs: &mut Vec<f64>) {
        // SAFETY: AVX2 and FMA are present (an `Avx2` exists only where they are).
        unsafe { rows_avx2(x, self.weights(), dots, sqs) }
    }

    #[inline(always)]
    fn columns(
        &self,
        x: &[E],
        scratch: &mut Scratch,
        sums: &StepSums,
        grad: Option<&mut Vec<f64>>,
    ) -> (f64, f64) {
        // SAFETY: as in `rows`.
        unsafe {
            column_pass_avx2(
                x,
                &scratch.r32,
                &scratch.q32,
                sums,
                self.weights().len(),
                grad,
            )
        }
    }

    #[inline(always)]
    fn exps(&self, dots: &[f64], b: f64, out: &mut Vec<f64>) {
        // SAFETY: as in `rows`.
        unsafe { exps_avx2(dots, b, out) }
    }
}

/// The loss with one logarithm per rollout instead of one per step (the logarithm was a sixth of
/// the engine's time): Σ_j ln(1 + e_j) = ln Π_j (1 + e_j), the product kept as a = Π (1 + e_j) − 1
/// so that small e_j are not lost against 1. Each step sets a ← (a + e) + a e: every term is ≥ 0,
/// so nothing cancels and the relative error of a grows by at most about 2u per step (u = 2⁻⁵³);
/// since a / ((1 + a) ln(1 + a)) ≤ 1, ln(1 + a) inherits no more than that relative error. The
/// linear parts max(z, 0) − z y are ≥ 0 too and are summed apart. a at most doubles (plus one) per
/// step, so it is logged and restarted every [`super::linear::FLUSH_STEPS`] steps (a < 2⁵¹²
/// there). That logarithm goes through `ln` ([`ln_1p_nonneg`]), within 2 ulp of `ln_1p`.
#[derive(Default)]
pub(super) struct ProductLoss {
    linear: f64,
    logs: f64,
    a: f64,
}

impl LossSum for ProductLoss {
    #[inline(always)]
    fn push(&mut self, _c: f64, linear: f64, e: f64) {
        self.linear += linear;
        self.a = (self.a + e) + self.a * e;
    }

    #[inline(always)]
    fn flush(&mut self) {
        self.logs += ln_1p_nonneg(self.a);
        self.a = 0.0;
    }

    #[inline(always)]
    fn total(self, c: f64) -> f64 {
        c * (self.linear + (self.logs + ln_1p_nonneg(self.a)))
    }
}

/// ln(1 + a) for a ≥ 0 through `ln`, which costs less than `ln_1p`: u = 1 + a is rounded, and
/// its rounding error (u − 1) − a (exact while u ≤ 2) is taken back to first order.
#[inline(always)]
fn ln_1p_nonneg(a: f64) -> f64 {
    let u = 1.0 + a;
    if u == 1.0 {
        a
    } else {
        u.ln() - ((u - 1.0) - a) / u
    }
}

/// The f32-sum engine: one logarithm per rollout ([`ProductLoss`]); the column pass multiplies
/// by the f64 residuals r_j and their centred values r_j − r̄, each rounded once to f32 (into
/// `scratch.r32` and `scratch.q32`); the exponentials of [`super::exp`], the same bits in
/// every build.
impl Engine for f32 {
    type Loss = ProductLoss;

    #[inline(always)]
    fn exps(dots: &[f64], b: f64, out: &mut Vec<f64>) {
        exps_portable(dots, b, out)
    }

    #[inline(always)]
    fn before_columns(scratch: &mut Scratch, sums: &StepSums) {
        let Scratch { r, r32, q32, .. } = scratch;
        r32.clear();
        r32.extend(r.iter().map(|&v| v as f32));
        q32.clear();
        q32.extend(r.iter().map(|&v| (v - sums.r_bar) as f32));
    }
}

/// Dot product with w and squared norm of one row in f32: lane L sums column
/// `UNIT_ORDER[L]` of every whole unit in order by fused multiply-adds, the lanes are folded
/// pairwise, then the remaining columns are added in order.
#[inline(always)]
fn dot_and_sq<E: Elem>(row: &[E], lane_w: &[f32]) -> (f32, f32) {
    let mut dot = [0.0f32; UNIT];
    let mut sq = [0.0f32; UNIT];
    let mut rc = row.chunks_exact(UNIT);
    let mut wc = lane_w.chunks_exact(UNIT);
    for (unit, wl) in (&mut rc).zip(&mut wc) {
        for (lane, &col) in E::UNIT_ORDER.iter().enumerate() {
            let v = unit[col].to_f32();
            dot[lane] = v.mul_add(wl[lane], dot[lane]);
            sq[lane] = v.mul_add(v, sq[lane]);
        }
    }
    finish_dot(
        fold_pairwise(dot),
        fold_pairwise(sq),
        rc.remainder(),
        wc.remainder(),
    )
}

/// The columns after the last whole unit, added in order to the folded sums.
#[inline(always)]
fn finish_dot<E: Elem>(mut dot: f32, mut sq: f32, row: &[E], w: &[f32]) -> (f32, f32) {
    for (r, &w) in row.iter().zip(w) {
        let v = r.to_f32();
        dot = v.mul_add(w, dot);
        sq = v.mul_add(v, sq);
    }
    (dot, sq)
}

/// The f32-sum engine's row pass: one unit (sixteen columns, w in lane order) per step. The
/// column pass prefetches too (see [`sweep`]), so the row pass's distance only has to
/// cover the first rows of the next rollout.
#[cfg(target_arch = "x86_64")]
impl<E: Elem> RowLanes<E> for f32 {
    type V = std::arch::x86_64::__m256;
    const WIDTH: usize = UNIT;
    const PREFETCH_ROWS: usize = 4;

    #[inline(always)]
    unsafe fn zero() -> Self::V {
        // SAFETY: the caller guarantees AVX2.
        unsafe { std::arch::x86_64::_mm256_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn load_w(p: *const f32) -> [Self::V; 2] {
        use std::arch::x86_64::_mm256_loadu_ps;
        // SAFETY: the caller guarantees AVX2 and sixteen readable floats at `p`.
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }

    #[inline(always)]
    unsafe fn load_row(p: *const E) -> [Self::V; 2] {
        // SAFETY: the caller guarantees AVX2 and sixteen readable elements at `p`.
        let (lo, hi) = unsafe { E::load_unit(p) };
        [lo, hi]
    }

    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { std::arch::x86_64::_mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    unsafe fn finish(acc: [Self::V; 4], row: &[E], w: &[f32]) -> (f64, f64) {
        // SAFETY: the caller guarantees AVX2.
        let (dot, sq) = unsafe {
            (
                fold_unit_avx2(acc[0], acc[1]),
                fold_unit_avx2(acc[2], acc[3]),
            )
        };
        let (dot, sq) = finish_dot(dot, sq, row, w);
        (dot as f64, sq as f64)
    }
}

/// The AVX-512 row pass of the f32-sum engine: the rows two at a time, the same unit of both
/// in one pair of registers ([`Elem::load_unit_rows`]), so that each register holds the
/// AVX2 pass's sums of both rows; then an odd last row through the AVX2 pass.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_avx512<E: Elem>(x: &[E], lane_w: &[f32], dots: &mut Vec<f64>, sqs: &mut Vec<f64>) {
    let d = lane_w.len();
    let mut pairs = x.chunks_exact(2 * d);
    for both in &mut pairs {
        let (first, second) = both.split_at(d);
        // SAFETY: the caller guarantees AVX2, FMA and AVX-512F.
        let [(d0, s0), (d1, s1)] = unsafe { dot_and_sq_row_pair_avx512(first, second, lane_w) };
        dots.extend([d0, d1]);
        sqs.extend([s0, s1]);
    }
    if !pairs.remainder().is_empty() {
        // SAFETY: as above.
        unsafe { rows_avx2(pairs.remainder(), lane_w, dots, sqs) };
    }
}

/// Dot product with w and squared norm of rows `a` and `b`: lane for lane the operations of
/// the AVX2 row pass, with row `a` in the low half of each register and `b` in the high half.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_and_sq_row_pair_avx512<E: Elem>(a: &[E], b: &[E], w: &[f32]) -> [(f64, f64); 2] {
    use std::arch::x86_64::*;
    let d = w.len();
    let steps = d / UNIT;
    assert!(a.len() >= d && b.len() >= d, "row pass: short row");
    let ahead = <f32 as RowLanes<E>>::PREFETCH_ROWS * d;
    // SAFETY: AVX-512F (the caller).
    let mut acc = [unsafe { _mm512_setzero_ps() }; 4];
    for step in 0..steps {
        let at = step * UNIT;
        // SAFETY: step `step` holds UNIT elements of both rows and of `w` (step < steps, rows
        // at least d long, asserted above); AVX2, FMA and AVX-512F (the caller). A prefetch
        // never faults, so its address may run past the bundle.
        unsafe {
            // The unit's weights in both halves (the same for both rows).
            let wp = w.as_ptr().add(at) as *const f64;
            let w_first = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(wp)));
            let w_second = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(wp.add(4))));
            _mm_prefetch::<_MM_HINT_T1>(a.as_ptr().wrapping_add(at + ahead) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(b.as_ptr().wrapping_add(at + ahead) as *const i8);
            let [first, second] = E::load_unit_rows(a.as_ptr().add(at), b.as_ptr().add(at));
            acc[0] = _mm512_fmadd_ps(first, w_first, acc[0]);
            acc[1] = _mm512_fmadd_ps(second, w_second, acc[1]);
            acc[2] = _mm512_fmadd_ps(first, first, acc[2]);
            acc[3] = _mm512_fmadd_ps(second, second, acc[3]);
        }
    }
    let done = steps * UNIT;
    // SAFETY: AVX2 and AVX-512F (the caller).
    unsafe {
        // Loops, not `map`: a closure would not inherit this function's target features.
        let (mut low, mut high) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
        for k in 0..4 {
            low[k] = super::lower(acc[k]);
            high[k] = super::upper(acc[k]);
        }
        [
            <f32 as RowLanes<E>>::finish(low, &a[done..d], &w[done..]),
            <f32 as RowLanes<E>>::finish(high, &b[done..d], &w[done..]),
        ]
    }
}

/// [`fold_pairwise`] of sixteen lanes held in two registers (lanes 0–7, 8–15): the same additions.
///
/// # Safety
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fold_unit_avx2(lo: std::arch::x86_64::__m256, hi: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        let v8 = _mm256_add_ps(lo, hi); // k += k + 8
        let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8)); // + 4
        let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4)); // + 2
        let v1 = _mm_add_ss(v2, _mm_shuffle_ps::<0b01>(v2, v2)); // + 1
        _mm_cvtss_f32(v1)
    }
}

/// For one column, in f32: g = Σ_j r_j x_j and u = Σ_j (r_j − r̄) x_j, each fused from the
/// first row's product.
#[inline(always)]
fn column_sums<E: Elem>(x: &[E], r32: &[f32], q32: &[f32], d: usize, col: usize) -> (f32, f32) {
    let first = x[col].to_f32();
    let (mut g, mut u) = (r32[0] * first, q32[0] * first);
    for j in 1..r32.len() {
        let v = x[j * d + col].to_f32();
        g = r32[j].mul_add(v, g);
        u = q32[j].mul_add(v, u);
    }
    (g, u)
}

/// ‖g‖² and ‖u‖² over [`NORM_LANES`] lanes (unit t's lane L goes to norm lane
/// (t mod 2)·16 + L), folded pairwise; then the columns after the last whole unit in order.
/// With `grad`, writes (g, Σ r).
fn column_pass<E: Elem>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    sums: &StepSums,
    d: usize,
    grad: Option<&mut Vec<f64>>,
) -> (f64, f64) {
    let mut out = prepare_grad(grad, d, sums.sum_r);
    let (mut w_sq, mut centered) = ([0.0f32; NORM_LANES], [0.0f32; NORM_LANES]);
    let units = d / UNIT;
    for unit in 0..units {
        for (lane, &offset) in E::UNIT_ORDER.iter().enumerate() {
            let col = unit * UNIT + offset;
            let (g, u) = column_sums(x, r32, q32, d, col);
            let k = (unit % 2) * UNIT + lane;
            w_sq[k] = g.mul_add(g, w_sq[k]);
            centered[k] = u.mul_add(u, centered[k]);
            if let Some(out) = out.as_deref_mut() {
                out[col] = g as f64;
            }
        }
    }
    finish_columns(
        x,
        r32,
        q32,
        d,
        units * UNIT,
        out,
        fold_pairwise(w_sq),
        fold_pairwise(centered),
    )
}

/// The columns from `from` to d, one at a time in order, added to the folded sums; the
/// results widened to f64.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn finish_columns<E: Elem>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    d: usize,
    from: usize,
    mut out: Option<&mut Vec<f64>>,
    mut w_sq: f32,
    mut centered: f32,
) -> (f64, f64) {
    for col in from..d {
        let (g, u) = column_sums(x, r32, q32, d, col);
        w_sq = g.mul_add(g, w_sq);
        centered = u.mul_add(u, centered);
        if let Some(out) = out.as_deref_mut() {
            out[col] = g as f64;
        }
    }
    (w_sq as f64, centered as f64)
}

/// [`column_pass`] with AVX2 and FMA: the same operations in the same order, two units (four
/// registers, eight independent chains) per sweep over the rows.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn column_pass_avx2<E: Elem>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    sums: &StepSums,
    d: usize,
    grad: Option<&mut Vec<f64>>,
) -> (f64, f64) {
    let out = prepare_grad(grad, d, sums.sum_r);
    check_column_pass(x, r32, q32, d);
    // SAFETY: AVX2 and FMA are enabled; the lengths are checked just above.
    unsafe {
        column_tail_avx2(
            x,
            r32,
            q32,
            d,
            0,
            Norms::new(std::arch::x86_64::_mm256_setzero_ps()),
            out,
        )
    }
}

/// The column pass's length checks: at least one row, as many residuals as rows, the rows in `x`.
#[inline(always)]
fn check_column_pass<E>(x: &[E], r32: &[f32], q32: &[f32], d: usize) {
    let n = r32.len();
    assert!(
        n >= 1 && q32.len() == n && x.len() >= n * d,
        "column pass: rows and residuals disagree"
    );
}

/// The AVX2 column pass from unit `first` (even) on, added to `norms` (the units before it
/// already in), then the fold and the columns after the last whole unit.
///
/// # Safety
/// AVX2 and FMA; [`check_column_pass`] holds; `out` (when given) holds d + 1 values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn column_tail_avx2<E: Elem>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    d: usize,
    first: usize,
    mut norms: Norms,
    mut out: Option<&mut Vec<f64>>,
) -> (f64, f64) {
    let n = r32.len();
    let units = d / UNIT;
    for unit in (first..units).step_by(2) {
        let out = out.as_deref_mut().map(Vec::as_mut_slice);
        let at = Sweep {
            unit,
            prefetch: prefetch_share(x, n, d, unit, 2),
        };
        // SAFETY (both arms): AVX2 and FMA (the caller); the units read lie inside every row
        // (unit + 2 ≤ units in the first arm, unit + 1 = units in the second), rows 0..n
        // inside `x` (the caller), and `out` holds d + 1 values.
        unsafe {
            if unit + 2 <= units {
                sweep::<E, Ymm, 2, 4>(x, r32, q32, d, at, &mut norms, out);
            } else {
                sweep::<E, Ymm, 1, 4>(x, r32, q32, d, at, &mut norms, out);
            }
        }
    }
    // SAFETY: AVX2 (the caller).
    let (w_sq, centered) =
        unsafe { (fold_norm_avx2(&norms.w_sq), fold_norm_avx2(&norms.centered)) };
    finish_columns(x, r32, q32, d, units * UNIT, out, w_sq, centered)
}

/// [`column_pass_avx2`] with AVX-512F registers: the units two pairs per sweep (the last pair
/// alone when their number is odd), each pair in two registers ([`Elem::load_unit_pair`]),
/// the norm lanes in four; then an odd last unit through the AVX2 code. Lane for lane the same
/// operations in the same order, so the same bits.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn column_pass_avx512<E: Elem>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    sums: &StepSums,
    d: usize,
    grad: Option<&mut Vec<f64>>,
) -> (f64, f64) {
    let mut out = prepare_grad(grad, d, sums.sum_r);
    check_column_pass(x, r32, q32, d);
    let n = r32.len();
    let pairs = d / UNIT / 2;
    // SAFETY: AVX-512F (the caller).
    let mut norms = NormsZ::new(unsafe { std::arch::x86_64::_mm512_setzero_ps() });
    let mut pair = 0;
    while pair < pairs {
        let take = if pair + 2 <= pairs { 2 } else { 1 };
        let at = Sweep {
            unit: 2 * pair,
            prefetch: prefetch_share(x, n, d, 2 * pair, 2 * take),
        };
        let out = out.as_deref_mut().map(Vec::as_mut_slice);
        // SAFETY (both arms): AVX-512F (the caller); the pairs read lie inside every row
        // (pair + take ≤ pairs), rows 0..n inside `x` (checked above), `out` holds d + 1 values.
        unsafe {
            if take == 2 {
                sweep::<E, Zmm, 2, 2>(x, r32, q32, d, at, &mut norms, out);
            } else {
                sweep::<E, Zmm, 1, 2>(x, r32, q32, d, at, &mut norms, out);
            }
        }
        pair += take;
    }
    // SAFETY: AVX2, FMA and AVX-512F (the caller); lengths checked above.
    unsafe {
        let norms = Norms {
            w_sq: E::split_units(norms.w_sq),
            centered: E::split_units(norms.centered),
        };
        column_tail_avx2(x, r32, q32, d, 2 * pairs, norms, out)
    }
}

/// The norm lanes in AVX-512 registers, packed as [`Elem::load_unit_pair`] packs a pair of
/// units ([`Elem::split_units`] unpacks them into [`Norms`]).
#[cfg(target_arch = "x86_64")]
type NormsZ = NormLanes<std::arch::x86_64::__m512, 2>;

/// [`fold_pairwise`] of the [`NORM_LANES`] lanes held in four registers (lanes 0–7, 8–15, 16–23, 24–31),
/// in registers: the first step (k += k + 16) adds register 2 to 0 and 3 to 1, then
/// [`fold_unit_avx2`] does the rest. The same additions in the same order.
///
/// # Safety
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fold_norm_avx2(lanes: &[std::arch::x86_64::__m256; 4]) -> f32 {
    use std::arch::x86_64::_mm256_add_ps;
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        fold_unit_avx2(
            _mm256_add_ps(lanes[0], lanes[2]),
            _mm256_add_ps(lanes[1], lanes[3]),
        )
    }
}

/// The ‖g‖² and ‖u‖² lanes in `K` registers of type `V`.
#[cfg(target_arch = "x86_64")]
struct NormLanes<V, const K: usize> {
    w_sq: [V; K],
    centered: [V; K],
}

#[cfg(target_arch = "x86_64")]
impl<V: Copy, const K: usize> NormLanes<V, K> {
    fn new(zero: V) -> Self {
        NormLanes {
            w_sq: [zero; K],
            centered: [zero; K],
        }
    }
}

/// The ‖g‖² and ‖u‖² lanes in AVX2 registers: [`NORM_LANES`] = four registers of eight.
#[cfg(target_arch = "x86_64")]
type Norms = NormLanes<std::arch::x86_64::__m256, 4>;

/// Where one sweep of the column pass starts, and the bytes it prefetches.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Sweep {
    /// The first unit of the sweep (even).
    unit: usize,
    /// (start, bytes per row of the sweep): see [`prefetch_share`].
    prefetch: (*const i8, usize),
}

/// The share of the bytes after the rollout for the sweep over `units` units from unit
/// `first_unit`: the rows just past the rollout (the start of the next rollout, about as many
/// bytes as this rollout has) split evenly over the sweeps and their rows, each row of a sweep
/// taking as many bytes as the sweep reads from a row (an odd last unit takes two units'). The
/// column pass reads only what the row pass left in cache, so without this the memory would sit
/// idle while it runs. The share is fixed by the unit's size, with no division: two integer
/// divisions per sweep had cost about 4% of the engine's time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_share<E: Elem>(
    x: &[E],
    n: usize,
    d: usize,
    first_unit: usize,
    units: usize,
) -> (*const i8, usize) {
    let unit_bytes = UNIT * std::mem::size_of::<E>();
    let start =
        (x.as_ptr().wrapping_add(n * d) as *const i8).wrapping_add(first_unit * n * unit_bytes);
    (start, units * unit_bytes)
}

/// Row j's share of a sweep's prefetch ([`prefetch_share`]'s (start, bytes per row)). bf16
/// rows go into L1, f32 rows into L2: measured on the 565k-rollout bundles, L1 made bf16 1.2×
/// faster and f32 no faster (experiments/results/gradient/cpu-gradnorm-engine.md, fifth
/// session).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_row_share<E: Elem>((start, bytes): (*const i8, usize), j: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
    let into_l1 = std::mem::size_of::<E>() == 2;
    let mut b = 0;
    while b < bytes {
        let p = start.wrapping_add(j * bytes + b);
        // SAFETY (both): a prefetch never faults, so the address may lie past the bundle.
        if into_l1 {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
        } else {
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p) };
        }
        b += 64;
    }
}

/// One unit's g (its two registers in [`Elem::UNIT_ORDER`]) widened into `out[..UNIT]` in
/// column order.
///
/// # Safety
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_unit<E: Elem>(
    first: std::arch::x86_64::__m256,
    second: std::arch::x86_64::__m256,
    out: &mut [f64],
) {
    use std::arch::x86_64::_mm256_storeu_ps;
    let mut lanes = [0.0f32; UNIT];
    // SAFETY: AVX2 (the caller); `lanes` holds sixteen floats.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), first);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), second);
    }
    for (lane, &offset) in E::UNIT_ORDER.iter().enumerate() {
        out[offset] = lanes[lane] as f64;
    }
}

/// What the column pass's sweeps differ in between AVX2 and AVX-512 registers: how many
/// columns one load covers (a *group*: one unit, or a pair of units), and the register type.
#[cfg(target_arch = "x86_64")]
trait SweepRegs<E: Elem> {
    type V: Copy;
    /// Units per group.
    const UNITS: usize;

    /// # Safety
    /// The register type's CPU features.
    unsafe fn splat(v: f32) -> Self::V;
    /// a·b, rounded once.
    ///
    /// # Safety
    /// As [`Self::splat`].
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// a·b + c, fused.
    ///
    /// # Safety
    /// As [`Self::splat`].
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The group at `p` in two registers.
    ///
    /// # Safety
    /// As [`Self::splat`], and the group's elements readable at `p`.
    unsafe fn load(p: *const E) -> [Self::V; 2];
    /// A group's g widened into `out[..UNITS · UNIT]` in column order.
    ///
    /// # Safety
    /// As [`Self::splat`].
    unsafe fn store(g: [Self::V; 2], out: &mut [f64]);
}

/// AVX2 registers, one unit per group ([`Elem::load_unit`]).
#[cfg(target_arch = "x86_64")]
struct Ymm;

#[cfg(target_arch = "x86_64")]
impl<E: Elem> SweepRegs<E> for Ymm {
    type V = std::arch::x86_64::__m256;
    const UNITS: usize = 1;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self::V {
        // SAFETY: the caller guarantees AVX2.
        unsafe { std::arch::x86_64::_mm256_set1_ps(v) }
    }

    #[inline(always)]
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX2.
        unsafe { std::arch::x86_64::_mm256_mul_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { std::arch::x86_64::_mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    unsafe fn load(p: *const E) -> [Self::V; 2] {
        // SAFETY: guaranteed by the caller.
        let (first, second) = unsafe { E::load_unit(p) };
        [first, second]
    }

    #[inline(always)]
    unsafe fn store(g: [Self::V; 2], out: &mut [f64]) {
        // SAFETY: the caller guarantees AVX2.
        unsafe { store_unit::<E>(g[0], g[1], out) }
    }
}

/// AVX-512 registers, a pair of units per group ([`Elem::load_unit_pair`]).
#[cfg(target_arch = "x86_64")]
struct Zmm;

#[cfg(target_arch = "x86_64")]
impl<E: Elem> SweepRegs<E> for Zmm {
    type V = std::arch::x86_64::__m512;
    const UNITS: usize = 2;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self::V {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { std::arch::x86_64::_mm512_set1_ps(v) }
    }

    #[inline(always)]
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { std::arch::x86_64::_mm512_mul_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { std::arch::x86_64::_mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    unsafe fn load(p: *const E) -> [Self::V; 2] {
        // SAFETY: guaranteed by the caller.
        unsafe { E::load_unit_pair(p) }
    }

    #[inline(always)]
    unsafe fn store(g: [Self::V; 2], out: &mut [f64]) {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe {
            let [a0, a1, b0, b1] = E::split_units(g);
            store_unit::<E>(a0, a1, out);
            store_unit::<E>(b0, b1, &mut out[UNIT..]);
        }
    }
}

/// g and u of the `N` groups of columns from `at.unit` (rows in order), added to the norm
/// lanes and written to `out` when given. Group k of the sweep goes to norm registers
/// 2·(k mod K/2) and the one after: with AVX2 (K = 4) the sweep's first unit to registers
/// 0–1 and its second to 2–3; with AVX-512 (K = 2) every pair to both, pairs in order. Each
/// row of the sweep (the first one included) also prefetches its share of the bytes after
/// the rollout.
///
/// # Safety
/// `R`'s CPU features and FMA; the groups lie inside every row of `x` (rows 0..r32.len()),
/// q32 is as long as r32, and `out` (when given) holds at least d values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sweep<E: Elem, R: SweepRegs<E>, const N: usize, const K: usize>(
    x: &[E],
    r32: &[f32],
    q32: &[f32],
    d: usize,
    at: Sweep,
    norms: &mut NormLanes<R::V, K>,
    out: Option<&mut [f64]>,
) {
    let base = at.unit * UNIT;
    let group = R::UNITS * UNIT;
    // SAFETY: guaranteed by the caller.
    unsafe {
        prefetch_row_share::<E>(at.prefetch, 0);
        let (r0, q0) = (R::splat(r32[0]), R::splat(q32[0]));
        let zero = R::splat(0.0);
        let mut g = [[zero; 2]; N];
        let mut u = [[zero; 2]; N];
        for k in 0..N {
            let [first, second] = R::load(x.as_ptr().add(base + k * group));
            g[k] = [R::mul(r0, first), R::mul(r0, second)];
            u[k] = [R::mul(q0, first), R::mul(q0, second)];
        }
        for j in 1..r32.len() {
            prefetch_row_share::<E>(at.prefetch, j);
            let (rj, qj) = (R::splat(r32[j]), R::splat(q32[j]));
            let row = x.as_ptr().add(j * d + base);
            for k in 0..N {
                let [first, second] = R::load(row.add(k * group));
                g[k] = [R::fmadd(rj, first, g[k][0]), R::fmadd(rj, second, g[k][1])];
                u[k] = [R::fmadd(qj, first, u[k][0]), R::fmadd(qj, second, u[k][1])];
            }
        }
        for k in 0..N {
            for h in 0..2 {
                let reg = 2 * (k % (K / 2)) + h;
                norms.w_sq[reg] = R::fmadd(g[k][h], g[k][h], norms.w_sq[reg]);
                norms.centered[reg] = R::fmadd(u[k][h], u[k][h], norms.centered[reg]);
            }
        }
        if let Some(out) = out {
            for (k, g) in g.iter().enumerate() {
                R::store(*g, &mut out[base + k * group..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use half::bf16;

    use super::*;
    use crate::gradnorm::cpu::linear::FLUSH_STEPS;
    use crate::gradnorm::cpu::linear::linear_rollout;

    fn bits(r: &RolloutRow) -> Vec<u64> {
        let mut v: Vec<u64> = r.groups.iter().map(|x| x.to_bits()).collect();
        v.extend([r.loss, r.centered, r.sum_step, r.resid_sq].map(f64::to_bits));
        v
    }

    /// Deterministic awkward values: mixed signs and magnitudes, exact in bf16 where needed.
    fn fixture(n: usize, d: usize, salt: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let w = (0..d)
            .map(|i| ((i * 31 + salt) % 13) as f32 / 40.0 - 0.15)
            .collect();
        let x = (0..n * d)
            .map(|i| ((i * 7919 + d + salt) % 101) as f32 / 17.0 - 3.0)
            .collect();
        let y = (0..n)
            .map(|j| [1.0, 0.0, 0.5, 0.8125][(j + salt) % 4])
            .collect();
        (w, x, y)
    }

    fn grad_bits(g: &[f64]) -> Vec<u64> {
        g.iter().map(|v| v.to_bits()).collect()
    }

    /// Portable, dispatched and AVX2 builds agree bit for bit, with and without the gradient.
    fn check_builds<E: Elem>(w: &[f32], x: &[E], y: &[f32], scratch: &mut Scratch) {
        let lane_w = lane_order_weights::<E>(w);
        let (b, c) = (0.1, 1.0 / y.len() as f64);
        let mut want_grad = vec![3.0; 2];
        let want = rollout_with(
            &Portable(&lane_w),
            b,
            x,
            y,
            c,
            scratch,
            Some(&mut want_grad),
        );
        let dispatched = linear_rollout_f32(&lane_w, b, x, y, c, scratch, None);
        assert_eq!(
            bits(&dispatched),
            bits(&want),
            "dispatched, n = {}",
            y.len()
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            let mut grad = Vec::new();
            // SAFETY: AVX2 and FMA are present (checked on the line above).
            let wide = unsafe {
                rollout_with_avx2(&Avx2::new(&lane_w), b, x, y, c, scratch, Some(&mut grad))
            };
            let (d, n) = (w.len(), y.len());
            assert_eq!(bits(&wide), bits(&want), "avx2, d = {d}, n = {n}");
            assert_eq!(grad_bits(&grad), grad_bits(&want_grad), "avx2 gradient");
            if std::is_x86_feature_detected!("avx512f") {
                let mut grad = vec![7.0; 3];
                // SAFETY: AVX2, FMA and AVX-512F are present (checked above).
                let widest = unsafe {
                    rollout_with_avx512(&Avx512::new(&lane_w), b, x, y, c, scratch, Some(&mut grad))
                };
                assert_eq!(bits(&widest), bits(&want), "avx-512, d = {d}, n = {n}");
                assert_eq!(grad_bits(&grad), grad_bits(&want_grad), "avx-512 gradient");
            }
        }
    }

    #[test]
    fn every_build_gives_the_same_bits() {
        let mut scratch = Scratch::default();
        // d = 5: no whole unit; 16: one unit (a sweep of one); 37, 80: an odd number of units
        // and a remainder or none; 256: the bench's width. The AVX-512 column pass takes 48 as
        // a pair and a unit, 64 as one sweep of two pairs, 96 as that and a pair alone, 112 as
        // those and a unit.
        for &d in &[5usize, 16, 37, 48, 64, 80, 96, 112, 256] {
            for &n in &[1usize, 2, 5, 8, 13] {
                let (w, x, y) = fixture(n, d, d + n);
                check_builds(&w, &x, &y, &mut scratch);
                let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                check_builds(&w, &xb, &y, &mut scratch);
            }
        }
    }

    /// The AVX-512 packings hold exactly the registers `load_unit` gives.
    #[cfg(target_arch = "x86_64")]
    fn packings_unpack_to_units<E: Elem>(v: &[E]) {
        use crate::gradnorm::cpu::{lower, upper};
        use std::arch::x86_64::{__m256, _mm256_storeu_ps};
        assert!(v.len() >= 4 * UNIT);
        let floats = |r: __m256| {
            let mut out = [0.0f32; 8];
            // SAFETY: AVX2 (the callers check AVX-512F, which implies it); `out` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), r) };
            out.map(f32::to_bits)
        };
        // SAFETY: the caller checks AVX-512F; `v` holds four units.
        unsafe {
            let p = v.as_ptr();
            let unit = |k: usize| {
                let (a, b) = E::load_unit(p.add(k * UNIT));
                [floats(a), floats(b)]
            };
            let pair = E::split_units(E::load_unit_pair(p)).map(floats);
            assert_eq!(
                pair,
                [unit(0)[0], unit(0)[1], unit(1)[0], unit(1)[1]],
                "unit pair"
            );
            let rows = E::load_unit_rows(p.add(UNIT), p.add(3 * UNIT));
            for (h, reg) in rows.into_iter().enumerate() {
                assert_eq!(floats(lower(reg)), unit(1)[h], "first row, register {h}");
                assert_eq!(floats(upper(reg)), unit(3)[h], "second row, register {h}");
            }
        }
    }

    #[test]
    fn avx512_packings_hold_the_avx2_registers() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            let v: Vec<f32> = (0..4 * UNIT).map(|i| i as f32 * 0.5 - 7.0).collect();
            packings_unpack_to_units(&v);
            let vb: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            packings_unpack_to_units(&vb);
        }
    }

    #[test]
    fn bf16_units_are_read_in_their_lane_order() {
        // A unit whose column c holds c + 1: the lanes must come out in UNIT_ORDER.
        let unit: Vec<bf16> = (0..UNIT).map(|c| bf16::from_f32(c as f32 + 1.0)).collect();
        let got_order = <bf16 as Elem>::UNIT_ORDER;
        let mut sorted = got_order;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            std::array::from_fn(|k| k),
            "a permutation of the unit"
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present and `unit` holds sixteen values.
            let lanes = unsafe {
                use std::arch::x86_64::{_mm256_storeu_ps, _mm256_storeu_ps as store};
                let (lo, hi) = <bf16 as Elem>::load_unit(unit.as_ptr());
                let mut out = [0.0f32; UNIT];
                _mm256_storeu_ps(out.as_mut_ptr(), lo);
                store(out.as_mut_ptr().add(8), hi);
                out
            };
            let want: Vec<f32> = got_order.iter().map(|&c| c as f32 + 1.0).collect();
            assert_eq!(lanes.to_vec(), want);
        }
        let w: Vec<f32> = (0..20).map(|c| c as f32).collect();
        let lane_w = lane_order_weights::<bf16>(&w);
        assert_eq!(lane_w[..UNIT], got_order.map(|c| c as f32));
        assert_eq!(
            lane_w[UNIT..],
            w[UNIT..],
            "columns after the last unit keep their order"
        );
    }

    /// γ_k = k u / (1 − k u), u = 2⁻²⁴: the relative bound of a k-term f32 sum.
    fn gamma(k: usize) -> f64 {
        let ku = k as f64 * f32::EPSILON as f64 / 2.0;
        ku / (1.0 - ku)
    }

    /// Per-statistic bounds of |f32 sums − f64 engine| derived from the γ bounds of each sum,
    /// with |Δr_j| ≤ c |Δz_j| / 4 (σ' ≤ 1/4) and the loss's slope |σ − y| ≤ 1. Order:
    /// w_sq, b_sq, loss, centered, sum_step, resid_sq.
    fn bounds<E: Elem>(w: &[f32], x: &[E], y: &[f32], c: f64, r: &[f64]) -> [f64; 6] {
        let (d, n) = (w.len(), y.len());
        let m = d / UNIT + 4 + d % UNIT; // terms along one lane's chain, fold included
        let row = |j: usize| &x[j * d..(j + 1) * d];
        let dz: Vec<f64> = (0..n)
            .map(|j| {
                let abs: f64 = row(j)
                    .iter()
                    .zip(w)
                    .map(|(v, w)| (v.to_f32() * w).abs() as f64)
                    .sum();
                gamma(m) * abs + 1e-6 * f32::EPSILON as f64 * abs
            })
            .collect();
        let dsq: Vec<f64> = (0..n)
            .map(|j| {
                gamma(m)
                    * row(j)
                        .iter()
                        .map(|v| (v.to_f32() as f64).powi(2))
                        .sum::<f64>()
            })
            .collect();
        let dr: Vec<f64> = dz.iter().map(|e| c * e / 4.0).collect();
        let r_bar = r.iter().sum::<f64>() / n as f64;
        let dr_bar = dr.iter().sum::<f64>() / n as f64;
        let u32_ = f32::EPSILON as f64 / 2.0;
        // Column k of g: rounding of r_j to f32 and of the n-term fused sum, plus Δr.
        let norm_err = |mult: &dyn Fn(usize) -> (f64, f64)| -> f64 {
            let (mut total, mut exact_sq) = (0.0, 0.0);
            for k in 0..d {
                let (mut v, mut abs, mut err) = (0.0, 0.0, 0.0);
                for j in 0..n {
                    let (m_j, dm_j) = mult(j);
                    let h = x[j * d + k].to_f32() as f64;
                    v += m_j * h;
                    abs += m_j.abs() * h.abs();
                    err += dm_j * h.abs();
                }
                let e = err + (u32_ + gamma(n + 1)) * (abs + err);
                total += 2.0 * v.abs() * e + e * e;
                exact_sq += (v.abs() + e).powi(2);
            }
            total + gamma(d / NORM_LANES + 6 + d % UNIT) * exact_sq
        };
        let w_sq = norm_err(&|j| (r[j], dr[j]));
        let centered = norm_err(&|j| (r[j] - r_bar, dr[j] + dr_bar));
        let sum_r: f64 = r.iter().sum();
        let dsum: f64 = dr.iter().sum();
        let b_sq = 2.0 * sum_r.abs() * dsum + dsum * dsum;
        let loss = c * dz.iter().sum::<f64>();
        let resid_sq: f64 = (0..n)
            .map(|j| 2.0 * r[j].abs() * dr[j] + dr[j] * dr[j])
            .sum();
        let sq64 = |j: usize| {
            row(j)
                .iter()
                .map(|v| (v.to_f32() as f64).powi(2))
                .sum::<f64>()
        };
        let sum_step: f64 = (0..n)
            .map(|j| {
                (2.0 * r[j].abs() * dr[j] + dr[j] * dr[j]) * (sq64(j) + dsq[j] + 1.0)
                    + r[j] * r[j] * dsq[j]
            })
            .sum();
        [w_sq, b_sq, loss, centered, sum_step, resid_sq]
    }

    fn stats(r: &RolloutRow) -> [f64; 6] {
        [
            r.groups[0],
            r.groups[1],
            r.loss,
            r.centered,
            r.sum_step,
            r.resid_sq,
        ]
    }

    /// The largest ratio |f32 sums − f64 engine| / bound over the statistics (≤ 1 within).
    fn worst_ratio<E: Elem>(w: &[f32], x_f32_sums: &[E], x_truth: &[E], y: &[f32]) -> f64 {
        let d = w.len();
        let (b, c) = (0.1, 1.0 / y.len() as f64);
        let mut scratch = Scratch::default();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let truth = linear_rollout(&w64, b, x_truth, y, c, &mut scratch, None);
        let r = scratch.r.clone();
        let got = linear_rollout_f32(
            &lane_order_weights::<E>(w),
            b,
            x_f32_sums,
            y,
            c,
            &mut scratch,
            None,
        );
        let mut bound = bounds(w, x_truth, y, c, &r);
        // ProductLoss: ≤ 2u relative per step on the logarithms, u on each of the linear sums.
        bound[2] += (2 * y.len() + 4) as f64 * (f64::EPSILON / 2.0) * truth.loss.abs();
        let slack = 1e-12;
        stats(&got)
            .iter()
            .zip(stats(&truth))
            .zip(bound)
            .map(|((g, t), e)| (g - t).abs() / (e + slack * t.abs() + f64::MIN_POSITIVE))
            .fold(0.0, f64::max)
            .max(if d == 0 { f64::INFINITY } else { 0.0 })
    }

    #[test]
    fn f32_sums_stay_within_their_derived_bound_of_the_f64_engine() {
        for &d in &[37usize, 256, 4096] {
            for &n in &[1usize, 3, 9] {
                let (w, x, y) = fixture(n, d, 7 * d + n);
                let ratio = worst_ratio(&w, &x, &x, &y);
                assert!(
                    ratio <= 1.0,
                    "f32, d = {d}, n = {n}: {ratio:.3} of the bound"
                );
                let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                let ratio = worst_ratio(&w, &xb, &xb, &y);
                assert!(
                    ratio <= 1.0,
                    "bf16, d = {d}, n = {n}: {ratio:.3} of the bound"
                );
            }
        }
    }

    #[test]
    fn the_bound_catches_one_dropped_column() {
        // Negative control: the f32 sums over features with one column zeroed, against the
        // f64 engine on the intact features. A bound that let this pass could not tell a
        // dropped column (the failure the 1e-2 tolerance of the CUDA check used to miss).
        for &d in &[256usize, 4096] {
            let (w, x, y) = fixture(5, d, 3);
            let mut dropped = x.clone();
            for j in 0..5 {
                dropped[j * d + d / 3] = 0.0;
            }
            let ratio = worst_ratio(&w, &dropped, &x, &y);
            assert!(
                ratio > 1.0,
                "d = {d}: a dropped column stayed within the bound ({ratio:.3})"
            );
        }
    }

    /// The stepwise sum Σ ln(1 + e_j) the product replaces, in f64.
    fn stepwise_logs(e: &[f64]) -> f64 {
        e.iter().map(|v| v.ln_1p()).sum()
    }

    /// The product as `residuals` drives it: flushed before every FLUSH_STEPS-th step.
    fn product_logs(e: &[f64]) -> f64 {
        let mut loss = ProductLoss::default();
        for (j, &v) in e.iter().enumerate() {
            if j > 0 && j % FLUSH_STEPS == 0 {
                loss.flush();
            }
            loss.push(1.0, 0.0, v);
        }
        loss.total(1.0)
    }

    #[test]
    fn one_logarithm_per_rollout_matches_one_per_step() {
        let u = f64::EPSILON / 2.0;
        let cases: Vec<Vec<f64>> = vec![
            vec![],
            vec![1.0],
            vec![1e-300, 1e-20, 3e-17],
            vec![0.5, 1e-12, 0.25, 1.0, 1e-8, 0.75],
            (0..40).map(|j| (-(j as f64) / 3.0).exp()).collect(),
            // 3000 × e = 1: the product is logged in pieces of FLUSH_STEPS steps (one piece
            // alone would overflow).
            vec![1.0; 3000],
        ];
        for e in &cases {
            let (got, want) = (product_logs(e), stepwise_logs(e));
            // Derived: ≤ 2u relative per step for the product, plus the final logarithm, against
            // ≤ (n + 1) u for the stepwise sum of positive terms.
            let bound = (3 * e.len() + 4) as f64 * u * want;
            assert!(
                (got - want).abs() <= bound,
                "{} steps: {got:e} vs {want:e}",
                e.len()
            );
        }
        // Negative control: the product formed as Π (1 + e) instead of Π (1 + e) − 1 loses
        // every e below u, and the same check rejects it.
        let tiny = [1e-20, 3e-17];
        let naive: f64 = tiny.iter().map(|v| 1.0 + v).product::<f64>().ln();
        let want = stepwise_logs(&tiny);
        assert!((naive - want).abs() > (3 * tiny.len() + 4) as f64 * u * want);
    }

    #[test]
    fn the_logarithm_through_ln_stays_within_two_ulp_of_ln_1p() {
        let mut a = vec![
            0.0,
            1e-300,
            f64::EPSILON / 4.0,
            f64::EPSILON,
            0.5,
            1.0,
            2.0,
            1e300,
        ];
        let mut v = 1e-30;
        while v < 1e160 {
            a.push(v);
            v *= 1.003_1;
        }
        a.extend((1..20_000).map(|i| i as f64 * 1e-4));
        for &x in &a {
            let (got, want) = (ln_1p_nonneg(x), x.ln_1p());
            let ulps = got.to_bits().abs_diff(want.to_bits());
            assert!(
                ulps <= 2,
                "ln(1 + {x:e}): {got:e} against {want:e}, {ulps} ulp"
            );
        }
        // Negative control: ln(1 + a) without the correction misses by far more near a = u.
        let x = 3.0 * f64::EPSILON / 4.0;
        let plain = (1.0 + x).ln();
        assert!(plain.to_bits().abs_diff(x.ln_1p().to_bits()) > 2);
    }
}
