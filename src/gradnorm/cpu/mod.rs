//! The CPU engine: f32 or bf16 features read in place from the (memory-mapped) bundle, rayon
//! over rollouts, f64 accumulation (f32 × f32 products are exact in f64).
//!
//! Linear head ([`linear`]): each step row is read from memory once; its dot product with w and
//! its squared norm, then g = Σ r_j h_j and s = Σ h_j from the rows still in cache, so ‖g‖² and
//! the centred norm ‖g − r̄ s‖² come out of one pass over the bundle (gradient-methods §2.1,
//! §2.3). On x86-64 it uses explicit AVX2 and FMA when the CPU has them, with the same bits as
//! the portable code.
//!
//! With [`Accumulation::F32`] the linear head goes through [`linear_f32`] instead: the same two
//! passes as fused f32 sums, eight elements per instruction and nothing widened per element,
//! with the same bits on every CPU but not the f64 ones (its tests bound the difference).
//!
//! MLP head: the rollout's pre-activations U = H W₁ᵀ + b₁ in f64, then the four parameter
//! groups of §3.3, with ‖∇W₁‖² by the ghost form ⟨DDᵀ, HHᵀ⟩ or by materialising DᵀH, whichever
//! [`super::ghost_is_cheaper`] picks for the rollout's length.
//!
//! Every rollout is computed independently and the totals of [`CpuEngine::total_gradient`] are
//! reduced over fixed blocks in a fixed order, so results do not depend on the thread count.

use half::bf16;
use rayon::prelude::*;

use crate::data::features::{FeatureBundle, FeatureRows};
use crate::device::Device;
use crate::error::Result;
use crate::head::{Activation, HeadParams, LinearHead, MlpHead};
use crate::progress;

use super::sketch::{PreconditionedSketch, cosine};

use super::{
    Accumulation, GradInput, GradNormEngine, ProjectionMatrix, Reduction, RolloutGradStats,
    RolloutRow, StatColumns, ghost_is_cheaper,
};
use crate::logistic::{bce_with_logits, sigmoid};

mod exp;
mod linear;
mod linear_f32;
use linear::linear_rollout;
use linear_f32::linear_rollout_f32;

/// The CPU implementation of [`GradNormEngine`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuEngine;

/// A feature element the CPU engine can read.
trait Elem: Copy + Send + Sync {
    fn to_f32(self) -> f32;

    /// Eight consecutive elements widened to f32 lanes.
    ///
    /// # Safety
    /// The CPU must support AVX2 and `p` must point at eight readable elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;

    /// The column of lane L of a sixteen-column unit as [`Self::load_unit`] lays it out
    /// (lanes 0–7 in the first register, 8–15 in the second).
    const UNIT_ORDER: [usize; linear_f32::UNIT];

    /// Sixteen consecutive elements as f32 in two registers, in [`Self::UNIT_ORDER`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and `p` must point at sixteen readable elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load_unit(p: *const Self) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256);

    /// The units at `p0` and at `p1` in two AVX-512 registers, each half of a register the
    /// register [`Self::load_unit`] gives for that unit: `[p0.first | p1.first]`,
    /// `[p0.second | p1.second]`. The row pass reads two rows' units with it.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and sixteen elements must be readable at `p0` and at `p1`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load_unit_rows(p0: *const Self, p1: *const Self) -> [std::arch::x86_64::__m512; 2];

    /// Two consecutive units (32 elements) in two AVX-512 registers, in whichever packing of
    /// [`Self::load_unit`]'s four registers loads fastest; [`Self::split_units`] names it.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and 32 elements must be readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load_unit_pair(p: *const Self) -> [std::arch::x86_64::__m512; 2];

