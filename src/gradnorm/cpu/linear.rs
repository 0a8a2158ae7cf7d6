//! The linear head's per-rollout statistics on the CPU, in two passes over the rollout's rows.
//!
//! 1. **Row pass**: each row's dot product with w and its squared norm, f64 sums over
//!    [`LANES`] interleaved partial sums. On AVX2 + FMA CPUs two rows run side by side, so the
//!    eight independent addition chains hide the floating-point latency that one row alone
//!    would wait on. The products are of f32 (or bf16) values widened to f64, so they are exact
//!    and a fused multiply-add rounds exactly as a product followed by an addition.
//! 2. **Column pass**: g = Σ r_j h_j and s = Σ h_j, eight columns at a time in registers, rows
//!    in order; each column block is folded into ‖g‖² and ‖g − r̄ s‖² at once, so neither g
//!    nor s is ever stored unless the caller asks for the gradient itself.
//!
//! The rollout's rows are read from memory once (row pass); the column pass finds them in
//! cache. Every addition happens in the order of the plain row-by-row form (kept in the tests as
//! the reference), so results are the same bits on every CPU and for every thread count.
//!
//! The f32-sum engine ([`super::linear_f32`]) runs through the same driver, [`rollout_with`]:
//! each build (portable or AVX2) of an engine supplies its two passes ([`Passes`]), and each
//! engine how it sums the loss and what its column pass needs ([`Engine`]); the residuals and
//! per-step sums between the passes are shared, and so is the AVX2 row loop ([`rows_avx2`],
//! with what differs in [`RowLanes`]).

use super::{Elem, Scratch, fold_pairwise};
use crate::gradnorm::RolloutRow;
use crate::logistic::sigmoid_and_linear_part;

/// Independent partial sums per reduction (two AVX2 registers of f64). The sums are combined
/// in a fixed order, so the result never varies.
const LANES: usize = 8;

/// One rollout's statistics for the linear head (w, b); `w64` is w widened to f64 once per run.
/// `x`: [n, d] rows; `y`: n targets; `c`: the reduction's weight. With `grad`, the flattened
/// gradient (g, Σ r) is written there.
pub(super) fn linear_rollout<E: Elem>(
    w64: &[f64],
    b: f64,
    x: &[E],
    y: &[f32],
    c: f64,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { rollout_with_avx2(&Avx2::new(w64), b, x, y, c, scratch, grad) };
    }
    rollout_with(&Portable(w64), b, x, y, c, scratch, grad)
}

/// One build (portable or AVX2) of a linear-head engine's two element passes. Every engine and
/// build runs them through [`rollout_with`], which does the per-step work between them.
pub(super) trait Passes<E: Elem> {
    /// The engine these passes belong to.
    type Engine: Engine;
    /// Appends each row's dot product with w to `dots` and its squared norm to `sqs`.
    fn rows(&self, x: &[E], dots: &mut Vec<f64>, sqs: &mut Vec<f64>);
    /// (‖g‖², ‖g − r̄ s‖²) from the residuals in `scratch.r`; with `grad`, writes (g, Σ r).
    fn columns(
        &self,
        x: &[E],
        scratch: &mut Scratch,
        sums: &StepSums,
        grad: Option<&mut Vec<f64>>,
    ) -> (f64, f64);
    /// `out` ← e_j = exp(−|dot_j + b|) for every row, as the engine computes exponentials.
    #[inline(always)]
    fn exps(&self, dots: &[f64], b: f64, out: &mut Vec<f64>) {
        <Self::Engine as Engine>::exps(dots, b, out)
    }
}

/// What an engine fixes whatever its build (portable or AVX2). Engines are named by the type
/// of their weights: f64 for the f64 engine, f32 for the f32-sum engine.
pub(super) trait Engine {
    /// How the engine sums the loss.
    type Loss: LossSum;
    /// Readies whatever the column pass needs besides the residuals in `scratch.r`.
    #[inline(always)]
    fn before_columns(_scratch: &mut Scratch, _sums: &StepSums) {}
    /// `out` ← e_j = exp(−|dot_j + b|) for every row, by the C library's `exp`.
    #[inline(always)]
    fn exps(dots: &[f64], b: f64, out: &mut Vec<f64>) {
        out.clear();
        out.extend(dots.iter().map(|&dot| (-(dot + b).abs()).exp()));
    }
}

