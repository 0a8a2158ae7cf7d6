//! The building-block kernels alone, from host buffers to host buffers, with the engine's own
//! launch configurations: what the device tests compare with the CPU twins
//! ([`crate::gradnorm::twins`]), so a mismatch on a card points at one kernel.

use cudarc::driver::PushKernelArg;

use super::{
    CudaEngine, CudaResultExt, DevRows, KernelId, activation_code, as_i32, column_sum_config,
    gemm_config, mlp_step_config, project_config, push_rows, symbol,
};
use crate::data::features::FeatureRows;
use crate::error::Result;
use crate::head::Activation;

/// `mlp_step_f32`'s outputs: (a, e, z, ‖a‖²).
pub type MlpStepOut = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

impl CudaEngine {
    /// `gemm_nt_<dtype>`: C = X Wᵀ for the rows X [m, k] and w [n, k]; C [m, n].
    pub fn block_gemm_nt(
        &self,
        rows: FeatureRows<'_>,
        w: &[f32],
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<f32>> {
        let s = &self.gpu.stream;
        let x = match rows {
            FeatureRows::F32(v) => DevRows::F32(s.clone_htod(v).w("uploading rows")?),
            FeatureRows::Bf16(v) => DevRows::Bf16(
                s.clone_htod(bytemuck::cast_slice::<_, u16>(v))
                    .w("uploading rows")?,
            ),
        };
        let w = s.clone_htod(w).w("uploading W")?;
        let mut c = s.alloc_zeros::<f32>(m * n).w("allocating C")?;
        let (m_i, n_i, k_i) = (m as i64, as_i32(n, "N")?, as_i32(k, "K")?);
        let name = symbol("gemm_nt", x.dtype());
        launch!(self.gpu, KernelId::Gemm, &name, gemm_config(m, n)?, |l| {
            push_rows(&mut l, &x);
            l.arg(&w).arg(&mut c).arg(&m_i).arg(&n_i).arg(&k_i);
        });
        s.clone_dtoh(&c).w("downloading C")
    }

    /// `mlp_step_f32` on u = W₁h [steps, h].
    pub fn block_mlp_step(
        &self,
        u: &[f32],
        b1: &[f32],
        w2: &[f32],
        b2: f32,
        activation: Activation,
    ) -> Result<MlpStepOut> {
        let s = &self.gpu.stream;
        let h = b1.len();
        let steps = u.len() / h.max(1);
        let mut u_dev = s.clone_htod(u).w("uploading U")?;
        let mut e = s.alloc_zeros::<f32>(steps * h).w("allocating E")?;
        let (b1, w2) = (
            s.clone_htod(b1).w("uploading b1")?,
            s.clone_htod(w2).w("uploading w2")?,
        );
        let mut z = s.alloc_zeros::<f32>(steps).w("allocating z")?;
        let mut a_sq = s.alloc_zeros::<f32>(steps).w("allocating |a|^2")?;
        let (h_i, act) = (as_i32(h, "hidden")?, activation_code(activation));
        let cfg = mlp_step_config(steps, h)?;
        launch!(self.gpu, KernelId::MlpStats, "mlp_step_f32", cfg, |l| {
            l.arg(&mut u_dev).arg(&mut e).arg(&b1).arg(&w2).arg(&b2);
            l.arg(&h_i).arg(&act).arg(&mut z).arg(&mut a_sq);
        });
        Ok((
            s.clone_dtoh(&u_dev).w("downloading a")?,
            s.clone_dtoh(&e).w("downloading e")?,
            s.clone_dtoh(&z).w("downloading z")?,
            s.clone_dtoh(&a_sq).w("downloading |a|^2")?,
        ))
    }

    /// `project_f32`: ⟨grad_i, dir⟩ for grads [count, p] and dirs [k, p]; out [count, k].
    pub fn block_project(
        &self,
        grads: &[f32],
        dirs: &[f32],
        count: usize,
        p: usize,
        k: usize,
    ) -> Result<Vec<f32>> {
        let s = &self.gpu.stream;
        let (g, d) = (
            s.clone_htod(grads).w("uploading gradients")?,
            s.clone_htod(dirs).w("uploading directions")?,
        );
        let mut out = s
            .alloc_zeros::<f32>(count * k)
            .w("allocating projections")?;
        let (p_i, k_i) = (p as i64, as_i32(k, "directions")?);
        let cfg = project_config(count, k)?;
        launch!(self.gpu, KernelId::Project, "project_f32", cfg, |l| {
            l.arg(&g).arg(&d).arg(&p_i).arg(&k_i).arg(&mut out);
        });
        s.clone_dtoh(&out).w("downloading projections")
    }

    /// `column_sum_f32`: Σ_i grad[i, q] over `count` rows of width p.
    pub fn block_column_sum(&self, grads: &[f32], count: usize, p: usize) -> Result<Vec<f32>> {
        let s = &self.gpu.stream;
        let g = s.clone_htod(grads).w("uploading gradients")?;
        let mut out = s.alloc_zeros::<f32>(p).w("allocating column sums")?;
        let (p_i, count_i) = (p as i64, as_i32(count, "rollouts")?);
        let cfg = column_sum_config(p)?;
        launch!(self.gpu, KernelId::Project, "column_sum_f32", cfg, |l| {
            l.arg(&g).arg(&p_i).arg(&count_i).arg(&mut out);
        });
        s.clone_dtoh(&out).w("downloading column sums")
    }
}