    /// The four registers [`Self::load_unit`] gives for the two units of a
    /// [`Self::load_unit_pair`] packing, in order: first unit's first and second, second
    /// unit's first and second. Any lane-wise result held in that packing unpacks with it.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn split_units(z: [std::arch::x86_64::__m512; 2]) -> [std::arch::x86_64::__m256; 4];

    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees AVX2 and eight readable floats at `p`.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }

    const UNIT_ORDER: [usize; linear_f32::UNIT] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit(p: *const Self) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX2 and sixteen readable floats at `p`.
        unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit_rows(p0: *const Self, p1: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX-512F and sixteen readable floats at each pointer.
        unsafe {
            let first = _mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_loadu_pd(p0 as *const f64)),
                _mm256_loadu_pd(p1 as *const f64),
            );
            let second = _mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_loadu_pd(p0.add(8) as *const f64)),
                _mm256_loadu_pd(p1.add(8) as *const f64),
            );
            [_mm512_castpd_ps(first), _mm512_castpd_ps(second)]
        }
    }

    /// Each unit in its own register, in column order: `[first | second]` of one unit.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit_pair(p: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::_mm512_loadu_ps;
        // SAFETY: the caller guarantees AVX-512F and 32 readable floats at `p`.
        unsafe { [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))] }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn split_units(z: [std::arch::x86_64::__m512; 2]) -> [std::arch::x86_64::__m256; 4] {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { [lower(z[0]), upper(z[0]), lower(z[1]), upper(z[1])] }
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        // bf16 is the top half of an f32; the shift is exact and vectorises, unlike a call.
        f32::from_bits((self.to_bits() as u32) << 16)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX2 and eight readable bf16 values (16 bytes) at `p`.
        unsafe {
            let raw = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)))
        }
    }

    /// Even columns first, then odd: a 32-bit lane of the loaded vector holds columns 2k (low
    /// half) and 2k + 1 (high half).
    const UNIT_ORDER: [usize; linear_f32::UNIT] =
        [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15];

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit(p: *const Self) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX2 and sixteen readable bf16 values (32 bytes) at `p`.
        unsafe {
            let v = _mm256_loadu_si256(p as *const __m256i);
            // A bf16 is the top half of an f32: shift the low halves up, mask the high ones.
            let even = _mm256_slli_epi32::<16>(v);
            let odd = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF_0000u32 as i32));
            (_mm256_castsi256_ps(even), _mm256_castsi256_ps(odd))
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit_rows(p0: *const Self, p1: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX-512F and sixteen readable bf16 values (32 bytes)
        // at each pointer.
        unsafe {
            let lo = _mm256_loadu_si256(p0 as *const __m256i);
            let hi = _mm256_loadu_si256(p1 as *const __m256i);
            split_bf16_lanes(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi))
        }
    }

    /// One 64-byte load: `[first.even | second.even]`, `[first.odd | second.odd]`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_unit_pair(p: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX-512F and 32 readable bf16 values at `p`.
        unsafe { split_bf16_lanes(_mm512_loadu_si512(p as *const __m512i)) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn split_units(z: [std::arch::x86_64::__m512; 2]) -> [std::arch::x86_64::__m256; 4] {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { [lower(z[0]), lower(z[1]), upper(z[0]), upper(z[1])] }
    }
}

/// 32 bf16 values as f32 in two registers: the even elements and the odd ones, as
/// [`Elem::load_unit`] splits a unit.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn split_bf16_lanes(v: std::arch::x86_64::__m512i) -> [std::arch::x86_64::__m512; 2] {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX-512F.
    unsafe {
        let even = _mm512_slli_epi32::<16>(v);
        let odd = _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
        [_mm512_castsi512_ps(even), _mm512_castsi512_ps(odd)]
    }
}

/// Lanes 0–7 of an AVX-512 register.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lower(z: std::arch::x86_64::__m512) -> std::arch::x86_64::__m256 {
    // SAFETY: the caller guarantees AVX-512F.
    unsafe { std::arch::x86_64::_mm512_castps512_ps256(z) }
}

/// Lanes 8–15 of an AVX-512 register.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn upper(z: std::arch::x86_64::__m512) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX-512F.
    unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z))) }
}

/// Pairwise sum of N lane accumulators (N a power of two), always in the same order:
/// k += k + N/2 for k < N/2, then + N/4, …, + 1. Both linear engines fold their lanes with it.
#[inline(always)]
fn fold_pairwise<T: Copy + std::ops::AddAssign, const N: usize>(mut v: [T; N]) -> T {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            let upper = v[k + width];
            v[k] += upper;
        }
    }
    v[0]
}