/// The f64 engine: the loss summed step by step; the column pass reads the f64 residuals; the
/// C library's exponentials.
impl Engine for f64 {
    type Loss = StepwiseLoss;
}

/// One rollout through `passes`: the row pass, the residuals and per-step sums, the column pass.
/// Arguments as [`linear_rollout`].
#[inline(always)]
pub(super) fn rollout_with<E: Elem, P: Passes<E>>(
    passes: &P,
    b: f64,
    x: &[E],
    y: &[f32],
    c: f64,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    scratch.a.clear();
    scratch.b.clear();
    passes.rows(x, &mut scratch.a, &mut scratch.b);
    passes.exps(&scratch.a, b, &mut scratch.c);
    let sums = residuals::<<P::Engine as Engine>::Loss>(
        &scratch.a,
        &scratch.b,
        &scratch.c,
        y,
        b,
        c,
        &mut scratch.r,
    );
    P::Engine::before_columns(scratch, &sums);
    let (w_sq, centered) = passes.columns(x, scratch, &sums, grad);
    sums.finish(w_sq, centered)
}

/// Defines `$name`: [`rollout_with`] compiled with the target features `$features`, so that
/// passes written for them inline into it. One definition per feature set; the body is the same.
macro_rules! rollout_with_features {
    ($name:ident, $features:literal, $cpu:literal) => {
        #[doc = concat!("[`rollout_with`] compiled with ", $cpu, ", so that passes using them inline into it.")]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $cpu, ".")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name<E: Elem, P: Passes<E>>(
            passes: &P,
            b: f64,
            x: &[E],
            y: &[f32],
            c: f64,
            scratch: &mut Scratch,
            grad: Option<&mut Vec<f64>>,
        ) -> RolloutRow {
            rollout_with(passes, b, x, y, c, scratch, grad)
        }
    };
}

rollout_with_features!(rollout_with_avx2, "avx2,fma", "AVX2 and FMA");
rollout_with_features!(
    rollout_with_avx512,
    "avx2,fma,avx512f",
    "AVX2, FMA and AVX-512F"
);

/// What the engines' AVX2 row passes differ in; [`rows_avx2`] is the loop they share. A row
/// is read [`Self::WIDTH`] columns at a time into two registers of each of four sums (dot product
/// low and high, squared norm low and high), which [`Self::finish`] folds in the engine's order.
#[cfg(target_arch = "x86_64")]
pub(super) trait RowLanes<E: Elem>: Sized {
    /// The register type of the sums.
    type V: Copy;
    /// Columns per step of the loop.
    const WIDTH: usize;
    /// How far ahead the pass prefetches, in rows (into L2: fewer L1 miss slots held).
    const PREFETCH_ROWS: usize;

    /// # Safety
    /// AVX2.
    unsafe fn zero() -> Self::V;
    /// `WIDTH` weights from `p`.
    ///
    /// # Safety
    /// AVX2, and `WIDTH` readable weights at `p`.
    unsafe fn load_w(p: *const Self) -> [Self::V; 2];
    /// `WIDTH` elements of a row from `p`, in the same lane order as [`Self::load_w`].
    ///
    /// # Safety
    /// AVX2, and `WIDTH` readable elements at `p`.
    unsafe fn load_row(p: *const E) -> [Self::V; 2];
    /// a·b + c, fused.
    ///
    /// # Safety
    /// AVX2 and FMA.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// (dot, squared norm) from the four sums, with the columns after the last whole step
    /// (`row` and `w` hold just those) added in order.
    ///
    /// # Safety
    /// AVX2.
    unsafe fn finish(acc: [Self::V; 4], row: &[E], w: &[Self]) -> (f64, f64);
}

