//! [`FusedOps`] on `Autodiff<B>`: each operation is one tracked node whose backward step calls
//! `B`'s [`FusedKernels`].
//!
//! Every node keeps what its backward reads as plain primitives in its state (the GELU's two
//! derivative factors, the dense layer's input and weight, the loss's logit gradient), so the
//! backward pass recomputes nothing and never depends on Burn's checkpointing strategy.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use super::{FusedKernels, FusedOps};

/// The GELU node; its state is (Φ(x), x·φ(x)).
#[derive(Debug)]
struct GeluNode;

impl<B: FusedKernels> Backward<B, 1> for GeluNode {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let (cdf, x_pdf) = ops.state;
            grads.register::<B>(parent.id, B::gelu_exact_backward(cdf, x_pdf, grad));
        }
    }
}

/// The dense node; its state is (x, W), each kept only when the other side needs it.
#[derive(Debug)]
struct DenseNode;

impl<B: FusedKernels> Backward<B, 3> for DenseNode {
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        if let (Some(node), Some(weight)) = (x_node, weight) {
            grads.register::<B>(node.id, B::dense_input_grad(weight, grad.clone()));
        }
        if let (Some(node), Some(x)) = (weight_node, x) {
            grads.register::<B>(node.id, B::dense_weight_grad(x, grad.clone()));
        }
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, B::dense_bias_grad(grad));
        }
    }
}

/// The loss node; its state is the per-step logit gradient w·(σ(z) − y).
#[derive(Debug)]
struct WeightedBceNode;

impl<B: FusedKernels> Backward<B, 1> for WeightedBceNode {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            // `grad` has one element (1 when the loss is the root); the product broadcasts it.
            grads.register::<B>(parent.id, B::float_mul(ops.state, grad));
        }
    }
}

impl<B: FusedKernels, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluNode
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, cdf, x_pdf) = B::gelu_exact_parts(x.primitive);
                prep.finish((cdf, x_pdf), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.primitive)),
        }
    }

    fn fused_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
        match DenseNode
            .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::dense_forward(
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    bias.primitive,
                );
                // The weight gradient reads x; the input gradient reads W.
                let state = (
                    weight_tracked.then_some(x.primitive),
                    x_tracked.then_some(weight.primitive),
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dense_forward(
                x.primitive,
                weight.primitive,
                bias.primitive,
            )),
        }
    }

    fn fused_weighted_bce(
        z: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // y and w are data: only z is a parent.
        let (values, slope) = B::weighted_bce_parts(z.primitive, y.primitive, w.primitive);
        let loss = B::float_sum(values);
        match WeightedBceNode
            .prepare::<C>([z.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(slope, loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }
}