/// Head parameters in the form each loop wants, widened to f64 once per run.
enum Head64 {
    Linear {
        w64: Vec<f64>,
        b: f64,
        /// For f32 sums ([`Accumulation::F32`]): w in the lane order of the bundle's dtype
        /// ([`linear_f32::lane_order_weights`]); `None` for f64 sums.
        w32: Option<Vec<f32>>,
    },
    Mlp {
        w1: Vec<f64>,
        b1: Vec<f64>,
        w2: Vec<f64>,
        b2: f64,
        activation: Activation,
        dim: usize,
    },
}

impl Head64 {
    fn new(input: &GradInput<'_>) -> Self {
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        match input.head {
            HeadParams::Linear(LinearHead { w, b }) => Head64::Linear {
                w64: wide(w),
                b: *b as f64,
                w32: (input.accumulation() == Accumulation::F32).then(|| {
                    match input.bundle.features() {
                        FeatureRows::F32(_) => linear_f32::lane_order_weights::<f32>(w),
                        FeatureRows::Bf16(_) => linear_f32::lane_order_weights::<bf16>(w),
                    }
                }),
            },
            HeadParams::Mlp(MlpHead {
                w1,
                b1,
                w2,
                b2,
                activation,
                dim,
            }) => Head64::Mlp {
                w1: wide(w1),
                b1: wide(b1),
                w2: wide(w2),
                b2: *b2 as f64,
                activation: *activation,
                dim: *dim,
            },
        }
    }
}

/// Per-thread buffers reused across rollouts.
#[derive(Default)]
struct Scratch {
    /// Linear: the rows' dot products with w (n). MLP: rows as f64 ([n, d]).
    a: Vec<f64>,
    /// Linear: the rows' squared norms (n). MLP: activations ([n, h]).
    b: Vec<f64>,
    /// Linear: e_j = exp(−|z_j|) (n). MLP: w₂ ⊙ φ'(u) ([n, h]).
    c: Vec<f64>,
    /// Residuals (n).
    r: Vec<f64>,
    /// Linear with f32 sums: the residuals r_j and r_j − r̄ rounded to f32 (n each).
    r32: Vec<f32>,
    q32: Vec<f32>,
}

/// One rollout's statistics, with its gradient vector when asked for.
fn rollout<E: Elem>(
    head: &Head64,
    x: &[E],
    y: &[f32],
    c: f64,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    match head {
        Head64::Linear {
            w32: Some(w32), b, ..
        } => linear_rollout_f32(w32, *b, x, y, c, scratch, grad),
        Head64::Linear { w64, b, w32: None } => linear_rollout(w64, *b, x, y, c, scratch, grad),
        Head64::Mlp {
            w1,
            b1,
            w2,
            b2,
            activation,
            dim,
        } => {
            let mlp = MlpView {
                w1,
                b1,
                w2,
                b2: *b2,
                activation: *activation,
                dim: *dim,
            };
            mlp_rollout(&mlp, x, y, c, scratch, grad)
        }
    }
}

struct MlpView<'a> {
    w1: &'a [f64],
    b1: &'a [f64],
    w2: &'a [f64],
    b2: f64,
    activation: Activation,
    dim: usize,
}