/// The AVX2 row pass of the engine whose weights are `w`: the rows two at a time (eight
/// independent chains of fused multiply-adds), then an odd last row alone; each row's
/// (dot, squared norm) appended in row order.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn rows_avx2<E: Elem, T: RowLanes<E>>(
    x: &[E],
    w: &[T],
    dots: &mut Vec<f64>,
    sqs: &mut Vec<f64>,
) {
    let d = w.len();
    let mut pairs = x.chunks_exact(2 * d);
    for both in &mut pairs {
        let (first, second) = both.split_at(d);
        // SAFETY: the caller guarantees AVX2 and FMA.
        let [(d0, s0), (d1, s1)] = unsafe { dot_and_sq_rows_avx2([first, second], w) };
        dots.extend([d0, d1]);
        sqs.extend([s0, s1]);
    }
    if !pairs.remainder().is_empty() {
        // SAFETY: as above.
        let [(dot, sq)] = unsafe { dot_and_sq_rows_avx2([pairs.remainder()], w) };
        dots.push(dot);
        sqs.push(sq);
    }
}

/// Dot product with w and squared norm of `R` rows at once: lane by lane as `T` lays the
/// columns out, the same operations in the same order whatever `R` is.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_and_sq_rows_avx2<E: Elem, T: RowLanes<E>, const R: usize>(
    rows: [&[E]; R],
    w: &[T],
) -> [(f64, f64); R] {
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
    let d = w.len();
    let steps = d / T::WIDTH;
    assert!(rows.iter().all(|r| r.len() >= d), "row pass: short row");
    let ahead = T::PREFETCH_ROWS * d;
    // SAFETY: AVX2 is enabled for this function.
    let mut acc = [[unsafe { T::zero() }; 4]; R];
    for step in 0..steps {
        let at = step * T::WIDTH;
        // SAFETY: step `step` holds WIDTH elements of every row and of `w` (step < steps, rows
        // at least d long, asserted above); AVX2 and FMA are enabled for this function.
        unsafe {
            let [w_lo, w_hi] = T::load_w(w.as_ptr().add(at));
            for (row, a) in rows.iter().zip(acc.iter_mut()) {
                // The rows PREFETCH_ROWS ahead (the rest of this rollout, then the next one):
                // the loop does enough work per byte that the hardware alone keeps too few
                // reads in flight. A prefetch never faults, so the address may run past the
                // bundle.
                _mm_prefetch::<_MM_HINT_T1>(row.as_ptr().wrapping_add(at + ahead) as *const i8);
                let [lo, hi] = T::load_row(row.as_ptr().add(at));
                a[0] = T::fmadd(lo, w_lo, a[0]);
                a[1] = T::fmadd(hi, w_hi, a[1]);
                a[2] = T::fmadd(lo, lo, a[2]);
                a[3] = T::fmadd(hi, hi, a[3]);
            }
        }
    }
    let done = steps * T::WIDTH;
    // A loop, not `array::from_fn`: a closure would not inherit this function's AVX2.
    let mut out = [(0.0, 0.0); R];
    for ((o, a), row) in out.iter_mut().zip(acc).zip(rows) {
        // SAFETY: AVX2 is enabled for this function.
        *o = unsafe { T::finish(a, &row[done..d], &w[done..]) };
    }
    out
}

/// An engine's weights, for its portable passes (the same operations in the same order as its
/// [`Avx2`] ones).
pub(super) struct Portable<'w, T>(pub(super) &'w [T]);

/// An engine's weights, for its AVX2 passes; built only where the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2<'w, T>(&'w [T]);

#[cfg(target_arch = "x86_64")]
impl<'w, T> Avx2<'w, T> {
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    pub(super) unsafe fn new(w: &'w [T]) -> Self {
        Avx2(w)
    }

    pub(super) fn weights(&self) -> &'w [T] {
        self.0
    }
}

/// The f64 engine's portable passes (w in f64).
impl<E: Elem> Passes<E> for Portable<'_, f64> {
    type Engine = f64;

    #[inline(always)]
    fn rows(&self, x: &[E], dots: &mut Vec<f64>, sqs: &mut Vec<f64>) {
        for row in x.chunks_exact(self.0.len()) {
            let (dot, sq) = dot_and_sq(row, self.0);
            dots.push(dot);
            sqs.push(sq);
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
        column_pass(x, &scratch.r, sums.r_bar, self.0.len(), grad, sums.sum_r)
    }
}

