//! Fused Burn operations of the PRM heads and their loss: the exact GELU, the dense layer and the
//! weighted BCE, each one autodiff node with its exact derivative.
//!
//! Written as compositions of tensor ops, these build many graph nodes (the GELU about fourteen,
//! the loss about ten) and rely on detach tricks whose only purpose is a deterministic gradient
//! sum: Burn's autodiff adds the contributions of a tensor used by three or more ops in an order
//! that changes from process to process. As single nodes, every tensor they read feeds one node,
//! so the order is fixed by construction.
//!
//! Two traits split the work the way Burn's backend extensions do:
//! * [`FusedKernels`] are the primitive kernels on one backend. Their default bodies are the
//!   tensor-op compositions the trainer used before (so CUDA, which takes the defaults, computes
//!   what it computed then); `burn-ndarray` overrides them with single-pass, multi-threaded
//!   loops ([`ndarray_kernels`]) that produce the same bits.
//! * [`FusedOps`] are the operations the models call. On a plain backend they only compute the
//!   forward; on `Autodiff<B>` ([`autodiff`]) each registers one backward step that calls `B`'s
//!   kernels.
//!
//! The dense layer's three products are Burn's `linear` and its two backward products by
//! default. `burn-ndarray`'s matmul copies around the product it computes: it reshapes both
//! operands to three dimensions (a copy of each, and a transposed copy for xᵀ·g and g·Wᵀ),
//! zero-fills the output and reshapes it back (another copy). For the weight gradient the
//! transposed copy of the whole batch was more than half the linear head's training time; for
//! the mlp head the other copies were about a tenth of its CPU time, on one thread. The
//! `burn-ndarray` kernels compute the products on views of the tensors instead, with the same
//! bits: where matrixmultiply runs its AVX-512 kernel, through [`direct`], which also skips the
//! routine's own packing of both operands; elsewhere through the routine itself, which reads any
//! strides.

mod autodiff;
mod checked;
mod direct;
pub mod erf;
pub mod expf;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod narrow;
mod ndarray_kernels;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// a·b for f32 matrices as the trainer's dense layers compute it on the CPU: the bits of
/// `matrixmultiply::sgemm` (what `burn-ndarray`'s matmul calls), read from the views as they lie.
pub fn dense_product(
    a: ndarray::ArrayView2<'_, f32>,
    b: ndarray::ArrayView2<'_, f32>,
) -> ndarray::Array2<f32> {
    ndarray_kernels::product(a, b)
}

/// 1/√(2π).
pub(crate) const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// The primitive kernels behind [`FusedOps`], one backend at a time.
///
/// Every default is the composition of Burn tensor ops that defines the kernel; an override must
/// return the same values (the `burn-ndarray` ones return the same bits, which the tests check).
pub trait FusedKernels: Backend {
    /// GELU in its erf form and the two factors of its derivative, for x of any shape:
    /// `(x·Φ(x), Φ(x), x·φ(x))`, with Φ = ½(1 + erf(x/√2)) and φ the standard normal density.
    fn gelu_exact_parts(
        x: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::gelu_exact_parts::<Self>(x)
    }

    /// x·Φ(x) alone (inference needs no derivative).
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_exact_parts(x).0
    }

    /// The GELU's input gradient `g·Φ + g·xφ` from the factors of [`Self::gelu_exact_parts`].
    fn gelu_exact_backward(
        cdf: FloatTensor<Self>,
        x_pdf: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::gelu_exact_backward::<Self>(cdf, x_pdf, grad)
    }

    /// A dense layer's output x·W + b for x [S, d_in], W [d_in, d_out] and b [d_out].
    fn dense_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// The input gradient of a dense layer, g·Wᵀ for g [S, d_out] and W [d_in, d_out].
    fn dense_input_grad(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_x_backward(weight, grad)
    }

    /// The bias gradient of a dense layer, the column sums of g [S, d_out].
    fn dense_bias_grad(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_bias_backward(grad)
    }

    /// The weight gradient of a dense layer, xᵀ·g for x [S, d_in] and g [S, d_out].
    fn dense_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_weight_backward(x, grad)
    }

    /// Per-step weighted BCE values `w·ℓ(z, y)` and logit gradients `w·(σ(z) − y)`, all [S], with
    /// ℓ(z, y) = max(z, 0) − z·y + ln(1 + e^{−|z|}).
    fn weighted_bce_parts(
        z: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::weighted_bce_parts::<Self>(z, y, w)
    }
}

/// The kernels as compositions of Burn tensor ops: the definitions the fused forms reproduce.
pub(crate) mod composed {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;

    /// See [`super::FusedKernels::gelu_exact_parts`].
    pub fn gelu_exact_parts<B: Backend>(
        x: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let cdf = B::float_mul_scalar(
            B::float_add_scalar(
                B::float_erf(B::float_div_scalar(
                    x.clone(),
                    std::f64::consts::SQRT_2.into(),
                )),
                1.0.into(),
            ),
            0.5.into(),
        );
        let x_pdf = B::float_mul(
            B::float_mul_scalar(
                B::float_exp(B::float_mul_scalar(
                    B::float_mul(x.clone(), x.clone()),
                    (-0.5).into(),
                )),
                super::FRAC_1_SQRT_2PI.into(),
            ),
            x.clone(),
        );
        (B::float_mul(x, cdf.clone()), cdf, x_pdf)
    }