/// MLP head. `x`: [n, d] rows of the rollout; `y`: n targets.
fn mlp_rollout<E: Elem>(
    h: &MlpView<'_>,
    x: &[E],
    y: &[f32],
    c: f64,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    let (d, hid, n) = (h.dim, h.b1.len(), y.len());
    let Scratch {
        a: xs,
        b: act,
        c: back,
        r: resid,
        ..
    } = scratch;
    xs.clear();
    xs.extend(x.iter().map(|v| v.to_f64()));
    act.clear();
    back.clear();
    resid.clear();
    let (mut loss, mut sum_r, mut resid_sq) = (0.0, 0.0, 0.0);
    for j in 0..n {
        let phi = &xs[j * d..(j + 1) * d];
        let mut z = h.b2;
        for m in 0..hid {
            let u = h.w1[m * d..(m + 1) * d]
                .iter()
                .zip(phi)
                .map(|(w, v)| w * v)
                .sum::<f64>()
                + h.b1[m];
            let a = h.activation.apply(u);
            act.push(a);
            back.push(h.w2[m] * h.activation.derivative(u));
            z += h.w2[m] * a;
        }
        let yj = y[j] as f64;
        let r = c * (sigmoid(z) - yj);
        loss += c * bce_with_logits(z, yj);
        sum_r += r;
        resid_sq += r * r;
        resid.push(r);
    }
    let r_bar = sum_r / n as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    fn row(v: &[f64], width: usize, j: usize) -> &[f64] {
        &v[j * width..(j + 1) * width]
    }

    // Σ_j ‖∇ℓ_j‖² = Σ_j r_j² (‖e_j‖² (‖h_j‖² + 1) + ‖a_j‖² + 1), e_j = w₂ ⊙ φ'(u_j).
    let mut sum_step = 0.0;
    for (j, &r) in resid.iter().enumerate() {
        let ee = dot(row(back, hid, j), row(back, hid, j));
        let hh = dot(row(xs, d, j), row(xs, d, j));
        let aa = dot(row(act, hid, j), row(act, hid, j));
        sum_step += r * r * (ee * (hh + 1.0) + aa + 1.0);
    }

    let (w1_sq, w1_centered) = if ghost_is_cheaper(n, d, hid) {
        let (mut plain, mut cent) = (0.0, 0.0);
        for j in 0..n {
            for k in 0..n {
                let kernel =
                    dot(row(back, hid, j), row(back, hid, k)) * dot(row(xs, d, j), row(xs, d, k));
                plain += resid[j] * resid[k] * kernel;
                cent += (resid[j] - r_bar) * (resid[k] - r_bar) * kernel;
            }
        }
        (plain, cent)
    } else {
        let (mut plain, mut cent) = (0.0, 0.0);
        for m in 0..hid {
            for e in 0..d {
                let (mut g, mut gc) = (0.0, 0.0);
                for j in 0..n {
                    let t = back[j * hid + m] * xs[j * d + e];
                    g += resid[j] * t;
                    gc += (resid[j] - r_bar) * t;
                }
                plain += g * g;
                cent += gc * gc;
            }
        }
        (plain, cent)
    };
    let (mut b1_sq, mut b1_c, mut w2_sq, mut w2_c) = (0.0, 0.0, 0.0, 0.0);
    for m in 0..hid {
        let (mut gb, mut gbc, mut gw, mut gwc) = (0.0, 0.0, 0.0, 0.0);
        for (j, &r) in resid.iter().enumerate() {
            gb += r * back[j * hid + m];
            gbc += (r - r_bar) * back[j * hid + m];
            gw += r * act[j * hid + m];
            gwc += (r - r_bar) * act[j * hid + m];
        }
        b1_sq += gb * gb;
        b1_c += gbc * gbc;
        w2_sq += gw * gw;
        w2_c += gwc * gwc;
    }
    if let Some(out) = grad {
        out.clear();
        for m in 0..hid {
            for e in 0..d {
                out.push(
                    (0..n)
                        .map(|j| resid[j] * back[j * hid + m] * xs[j * d + e])
                        .sum(),
                );
            }
        }
        for m in 0..hid {
            out.push((0..n).map(|j| resid[j] * back[j * hid + m]).sum());
        }
        for m in 0..hid {
            out.push((0..n).map(|j| resid[j] * act[j * hid + m]).sum());
        }
        out.push(sum_r);
    }
    RolloutRow {
        loss,
        groups: [w1_sq, b1_sq, w2_sq, sum_r * sum_r],
        centered: w1_centered + b1_c + w2_c,
        sum_step,
        resid_sq,
    }
}

/// Rollouts per progress update. Each block ends in a join of the threads, so blocks are
/// made long enough (a few milliseconds) that the thread finishing last seldom keeps the other
/// waiting for long.
const BLOCK: usize = 16_384;

/// The `k`-th scored rollout of `input`, its statistics from [`rollout`] (its gradient in `grad`
/// when asked for).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn score_rollout<E: Elem>(
    input: &GradInput<'_>,
    head: &Head64,
    features: &[E],
    reduction: Reduction,
    k: usize,
    scratch: &mut Scratch,
    grad: Option<&mut Vec<f64>>,
) -> RolloutRow {
    let d = input.bundle.dim();
    let steps = input.bundle.rollout_steps(input.rollout(k));
    let c = reduction.weight(steps.len());
    let x = &features[steps.start * d..steps.end * d];
    rollout(head, x, &input.targets[steps], c, scratch, grad)
}