/// The f64 engine's AVX2 passes.
#[cfg(target_arch = "x86_64")]
impl<E: Elem> Passes<E> for Avx2<'_, f64> {
    type Engine = f64;

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
                &scratch.r,
                sums.r_bar,
                self.weights().len(),
                grad,
                sums.sum_r,
            )
        }
    }
}

/// Dot product with w and squared norm of one row, in f64 over [`LANES`] partial sums, lane k
/// summing the columns ≡ k (mod LANES) in column order; then the lanes folded and the
/// remainder columns added in order.
#[inline(always)]
fn dot_and_sq<E: Elem>(row: &[E], w: &[f64]) -> (f64, f64) {
    let mut dot = [0.0f64; LANES];
    let mut sq = [0.0f64; LANES];
    let mut rc = row.chunks_exact(LANES);
    let mut wc = w.chunks_exact(LANES);
    for (rl, wl) in (&mut rc).zip(&mut wc) {
        for k in 0..LANES {
            let v = rl[k].to_f64();
            dot[k] += v * wl[k];
            sq[k] += v * v;
        }
    }
    finish_dot(&dot, &sq, rc.remainder(), wc.remainder())
}

/// The f64 engine's row pass: eight columns per step, widened to f64.
#[cfg(target_arch = "x86_64")]
impl<E: Elem> RowLanes<E> for f64 {
    type V = std::arch::x86_64::__m256d;
    const WIDTH: usize = LANES;
    const PREFETCH_ROWS: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> Self::V {
        // SAFETY: the caller guarantees AVX2.
        unsafe { std::arch::x86_64::_mm256_setzero_pd() }
    }

    #[inline(always)]
    unsafe fn load_w(p: *const f64) -> [Self::V; 2] {
        use std::arch::x86_64::_mm256_loadu_pd;
        // SAFETY: the caller guarantees AVX2 and eight readable f64 at `p`.
        unsafe { [_mm256_loadu_pd(p), _mm256_loadu_pd(p.add(4))] }
    }

    #[inline(always)]
    unsafe fn load_row(p: *const E) -> [Self::V; 2] {
        // SAFETY: the caller guarantees AVX2 and eight readable elements at `p`.
        let (lo, hi) = unsafe { widen8(p) };
        [lo, hi]
    }

    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { std::arch::x86_64::_mm256_fmadd_pd(a, b, c) }
    }

    #[inline(always)]
    unsafe fn finish(acc: [Self::V; 4], row: &[E], w: &[f64]) -> (f64, f64) {
        // SAFETY: the caller guarantees AVX2.
        let (dot, sq) = unsafe { (spill(acc[0], acc[1]), spill(acc[2], acc[3])) };
        finish_dot(&dot, &sq, row, w)
    }
}

/// Eight consecutive elements widened to two registers of four f64.
///
/// # Safety
/// AVX2, and eight readable elements at `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn widen8<E: Elem>(p: *const E) -> (std::arch::x86_64::__m256d, std::arch::x86_64::__m256d) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX2 and eight readable elements at `p`.
    unsafe {
        let x = E::load8(p);
        (
            _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
        )
    }
}

/// The two registers' lanes as an array, low register first.
///
/// # Safety
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn spill(lo: std::arch::x86_64::__m256d, hi: std::arch::x86_64::__m256d) -> [f64; LANES] {
    use std::arch::x86_64::*;
    let mut out = [0.0f64; LANES];
    // SAFETY: `out` holds LANES = 8 f64, two unaligned 4-lane stores.
    unsafe {
        _mm256_storeu_pd(out.as_mut_ptr(), lo);
        _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
    }
    out
}