    /// See [`super::FusedKernels::gelu_exact_backward`].
    pub fn gelu_exact_backward<B: Backend>(
        cdf: FloatTensor<B>,
        x_pdf: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        B::float_add(B::float_mul(grad.clone(), cdf), B::float_mul(grad, x_pdf))
    }

    /// See [`super::FusedKernels::weighted_bce_parts`].
    pub fn weighted_bce_parts<B: Backend>(
        z: FloatTensor<B>,
        y: FloatTensor<B>,
        w: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let tail = B::float_log1p(B::float_exp(B::float_neg(B::float_abs(z.clone()))));
        let loss = B::float_add(
            B::float_sub(B::relu(z.clone()), B::float_mul(z.clone(), y.clone())),
            tail,
        );
        let slope = B::float_sub(B::sigmoid(z), y);
        (B::float_mul(loss, w.clone()), B::float_mul(w, slope))
    }
}

/// The fused operations the models and the trainer call (see the module docs).
pub trait FusedOps: Backend {
    /// x·Φ(x), the exact GELU; its gradient is exactly Φ + xφ.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// x·W + b for x [S, d_in], W [d_in, d_out], b [d_out].
    fn fused_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `Σ_m w_m·ℓ(z_m, y_m)`, one element, whose gradient in z is `w ⊙ (σ(z) − y)` (y and w
    /// are data: they get no gradient).
    fn fused_weighted_bce(
        z: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// An autodiff backend the trainer can run on: it and its inner backend have the fused ops.
pub trait TrainBackend: AutodiffBackend<InnerBackend: FusedOps> + FusedOps {}

impl<T> TrainBackend for T
where
    T: AutodiffBackend + FusedOps,
    T::InnerBackend: FusedOps,
{
}

/// Forward-only [`FusedOps`] for a backend without autodiff.
macro_rules! forward_only_fused_ops {
    ($backend:ty $(, $generic:ident : $bound:path)*) => {
        impl<$($generic: $bound),*> $crate::fused_ops::FusedOps for $backend {
            fn fused_gelu(x: burn::tensor::ops::FloatTensor<Self>) -> burn::tensor::ops::FloatTensor<Self> {
                <Self as $crate::fused_ops::FusedKernels>::gelu_exact(x)
            }
            fn fused_dense(
                x: burn::tensor::ops::FloatTensor<Self>,
                weight: burn::tensor::ops::FloatTensor<Self>,
                bias: burn::tensor::ops::FloatTensor<Self>,
            ) -> burn::tensor::ops::FloatTensor<Self> {
                <Self as $crate::fused_ops::FusedKernels>::dense_forward(x, weight, bias)
            }
            fn fused_weighted_bce(
                z: burn::tensor::ops::FloatTensor<Self>,
                y: burn::tensor::ops::FloatTensor<Self>,
                w: burn::tensor::ops::FloatTensor<Self>,
            ) -> burn::tensor::ops::FloatTensor<Self> {
                let (values, _) = <Self as $crate::fused_ops::FusedKernels>::weighted_bce_parts(z, y, w);
                <Self as burn::tensor::ops::FloatTensorOps<Self>>::float_sum(values)
            }
        }
    };
}
#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use forward_only_fused_ops;

forward_only_fused_ops!(burn::backend::NdArray<f32>);

#[cfg(feature = "cuda")]
mod cuda {
    use super::FusedKernels;

    /// CUDA takes the composed defaults: there the element-wise ops are cheap launches and the
    /// transposed matmul operand is a free view.
    impl FusedKernels for burn::backend::Cuda {}
    super::forward_only_fused_ops!(burn::backend::Cuda);
}

fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// The exact GELU, x·Φ(x), as one node whose gradient is Φ(x) + x·φ(x).
///
/// Burn 0.21's own `gelu` computes the erf form forward but back-propagates the derivative of
/// the tanh approximation (off by up to ~3e-4 on [-3, 3]). That would make the trainer's
/// gradients disagree with [`crate::head::Activation::derivative`], which the gradient-norm
/// engine uses, and with PyTorch.
pub fn gelu<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    tensor(B::fused_gelu(float(x)))
}

/// A dense layer x·W + b over rows x [S, d_in] as one node.
pub fn dense<B: FusedOps>(x: Tensor<B, 2>, layer: &burn::nn::Linear<B>) -> Tensor<B, 2> {
    let bias = layer
        .bias
        .as_ref()
        .expect("the heads' dense layers carry a bias (a bug otherwise)");
    tensor(B::fused_dense(
        float(x),
        float(layer.weight.val()),
        float(bias.val()),
    ))
}

/// `Σ_m w_m·BCE(z_m, y_m)`, a one-element tensor, whose gradient in z is `w ⊙ (σ(z) − y)`.
pub fn weighted_bce<B: FusedOps>(
    logits: Tensor<B, 1>,
    targets: Tensor<B, 1>,
    weights: Tensor<B, 1>,
) -> Tensor<B, 1> {
    tensor(B::fused_weighted_bce(
        float(logits),
        float(targets),
        float(weights),
    ))
}

#[cfg(test)]
pub(crate) mod tests;