/// The statistics of every scored rollout, scored block by block in parallel and gathered into
/// columns while each block is in cache, and their projections (`k` values per rollout) when a
/// projection is asked for.
fn run_typed<E: Elem>(
    input: &GradInput<'_>,
    features: &[E],
    reduction: Reduction,
    projection: Option<&ProjectionMatrix>,
) -> (StatColumns, Option<Vec<f32>>) {
    let head = Head64::new(input);
    let len = input.len();
    let bar = progress::bar(len as u64, "gradnorm");
    if len < 100_000 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut columns = StatColumns::with_capacity(input.head, len);
    // Two blocks of rows: one being scored while the one before it is gathered into columns,
    // so that the gathering (serial) does not leave the other threads waiting.
    let mut block = Vec::with_capacity(BLOCK.min(len));
    let mut scored: Vec<RolloutRow> = Vec::with_capacity(BLOCK.min(len));
    let mut projected = projection.map(|p| vec![0.0f32; len * p.k]);
    let init = || (Scratch::default(), Vec::new());
    let score = |k: usize, scratch: &mut Scratch, grad: Option<&mut Vec<f64>>| {
        score_rollout(input, &head, features, reduction, k, scratch, grad)
    };
    for start in (0..len).step_by(BLOCK) {
        let end = (start + BLOCK).min(len);
        let ks = (start..end).into_par_iter().with_min_len(64);
        block.clear();
        let projected = projected.as_mut();
        let score_block = || match (projection, projected) {
            // `par_extend` from an indexed iterator writes the rows in place, in order.
            (Some(p), Some(out)) if p.k > 0 => block.par_extend(
                ks.zip(out[start * p.k..end * p.k].par_chunks_mut(p.k))
                    .map_init(init, |(scratch, grad), (k, proj)| {
                        let row = score(k, scratch, Some(grad));
                        for (dir, v) in proj.iter_mut().enumerate() {
                            *v = p
                                .direction(dir)
                                .iter()
                                .zip(grad.iter())
                                .map(|(&a, &b)| a as f64 * b)
                                .sum::<f64>() as f32;
                        }
                        row
                    }),
            ),
            _ => block.par_extend(ks.map_init(init, |(scratch, _), k| score(k, scratch, None))),
        };
        rayon::join(|| columns.extend(&scored), score_block);
        bar.inc(scored.len() as u64);
        std::mem::swap(&mut block, &mut scored);
    }
    columns.extend(&scored);
    bar.inc(scored.len() as u64);
    bar.finish_and_clear();
    (columns, projected)
}