/// Folds the lane sums and adds the columns that do not fill a whole chunk.
#[inline(always)]
fn finish_dot<E: Elem>(dot: &[f64; LANES], sq: &[f64; LANES], row: &[E], w: &[f64]) -> (f64, f64) {
    let (mut d, mut s) = (fold_pairwise(*dot), fold_pairwise(*sq));
    for (r, w) in row.iter().zip(w) {
        let v = r.to_f64();
        d += v * *w;
        s += v * v;
    }
    (d, s)
}

/// The per-step sums of a rollout, accumulated in step order.
pub(super) struct StepSums {
    loss: f64,
    pub(super) sum_r: f64,
    resid_sq: f64,
    sum_step: f64,
    pub(super) r_bar: f64,
}

impl StepSums {
    pub(super) fn finish(&self, w_sq: f64, centered: f64) -> RolloutRow {
        RolloutRow {
            loss: self.loss,
            groups: [w_sq, self.sum_r * self.sum_r, 0.0, 0.0],
            centered,
            sum_step: self.sum_step,
            resid_sq: self.resid_sq,
        }
    }
}

/// How a rollout's loss Σ_j c BCE_j is summed, given each step's parts of the BCE (see
/// [`crate::logistic::sigmoid_and_bce_parts`]): c, max(z, 0) − z y and e = exp(−|z|).
pub(super) trait LossSum: Default {
    fn push(&mut self, c: f64, linear: f64, e: f64);
    /// Called after every [`FLUSH_STEPS`] steps that have more steps after them.
    #[inline(always)]
    fn flush(&mut self) {}
    fn total(self, c: f64) -> f64;
}

/// Steps between two [`LossSum::flush`]es. The loop over a chunk calls no function (the
/// residuals are written into place, and a loss that must log a running product does so between
/// chunks), so its sums stay in registers.
pub(super) const FLUSH_STEPS: usize = 512;

/// c BCE_j added step by step: the f64 engine's loss, bit for bit as before the split.
#[derive(Default)]
pub(super) struct StepwiseLoss(f64);

impl LossSum for StepwiseLoss {
    #[inline(always)]
    fn push(&mut self, c: f64, linear: f64, e: f64) {
        self.0 += c * (linear + e.ln_1p());
    }

    #[inline(always)]
    fn total(self, _c: f64) -> f64 {
        self.0
    }
}

/// The residuals r_j = c (σ(z_j) − y_j) into `r`, and the sums over steps, the loss summed as
/// `L` sums it; `exps` holds e_j = exp(−|z_j|).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn residuals<L: LossSum>(
    dots: &[f64],
    sqs: &[f64],
    exps: &[f64],
    y: &[f32],
    b: f64,
    c: f64,
    r: &mut Vec<f64>,
) -> StepSums {
    let n = y.len();
    assert!(
        dots.len() == n && sqs.len() == n && exps.len() == n,
        "residuals: steps disagree"
    );
    r.clear();
    r.resize(n, 0.0);
    let mut loss = L::default();
    let (mut sum_r, mut resid_sq, mut sum_step) = (0.0, 0.0, 0.0);
    let mut start = 0;
    while start < n {
        let end = (start + FLUSH_STEPS).min(n);
        let steps = dots[start..end]
            .iter()
            .zip(&sqs[start..end])
            .zip(&exps[start..end])
            .zip(&y[start..end])
            .zip(&mut r[start..end]);
        for ((((&dot, &sq), &e), &yj), r_out) in steps {
            let z = dot + b;
            let yj = yj as f64;
            let (p, linear) = sigmoid_and_linear_part(z, yj, e);
            let rj = c * (p - yj);
            loss.push(c, linear, e);
            sum_r += rj;
            resid_sq += rj * rj;
            sum_step += rj * rj * (sq + 1.0);
            *r_out = rj;
        }
        if end < n {
            loss.flush();
        }
        start = end;
    }
    StepSums {
        loss: loss.total(c),
        sum_r,
        resid_sq,
        sum_step,
        r_bar: sum_r / y.len() as f64,
    }
}

