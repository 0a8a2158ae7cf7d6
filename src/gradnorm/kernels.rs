//! The CUDA kernel sources, embedded in the binary and ready for NVRTC.
//!
//! Sources live in the top-level `kernels/` folder, one op family per `.cu` file, with shared
//! helpers in `kernels/common.cuh`. They are embedded with `include_str!` (so cargo rebuilds on
//! every edit) and are plain strings in every build: the `cuda` feature only adds the compiler
//! and launch layer. Symbols are `extern "C"` and named `<op>_<dtype>`; [`symbol`] is the one
//! place that spells a name, so Rust and `.cu` names cannot drift apart silently.

use crate::data::features::FeatureDtype;

/// The shared header, inlined where a source says `#include "common.cuh"`.
pub const COMMON: &str = include_str!("../../kernels/common.cuh");

/// One `.cu` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSource {
    /// Which family this is.
    pub id: KernelId,
    /// File name under `kernels/`.
    pub file: &'static str,
    /// The source text as written.
    pub source: &'static str,
    /// Every `extern "C"` symbol the file defines.
    pub symbols: &'static [&'static str],
}

/// Kernel families, one per `.cu` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// Fused linear-head statistics.
    LinearStats,
    /// Tiled GEMM for the MLP forward pass.
    Gemm,
    /// MLP epilogue and per-rollout statistics.
    MlpStats,
    /// Materialised per-rollout gradients.
    RolloutGrad,
    /// Projections and column sums of materialised gradients.
    Project,
    /// Weighted Gram matrices of step rows (influence Hessians).
    Gram,
    /// Adam-preconditioned CountSketches of materialised gradients (LESS features).
    Sketch,
}

/// Every kernel family, in [`KernelId`] order.
pub const ALL: [KernelSource; 7] = [
    KernelSource {
        id: KernelId::LinearStats,
        file: "linear_stats.cu",
        source: include_str!("../../kernels/linear_stats.cu"),
        symbols: &["linear_stats_f32", "linear_stats_bf16"],
    },
    KernelSource {
        id: KernelId::Gemm,
        file: "gemm.cu",
        source: include_str!("../../kernels/gemm.cu"),
        symbols: &["gemm_nt_f32", "gemm_nt_bf16"],
    },
    KernelSource {
        id: KernelId::MlpStats,
        file: "mlp_stats.cu",
        source: include_str!("../../kernels/mlp_stats.cu"),
        symbols: &["mlp_step_f32", "mlp_stats_f32", "mlp_stats_bf16"],
    },
    KernelSource {
        id: KernelId::RolloutGrad,
        file: "rollout_grad.cu",
        source: include_str!("../../kernels/rollout_grad.cu"),
        symbols: &[
            "linear_grad_f32",
            "linear_grad_bf16",
            "mlp_grad_f32",
            "mlp_grad_bf16",
        ],
    },
    KernelSource {
        id: KernelId::Project,
        file: "project.cu",
        source: include_str!("../../kernels/project.cu"),
        symbols: &["project_f32", "column_sum_f32"],
    },
    KernelSource {
        id: KernelId::Gram,
        file: "gram.cu",
        source: include_str!("../../kernels/gram.cu"),
        symbols: &[
            "weighted_gram_f32",
            "weighted_gram_bf16",
            "gram_accumulate_f64",
        ],
    },
    KernelSource {
        id: KernelId::Sketch,
        file: "sketch.cu",
        source: include_str!("../../kernels/sketch.cu"),
        symbols: &["precondition_sketch_f32"],
    },
];

impl KernelId {
    /// The family's source record.
    pub fn source(self) -> &'static KernelSource {
        ALL.iter()
            .find(|k| k.id == self)
            .expect("ALL lists every KernelId")
    }

    /// Position in [`ALL`] (a cache slot).
    pub fn index(self) -> usize {
        ALL.iter()
            .position(|k| k.id == self)
            .expect("ALL lists every KernelId")
    }
}

impl KernelSource {
    /// The source with `common.cuh` inlined: what NVRTC compiles.
    pub fn expanded(&self) -> String {
        let mut out = String::with_capacity(self.source.len() + COMMON.len());
        for line in self.source.lines() {
            if line.trim() == "#include \"common.cuh\"" {
                out.push_str(COMMON);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

/// The symbol of op `op` for features of `dtype`: `<op>_f32` or `<op>_bf16`.
pub fn symbol(op: &str, dtype: FeatureDtype) -> String {
    match dtype {
        FeatureDtype::F32 => format!("{op}_f32"),
        FeatureDtype::Bf16 => format!("{op}_bf16"),
    }
}

/// The kernels a CUDA run with these settings launches (also used for manifests).
pub fn cuda_kernel_names(input: &super::GradInput<'_>, projection: bool) -> Vec<String> {
    let dtype = input.bundle.dtype();
    let mut names = match input.head {
        crate::head::HeadParams::Linear(_) => vec![symbol("linear_stats", dtype)],
        crate::head::HeadParams::Mlp(_) => vec![
            symbol("gemm_nt", dtype),
            "mlp_step_f32".into(),
            symbol("mlp_stats", dtype),
        ],
    };
    if projection {
        names.push(match input.head {
            crate::head::HeadParams::Linear(_) => symbol("linear_grad", dtype),
            crate::head::HeadParams::Mlp(_) => symbol("mlp_grad", dtype),
        });
        // the projection is one product through the f32 GEMM (the MLP head of f32 features
        // already lists it)
        let gemm = "gemm_nt_f32".to_string();
        if !names.contains(&gemm) {
            names.push(gemm);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_is_defined_in_its_file() {
        for k in &ALL {
            for s in k.symbols {
                // Symbols are instantiated through a macro: `MACRO(name, type)`.
                assert!(
                    k.source.contains(&format!("{s}(")) || k.source.contains(&format!("({s},")),
                    "{} does not define {s}",
                    k.file
                );
            }
            let expanded = k.expanded();
            assert!(
                !expanded
                    .lines()
                    .any(|l| l.trim_start().starts_with("#include")),
                "{} keeps an include",
                k.file
            );
            assert!(expanded.contains("mprm_group_sum"));
        }
    }

    #[test]
    fn symbols_follow_the_naming_rule() {
        assert_eq!(
            symbol("linear_stats", FeatureDtype::Bf16),
            "linear_stats_bf16"
        );
        let all: Vec<&str> = ALL.iter().flat_map(|k| k.symbols.iter().copied()).collect();
        for op in [
            "linear_stats",
            "gemm_nt",
            "mlp_stats",
            "linear_grad",
            "mlp_grad",
        ] {
            for dt in [FeatureDtype::F32, FeatureDtype::Bf16] {
                assert!(all.contains(&symbol(op, dt).as_str()), "{op}");
            }
        }
        assert_eq!(KernelId::Project.index(), 4);
    }
}