fn total_typed<E: Elem>(input: &GradInput<'_>, features: &[E], reduction: Reduction) -> Vec<f64> {
    let head = Head64::new(input);
    let p = input.head.n_params();
    let len = input.len();
    // Fixed blocks summed in index order: the same bits for any number of threads.
    let partials: Vec<Vec<f64>> = (0..len.div_ceil(256))
        .into_par_iter()
        .map_init(
            || (Scratch::default(), Vec::new()),
            |(scratch, grad), blk| {
                let mut acc = vec![0.0; p];
                for k in blk * 256..((blk + 1) * 256).min(len) {
                    score_rollout(input, &head, features, reduction, k, scratch, Some(grad));
                    for (a, g) in acc.iter_mut().zip(grad.iter()) {
                        *a += g;
                    }
                }
                acc
            },
        )
        .collect();
    let mut total = vec![0.0; p];
    for part in partials {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

/// Maps every rollout of `input` to `f(k, g)`, g its full flattened gradient (length P, f64),
/// in parallel, results in rollout order: for methods that need more of each gradient than a
/// fixed set of linear projections (LESS's Adam preconditioning is elementwise).
pub fn map_rollout_gradients<T, F>(input: &GradInput<'_>, reduction: Reduction, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &[f64]) -> T + Sync,
{
    fn typed<E: Elem, T: Send, F: Fn(usize, &[f64]) -> T + Sync>(
        input: &GradInput<'_>,
        features: &[E],
        reduction: Reduction,
        f: &F,
    ) -> Vec<T> {
        let head = Head64::new(input);
        (0..input.len())
            .into_par_iter()
            .with_min_len(64)
            .map_init(
                || (Scratch::default(), Vec::new()),
                |(scratch, grad), k| {
                    score_rollout(input, &head, features, reduction, k, scratch, Some(grad));
                    f(k, grad)
                },
            )
            .collect()
    }
    match input.bundle.features() {
        FeatureRows::F32(x) => typed(input, x, reduction, &f),
        FeatureRows::Bf16(x) => typed(input, x, reduction, &f),
    }
}

impl GradNormEngine for CpuEngine {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn kernel_names(&self, input: &GradInput<'_>, projection: bool) -> Vec<String> {
        let dtype = match input.bundle.features() {
            FeatureRows::F32(_) => "f32",
            FeatureRows::Bf16(_) => "bf16",
        };
        let head = match input.head {
            HeadParams::Linear(_) => "linear",
            HeadParams::Mlp(_) => "mlp",
        };
        let sums = match input.accumulation() {
            Accumulation::F64 => "",
            Accumulation::F32 => "_f32sums",
        };
        let mut names = vec![format!("cpu_{head}_stats_{dtype}{sums}")];
        if projection {
            names.push(format!("cpu_{head}_grad_{dtype}{sums}"));
        }
        names
    }

    fn rollout_stats(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        projection: Option<&ProjectionMatrix>,
    ) -> Result<RolloutGradStats> {
        let (columns, projected) = match input.bundle.features() {
            FeatureRows::F32(x) => run_typed(input, x, reduction, projection),
            FeatureRows::Bf16(x) => run_typed(input, x, reduction, projection),
        };
        Ok(RolloutGradStats::for_input_columns(
            input, reduction, columns, projection, projected,
        ))
    }

    fn total_gradient(&self, input: &GradInput<'_>, reduction: Reduction) -> Result<Vec<f64>> {
        Ok(match input.bundle.features() {
            FeatureRows::F32(x) => total_typed(input, x, reduction),
            FeatureRows::Bf16(x) => total_typed(input, x, reduction),
        })
    }

    fn weighted_gram(&self, bundle: &FeatureBundle, weights: &[f64]) -> Result<Vec<f64>> {
        Ok(match bundle.features() {
            FeatureRows::F32(x) => gram_typed(x, bundle.dim(), weights),
            FeatureRows::Bf16(x) => gram_typed(x, bundle.dim(), weights),
        })
    }

    /// The CPU twin of the `precondition_sketch` kernel (f64 throughout), cosines in f64.
    fn sketch_cosines(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        pre: &PreconditionedSketch,
        directions: &[Vec<f64>],
    ) -> Result<Vec<f64>> {
        let rows = map_rollout_gradients(input, reduction, |_, g| {
            let (mut conditioned, mut sketched) = (Vec::new(), Vec::new());
            pre.feature(g, &mut conditioned, &mut sketched);
            directions
                .iter()
                .map(|t| cosine(&sketched, t))
                .collect::<Vec<f64>>()
        });
        Ok(rows.concat())
    }
}

/// Steps per parallel chunk of the Gram sum: fixed, so the summation order (and every bit of the
/// result) does not depend on the number of threads.
const GRAM_CHUNK: usize = 4096;

/// The CPU twin of the `weighted_gram` kernels: f64 products and sums, chunks of [`GRAM_CHUNK`]
/// steps added in chunk order.
fn gram_typed<E: Elem>(features: &[E], d: usize, weights: &[f64]) -> Vec<f64> {
    let p = d + 1;
    let n_steps = weights.len();
    let partial: Vec<Vec<f64>> = (0..n_steps.div_ceil(GRAM_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![0.0; p * p];
            let mut x = vec![0.0; p];
            for j in chunk * GRAM_CHUNK..((chunk + 1) * GRAM_CHUNK).min(n_steps) {
                for (k, xk) in x[..d].iter_mut().enumerate() {
                    *xk = features[j * d + k].to_f64();
                }
                x[d] = 1.0;
                let c = weights[j];
                // Upper triangle only; mirrored below.
                for r in 0..p {
                    let cr = c * x[r];
                    for k in r..p {
                        acc[r * p + k] += cr * x[k];
                    }
                }
            }
            acc
        })
        .collect();
    let mut gram = vec![0.0; p * p];
    for part in &partial {
        gram.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    for r in 0..p {
        for k in 0..r {
            gram[r * p + k] = gram[k * p + r];
        }
    }
    gram
}