/// g = Σ_j r_j h_j and s = Σ_j h_j column by column (rows in order, g starting from r₀ h₀),
/// folded into (‖g‖², ‖g − r̄ s‖²) over [`LANES`] partial sums. With `grad`, writes (g, Σ r).
fn column_pass<E: Elem>(
    x: &[E],
    r: &[f64],
    r_bar: f64,
    d: usize,
    grad: Option<&mut Vec<f64>>,
    sum_r: f64,
) -> (f64, f64) {
    let mut out = prepare_grad(grad, d, sum_r);
    let (mut w_sq, mut centered) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = d / LANES;
    for cidx in 0..chunks {
        let base = cidx * LANES;
        let (mut g, mut s) = ([0.0f64; LANES], [0.0f64; LANES]);
        for k in 0..LANES {
            let v = x[base + k].to_f64();
            g[k] = r[0] * v;
            s[k] = v;
        }
        for (j, &rj) in r.iter().enumerate().skip(1) {
            let row = &x[j * d + base..j * d + base + LANES];
            for k in 0..LANES {
                let v = row[k].to_f64();
                g[k] += rj * v;
                s[k] += v;
            }
        }
        for k in 0..LANES {
            w_sq[k] += g[k] * g[k];
            let t = g[k] - r_bar * s[k];
            centered[k] += t * t;
        }
        if let Some(out) = out.as_deref_mut() {
            out[base..base + LANES].copy_from_slice(&g);
        }
    }
    let (w_sq, centered) = (fold_pairwise(w_sq), fold_pairwise(centered));
    remainder_columns(x, r, r_bar, d, chunks * LANES, out, (w_sq, centered))
}

/// [`column_pass`] with AVX2: the same operations in the same order (no fused multiply-add
/// here: r_j h_j is not exact).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn column_pass_avx2<E: Elem>(
    x: &[E],
    r: &[f64],
    r_bar: f64,
    d: usize,
    grad: Option<&mut Vec<f64>>,
    sum_r: f64,
) -> (f64, f64) {
    use std::arch::x86_64::*;
    let mut out = prepare_grad(grad, d, sum_r);
    let n = r.len();
    assert!(
        n >= 1 && x.len() >= n * d,
        "column pass: rows and residuals disagree"
    );
    let z = _mm256_setzero_pd();
    let (mut wsq_lo, mut wsq_hi, mut cen_lo, mut cen_hi) = (z, z, z, z);
    let rb = _mm256_set1_pd(r_bar);
    let chunks = d / LANES;
    // Two column blocks per sweep over the rows: four independent addition chains for g (and
    // four for s) instead of two, so the sweep is not bound by the adder's latency. The blocks
    // are folded into the lane sums in column order, as in the portable form.
    let mut cidx = 0;
    while cidx < chunks {
        let pair = cidx + 1 < chunks;
        let (base0, base1) = (cidx * LANES, (cidx + pair as usize) * LANES);
        // SAFETY: row j's columns base..base + LANES lie inside `x` (base + LANES ≤ d and
        // j < n with n·d ≤ x.len(), asserted above); AVX2 is enabled for this function.
        unsafe {
            let r0 = _mm256_set1_pd(r[0]);
            let (a_lo, a_hi) = widen8(x.as_ptr().add(base0));
            let (b_lo, b_hi) = widen8(x.as_ptr().add(base1));
            let mut g = [
                _mm256_mul_pd(r0, a_lo),
                _mm256_mul_pd(r0, a_hi),
                _mm256_mul_pd(r0, b_lo),
                _mm256_mul_pd(r0, b_hi),
            ];
            let mut sv = [a_lo, a_hi, b_lo, b_hi];
            for (j, &rj) in r.iter().enumerate().skip(1) {
                let (a_lo, a_hi) = widen8(x.as_ptr().add(j * d + base0));
                let (b_lo, b_hi) = widen8(x.as_ptr().add(j * d + base1));
                let rj = _mm256_set1_pd(rj);
                for (k, v) in [a_lo, a_hi, b_lo, b_hi].into_iter().enumerate() {
                    g[k] = _mm256_add_pd(g[k], _mm256_mul_pd(rj, v));
                    sv[k] = _mm256_add_pd(sv[k], v);
                }
            }
            let blocks = if pair { 2 } else { 1 };
            for blk in 0..blocks {
                let (g_lo, g_hi) = (g[2 * blk], g[2 * blk + 1]);
                let (s_lo, s_hi) = (sv[2 * blk], sv[2 * blk + 1]);
                wsq_lo = _mm256_add_pd(wsq_lo, _mm256_mul_pd(g_lo, g_lo));
                wsq_hi = _mm256_add_pd(wsq_hi, _mm256_mul_pd(g_hi, g_hi));
                let t_lo = _mm256_sub_pd(g_lo, _mm256_mul_pd(rb, s_lo));
                let t_hi = _mm256_sub_pd(g_hi, _mm256_mul_pd(rb, s_hi));
                cen_lo = _mm256_add_pd(cen_lo, _mm256_mul_pd(t_lo, t_lo));
                cen_hi = _mm256_add_pd(cen_hi, _mm256_mul_pd(t_hi, t_hi));
                if let Some(out) = out.as_deref_mut() {
                    let base = (cidx + blk) * LANES;
                    _mm256_storeu_pd(out.as_mut_ptr().add(base), g_lo);
                    _mm256_storeu_pd(out.as_mut_ptr().add(base + 4), g_hi);
                }
            }
            cidx += blocks;
        }
    }
    // SAFETY: AVX2 is enabled for this function.
    let (w_sq, centered) = unsafe { (spill(wsq_lo, wsq_hi), spill(cen_lo, cen_hi)) };
    let (w_sq, centered) = (fold_pairwise(w_sq), fold_pairwise(centered));
    remainder_columns(x, r, r_bar, d, chunks * LANES, out, (w_sq, centered))
}

/// The gradient buffer sized (d + 1) with Σ r in its last entry, when one is wanted.
pub(super) fn prepare_grad(
    mut grad: Option<&mut Vec<f64>>,
    d: usize,
    sum_r: f64,
) -> Option<&mut Vec<f64>> {
    if let Some(out) = grad.as_deref_mut() {
        out.clear();
        out.resize(d + 1, 0.0);
        out[d] = sum_r;
    }
    grad
}

/// The columns from `from` to d, one at a time in order, added to the folded sums.
#[inline(always)]
fn remainder_columns<E: Elem>(
    x: &[E],
    r: &[f64],
    r_bar: f64,
    d: usize,
    from: usize,
    mut out: Option<&mut Vec<f64>>,
    (mut w_sq, mut centered): (f64, f64),
) -> (f64, f64) {
    for col in from..d {
        let mut g = r[0] * x[col].to_f64();
        let mut s = x[col].to_f64();
        for (j, &rj) in r.iter().enumerate().skip(1) {
            let v = x[j * d + col].to_f64();
            g += rj * v;
            s += v;
        }
        w_sq += g * g;
        let t = g - r_bar * s;
        centered += t * t;
        if let Some(out) = out.as_deref_mut() {
            out[col] = g;
        }
    }
    (w_sq, centered)
}

#[cfg(test)]
mod tests {
    use half::bf16;

    use super::*;

    /// The plain row-by-row form the two-pass engine must reproduce bit for bit: each row's
    /// dot product over LANES partial sums, then g and s updated row by row in memory.
    fn reference<E: Elem>(w: &[f32], b: f64, x: &[E], y: &[f32], c: f64) -> (RolloutRow, Vec<f64>) {
        let d = w.len();
        let (mut g, mut s) = (vec![0.0f64; d], vec![0.0f64; d]);
        let (mut loss, mut sum_r, mut resid_sq, mut sum_step) = (0.0, 0.0, 0.0, 0.0);
        for (j, &yj) in y.iter().enumerate() {
            let row = &x[j * d..(j + 1) * d];
            let (mut dot, mut sq) = ([0.0f64; LANES], [0.0f64; LANES]);
            let chunks = d / LANES;
            for cidx in 0..chunks {
                for k in 0..LANES {
                    let v = row[cidx * LANES + k].to_f64();
                    dot[k] += v * w[cidx * LANES + k] as f64;
                    sq[k] += v * v;
                }
            }
            let (mut dot, mut sq) = (fold_pairwise(dot), fold_pairwise(sq));
            for col in chunks * LANES..d {
                let v = row[col].to_f64();
                dot += v * w[col] as f64;
                sq += v * v;
            }
            let z = dot + b;
            let yj = yj as f64;
            let r = c * (crate::logistic::sigmoid(z) - yj);
            loss += c * crate::logistic::bce_with_logits(z, yj);
            sum_r += r;
            resid_sq += r * r;
            sum_step += r * r * (sq + 1.0);
            for col in 0..d {
                let v = row[col].to_f64();
                if j == 0 {
                    g[col] = r * v;
                    s[col] = v;
                } else {
                    g[col] += r * v;
                    s[col] += v;
                }
            }
        }
        let r_bar = sum_r / y.len() as f64;
        let (mut w_sq, mut centered) = ([0.0f64; LANES], [0.0f64; LANES]);
        let chunks = d / LANES;
        for cidx in 0..chunks {
            for k in 0..LANES {
                let (ge, se) = (g[cidx * LANES + k], s[cidx * LANES + k]);
                w_sq[k] += ge * ge;
                let t = ge - r_bar * se;
                centered[k] += t * t;
            }
        }
        let (mut w_sq, mut centered) = (fold_pairwise(w_sq), fold_pairwise(centered));
        for col in chunks * LANES..d {
            w_sq += g[col] * g[col];
            let t = g[col] - r_bar * s[col];
            centered += t * t;
        }
        g.push(sum_r);
        let row = RolloutRow {
            loss,
            groups: [w_sq, sum_r * sum_r, 0.0, 0.0],
            centered,
            sum_step,
            resid_sq,
        };
        (row, g)
    }

    fn bits(r: &RolloutRow) -> Vec<u64> {
        let mut v: Vec<u64> = r.groups.iter().map(|x| x.to_bits()).collect();
        v.extend([r.loss, r.centered, r.sum_step, r.resid_sq].map(f64::to_bits));
        v
    }

    fn vec_bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Every build (portable, dispatched, AVX2 + FMA) against the reference on one rollout,
    /// with and without the gradient, reusing a scratch that held another rollout.
    fn check<E: Elem + std::fmt::Debug>(w: &[f32], x: &[E], y: &[f32], stale: &mut Scratch) {
        let (b, c) = (0.1, 0.2);
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let (want, want_grad) = reference(w, b, x, y, c);
        let mut grad = vec![7.0; 3];
        let portable = rollout_with(&Portable(&w64), b, x, y, c, stale, Some(&mut grad));
        assert_eq!(bits(&portable), bits(&want), "portable, n = {}", y.len());
        assert_eq!(vec_bits(&grad), vec_bits(&want_grad), "portable gradient");
        let dispatched = linear_rollout(&w64, b, x, y, c, stale, None);
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
            let wide =
                unsafe { rollout_with_avx2(&Avx2::new(&w64), b, x, y, c, stale, Some(&mut grad)) };
            assert_eq!(bits(&wide), bits(&want), "avx2, n = {}", y.len());
            assert_eq!(vec_bits(&grad), vec_bits(&want_grad), "avx2 gradient");
        }
    }

    #[test]
    fn every_build_reproduces_the_row_by_row_form_bit_for_bit() {
        let mut stale = Scratch::default();
        // d = 37 has a remainder after the packed columns; d = 256 has none; d = 5 has no packed
        // chunk at all. Odd and even row counts exercise the unpaired last row.
        for &d in &[37usize, 256, 5] {
            let w: Vec<f32> = (0..d)
                .map(|i| ((i * 31) % 13) as f32 / 40.0 - 0.15)
                .collect();
            for &n in &[1usize, 2, 5, 8, 13] {
                let x: Vec<f32> = (0..n * d)
                    .map(|i| ((i * 7919 + d) % 101) as f32 / 17.0 - 3.0)
                    .collect();
                let y: Vec<f32> = (0..n).map(|j| [1.0, 0.0, 0.5][j % 3]).collect();
                check(&w, &x, &y, &mut stale);
                let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                check(&w, &xb, &y, &mut stale);
            }
        }
    }
}
