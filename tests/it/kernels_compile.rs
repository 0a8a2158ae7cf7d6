//! Every `kernels/*.cu` compiles through the same cudarc NVRTC path the engine uses, for
//! compute_90 (H100/H200) and compute_80 (A100), and defines every symbol the Rust side launches.
//!
//! Needs the `cuda` feature and a loadable `libnvrtc.so.13` (NVIDIA's `nvidia-cuda-nvrtc`
//! wheel on LD_LIBRARY_PATH is enough; no GPU). Without NVRTC the test skips with a notice,
//! except under `CI=true`, where a missing compiler is a failure: CI must prove the kernels build.
#![cfg(feature = "cuda")]

use mprm::gradnorm::{cuda, kernels};

#[test]
fn every_kernel_compiles_for_hopper_and_ampere() {
    if !cuda::nvrtc_available() {
        let msg = "libnvrtc.so.13 is not loadable; install nvidia-cuda-nvrtc==13.0.88 and put its lib folder on LD_LIBRARY_PATH";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("skipping the NVRTC compile test: {msg}");
        return;
    }
    for arch in ["compute_90", "compute_80"] {
        let target = format!(".target sm_{}", &arch["compute_".len()..]);
        for k in &kernels::ALL {
            let ptx =
                cuda::compile_ptx(k, arch).unwrap_or_else(|e| panic!("{} for {arch}: {e}", k.file));
            assert!(
                ptx.contains(&target),
                "{} for {arch}: no `{target}` line",
                k.file
            );
            for symbol in k.symbols {
                assert!(
                    ptx.contains(&format!(".entry {symbol}(")),
                    "{} for {arch} lacks the entry point {symbol}",
                    k.file
                );
            }
        }
    }
}

#[test]
fn a_syntax_error_comes_back_with_the_compiler_log() {
    if !cuda::nvrtc_available() {
        return; // reported by the test above
    }
    let broken = kernels::KernelSource {
        source: "extern \"C\" __global__ void broken_f32(float* x) { x[0] = undefined_name; }",
        ..kernels::ALL[0]
    };
    let err = cuda::compile_ptx(&broken, "compute_90")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("undefined_name") && err.contains(broken.file),
        "{err}"
    );
}

/// Every kernel's own source, compiled by g++ as C++20 against `kernels/emulation/cuda_emu.h`
/// (an emulation of the CUDA execution model: one OS thread per CUDA thread, blocks in turn),
/// run on small shapes covering every code path, and compared with a reference: the f64 oracle
/// for the statistics kernels, the library twins (`mprm::gradnorm::twins`) for the building blocks. Each launch runs twice
/// under different thread schedules and must give the same bits.
///
/// Tolerances come from the f32 accumulation bound |fl(Σ xᵢ) − Σ xᵢ| ≤ γ_N Σ|xᵢ| with
/// γ_N ≈ N·u, u = 2⁻²⁴ and N the length of the longest chain of f32 operations behind a value:
/// * building blocks (gemm_nt, mlp_step, project, column_sum, *_grad): the error of every
///   output must be within 2·(N + 8)·u·S, S the sum of the absolute values of its terms (the 2
///   and the 8 cover libm's few-ulp expf/erff and the product roundings);
/// * statistics (linear_stats, mlp_stats: sigmoids, squares and products of such sums): the
///   error relative to max(|want|, 10⁻³ × the column's largest |want|) must be within
///   16·(d + h + n + 32)·u, n the rollout's steps (the floor keeps near-cancelling values,
///   such as the centred norm of a one-step rollout, from dividing by ≈ 0).
///
/// Needs g++ with C++20 (g++ 12). Without it the test skips with a notice, except under
/// `CI=true`, where that is a failure.
mod emulated {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use mprm::data::features::{FeatureBundle, FeatureDtype, FeatureRows};
    use mprm::gradnorm::fixture::{self, RandomBundleSpec};
    use mprm::gradnorm::sketch::CountSketch;
    use mprm::gradnorm::twins::{self, Bounded};
    use mprm::gradnorm::{Reduction, ghost_limit, kernels, oracle};
    use mprm::head::{Activation, HeadKind, HeadParams, MlpHead};

    /// Unit roundoff of f32.
    const U: f64 = f32::EPSILON as f64 / 2.0;
    /// A launch that takes longer than this is a hang (a barrier that never completes).
    const LAUNCH_TIMEOUT: Duration = Duration::from_secs(120);

    /// One kernel argument, in the driver's protocol (kernels/emulation/driver.cpp).
    enum Arg {
        I32(i32),
        I64(i64),
        F32(f32),
        Buf(u32, Vec<u8>),
    }

    fn f32s(v: &[f32]) -> Arg {
        Arg::Buf(4, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    fn zeros(n: usize) -> Arg {
        f32s(&vec![0.0; n])
    }
    fn f64s(v: &[f64]) -> Arg {
        Arg::Buf(8, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    fn i64s(v: &[i64]) -> Arg {
        Arg::Buf(8, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Features as the kernels see them: f32, or raw bf16 bits.
    fn rows_arg(rows: FeatureRows<'_>) -> Arg {
        match rows {
            FeatureRows::F32(v) => f32s(v),
            FeatureRows::Bf16(v) => Arg::Buf(
                2,
                v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            ),
        }
    }

    /// Buffers after a launch, by argument position.
    struct Outputs(Vec<Option<Vec<u8>>>);

    impl Outputs {
        fn f32(&self, arg: usize) -> Vec<f32> {
            let b = self.0[arg].as_ref().expect("argument is a buffer");
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        }
        fn f64(&self, arg: usize) -> Vec<f64> {
            let b = self.0[arg].as_ref().expect("argument is a buffer");
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        }
    }

    /// splitmix64: the test's own reproducible random numbers.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
        }
        fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
            (0..n).map(|_| self.uniform(lo, hi)).collect()
        }
    }

    struct Emu {
        exe: PathBuf,
        dir: PathBuf,
        runs: usize,
        /// Kernel → wall time of its launches (both schedules).
        time: BTreeMap<String, Duration>,
        /// Kernel → shapes it ran on.
        shapes: BTreeMap<String, Vec<String>>,
        /// Kernel → worst error seen (relative, as defined in the module docs).
        worst: BTreeMap<String, f64>,
    }

    impl Emu {
        /// Launches `name` twice under different schedules, checks the outputs are the same
        /// bits and returns them.
        fn launch(
            &mut self,
            name: &str,
            shape: String,
            grid: [u32; 3],
            block: [u32; 3],
            args: &[Arg],
        ) -> Outputs {
            self.runs += 1;
            let input = self.dir.join(format!("in-{}.bin", self.runs));
            let mut buf = Vec::new();
            buf.extend_from_slice(b"MPRMEMU1");
            buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
            buf.extend_from_slice(name.as_bytes());
            for v in grid.iter().chain(&block) {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            buf.extend_from_slice(&0u32.to_le_bytes()); // dynamic shared memory
            let seed_at = buf.len();
            buf.extend_from_slice(&0u64.to_le_bytes());
            buf.extend_from_slice(&(args.len() as u32).to_le_bytes());
            for a in args {
                match a {
                    Arg::I32(v) => {
                        buf.push(b'i');
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    Arg::I64(v) => {
                        buf.push(b'l');
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    Arg::F32(v) => {
                        buf.push(b'f');
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    Arg::Buf(elem, bytes) => {
                        buf.push(b'b');
                        buf.extend_from_slice(&elem.to_le_bytes());
                        buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                        buf.extend_from_slice(bytes);
                    }
                }
            }
            let mut results = Vec::new();
            let t0 = Instant::now();
            for seed in [1u64, 2] {
                buf[seed_at..seed_at + 8].copy_from_slice(&(seed * 7919).to_le_bytes());
                std::fs::write(&input, &buf).expect("writing the launch file");
                let out = self.dir.join(format!("out-{}-{seed}.bin", self.runs));
                self.run_driver(name, &input, &out);
                results.push(std::fs::read(&out).expect("reading the driver's output"));
            }
            assert!(
                results[0] == results[1],
                "{name} ({shape}): two thread schedules gave different bits"
            );
            *self.time.entry(name.into()).or_default() += t0.elapsed();
            self.shapes.entry(name.into()).or_default().push(shape);
            let mut rest = &results[0][..];
            let outs = args
                .iter()
                .map(|a| match a {
                    Arg::Buf(..) => {
                        let n = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
                        let v = rest[8..8 + n].to_vec();
                        rest = &rest[8 + n..];
                        Some(v)
                    }
                    _ => None,
                })
                .collect();
            Outputs(outs)
        }

        fn run_driver(&self, name: &str, input: &Path, out: &Path) {
            let mut child = Command::new(&self.exe)
                .arg(input)
                .arg(out)
                .spawn()
                .expect("starting the emulation driver");
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("waiting for the driver") {
                    assert!(
                        status.success(),
                        "{name}: the emulation driver failed: {status}"
                    );
                    return;
                }
                if start.elapsed() > LAUNCH_TIMEOUT {
                    let _ = child.kill();
                    panic!("{name}: no result after {LAUNCH_TIMEOUT:?} (a barrier deadlock?)");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        /// Building-block check: |got − want| ≤ 2 (N + 8) u S for each element.
        fn check_sum(
            &mut self,
            name: &str,
            what: &str,
            got: &[f32],
            want: &[(f64, f64)],
            n: usize,
        ) {
            assert_eq!(got.len(), want.len(), "{name} {what}: length");
            let tol = 2.0 * (n as f64 + 8.0) * U;
            let worst = self.worst.entry(name.into()).or_insert(0.0);
            for (i, (&g, &(w, s))) in got.iter().zip(want).enumerate() {
                let err = (g as f64 - w).abs() / s.max(f64::MIN_POSITIVE);
                assert!(
                    err <= tol && g.is_finite(),
                    "{name} {what}[{i}]: got {g}, want {w} (scale {s}): error {err:.3e} > {tol:.3e}"
                );
                *worst = worst.max(err);
            }
        }

        /// [`Emu::check_sum`] against a library twin (mprm::gradnorm::twins), whose bound is the
        /// same rule.
        fn check_twin(&mut self, name: &str, what: &str, got: &[f32], want: &[Bounded], n: usize) {
            let pairs: Vec<(f64, f64)> = want.iter().map(|b| (b.value, b.magnitude)).collect();
            self.check_sum(name, what, got, &pairs, n);
            for (g, b) in got.iter().zip(want) {
                assert!(
                    b.allows(*g, n),
                    "{name} {what}: the twin's own bound disagrees"
                );
            }
        }

        /// Checks a statistics kernel's table against the oracle: per rollout the loss, the squared
        /// norm of each parameter group (ranges into the flat gradient), the centred norm, the sum of
        /// per-step norms and |r|², then the residuals of every step.
        #[allow(clippy::too_many_arguments)]
        fn check_stats_table(
            &mut self,
            name: &str,
            stats: &[f32],
            resid: &[f32],
            want: &[oracle::RolloutGradient],
            groups: &[(&str, std::ops::Range<usize>)],
            chain: usize,
        ) {
            let width = groups.len() + 4;
            let r = want.len();
            let mut cols: Vec<(&str, Vec<f64>)> =
                vec![("loss", want.iter().map(|g| g.loss).collect())];
            for (what, range) in groups {
                cols.push((
                    what,
                    want.iter().map(|g| sq(&g.grad[range.clone()])).collect(),
                ));
            }
            cols.push(("centred", want.iter().map(|g| sq(&g.centered)).collect()));
            cols.push((
                "sum step",
                want.iter().map(|g| g.step_grad_sq.iter().sum()).collect(),
            ));
            cols.push(("|r|^2", want.iter().map(|g| sq(&g.resid)).collect()));
            for (k, (what, w)) in cols.iter().enumerate() {
                let got: Vec<f64> = (0..r).map(|i| stats[i * width + k] as f64).collect();
                self.check_stats(name, what, &got, w, chain);
            }
            let want_resid: Vec<f64> = want.iter().flat_map(|g| g.resid.iter().copied()).collect();
            let got_resid: Vec<f64> = resid.iter().map(|&v| v as f64).collect();
            self.check_stats(name, "resid", &got_resid, &want_resid, chain);
        }

        /// Statistics check: per column, relative to max(|want|, 1e-3 · max |want|).
        fn check_stats(&mut self, name: &str, what: &str, got: &[f64], want: &[f64], chain: usize) {
            assert_eq!(got.len(), want.len(), "{name} {what}: length");
            let tol = 16.0 * (chain as f64 + 32.0) * U;
            let floor = 1e-3 * want.iter().fold(0.0f64, |m, v| m.max(v.abs())) + 1e-30;
            let worst = self.worst.entry(name.into()).or_insert(0.0);
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                let err = (g - w).abs() / w.abs().max(floor);
                assert!(
                    err <= tol && g.is_finite(),
                    "{name} {what}[rollout {i}]: got {g}, want {w}: relative error {err:.3e} > {tol:.3e}"
                );
                *worst = worst.max(err);
            }
        }
    }

    /// A bundle case: features, targets, head.
    struct Case {
        label: String,
        bundle: FeatureBundle,
        targets: Vec<f32>,
        head: HeadParams,
        reduction: Reduction,
    }

    impl Case {
        fn random(
            d: usize,
            dtype: FeatureDtype,
            rollouts: usize,
            max_steps: usize,
            kind: HeadKind,
            reduction: Reduction,
            seed: u64,
        ) -> Case {
            let mean = RandomBundleSpec::realistic(1, 1, dtype, 0).mean_steps;
            Case::random_mean(d, dtype, rollouts, max_steps, mean, kind, reduction, seed)
        }

        /// Like [`Case::random`], with the mean number of steps per rollout given.
        #[allow(clippy::too_many_arguments)]
        fn random_mean(
            d: usize,
            dtype: FeatureDtype,
            rollouts: usize,
            max_steps: usize,
            mean_steps: f64,
            kind: HeadKind,
            reduction: Reduction,
            seed: u64,
        ) -> Case {
            let mut spec = RandomBundleSpec::realistic(rollouts, d, dtype, seed);
            spec.max_steps = max_steps;
            spec.mean_steps = mean_steps.min(max_steps as f64);
            let bundle = fixture::random_bundle(&spec).expect("random bundle");
            let mut rng = Rng(seed ^ 0xA5A5);
            let targets = rng.vec(bundle.n_steps(), 0.0, 1.0);
            let head = HeadParams::init(kind, d, seed + 1);
            let steps: Vec<usize> = (0..rollouts).map(|i| bundle.rollout_len(i)).collect();
            Case {
                label: format!(
                    "d={d} {dtype:?} R={rollouts} steps={}..={} {:?} {reduction:?}",
                    steps.iter().min().expect("rollouts"),
                    steps.iter().max().expect("rollouts"),
                    kind
                ),
                bundle,
                targets,
                head,
                reduction,
            }
        }

        fn fixture(head: HeadParams, reduction: Reduction) -> Case {
            Case {
                label: format!("§2.7 fixture d=2 R=3 {:?} {reduction:?}", head.kind()),
                bundle: fixture::reference_bundle(),
                targets: vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
                head,
                reduction,
            }
        }

        fn offsets(&self) -> Vec<i64> {
            let mut o = vec![0i64];
            for i in 0..self.bundle.n_rollouts() {
                o.push(self.bundle.rollout_steps(i).end as i64);
            }
            o
        }

        fn x(&self) -> Vec<f64> {
            self.bundle
                .features()
                .to_f32_vec()
                .into_iter()
                .map(f64::from)
                .collect()
        }

        fn dtype_suffix(&self) -> &'static str {
            match self.bundle.dtype() {
                FeatureDtype::F32 => "f32",
                FeatureDtype::Bf16 => "bf16",
            }
        }

        fn oracle(&self) -> Vec<oracle::RolloutGradient> {
            let input =
                mprm::gradnorm::GradInput::new(&self.bundle, &self.targets, &self.head, None)
                    .expect("valid input");
            (0..self.bundle.n_rollouts())
                .map(|i| {
                    let (x, y) = oracle::rollout_data(&input, i);
                    oracle::rollout_gradient(&self.head, &x, &y, self.reduction)
                })
                .collect()
        }

        fn max_steps(&self) -> usize {
            (0..self.bundle.n_rollouts())
                .map(|i| self.bundle.rollout_len(i))
                .max()
                .unwrap_or(0)
        }
    }

    fn mean_flag(r: Reduction) -> i32 {
        match r {
            Reduction::Mean => 1,
            Reduction::Sum => 0,
        }
    }

    fn sq(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum()
    }

    /// The launch layer's `linear_launch` (src/gradnorm/cuda/engine.rs): (grid, block, rollouts
    /// per block).
    fn linear_launch(d: usize, r: usize) -> ([u32; 3], [u32; 3], i32) {
        if d <= 32 * 16 {
            ([r.div_ceil(8) as u32, 1, 1], [256, 1, 1], 8)
        } else {
            let threads = (d.div_ceil(16).div_ceil(32) * 32).clamp(32, 512);
            ([r as u32, 1, 1], [threads as u32, 1, 1], 1)
        }
    }

    fn block_of(threads: usize) -> u32 {
        (threads.div_ceil(32) * 32).clamp(32, 256) as u32
    }

    /// linear_stats → linear_grad → project + column_sum on one case.
    fn linear_pipeline(emu: &mut Emu, case: &Case, reduce: bool) {
        let d = case.bundle.dim();
        let r = case.bundle.n_rollouts();
        let s = case.bundle.n_steps();
        let HeadParams::Linear(head) = &case.head else {
            panic!("linear case")
        };
        let (grid, block, rpb) = linear_launch(d, r);
        let name = format!("linear_stats_{}", case.dtype_suffix());
        let mode = if rpb == 1 {
            "block group"
        } else {
            "warp groups"
        };
        let offsets = case.offsets();
        let out = emu.launch(
            &name,
            format!("{} ({mode}, block {})", case.label, block[0]),
            grid,
            block,
            &[
                rows_arg(case.bundle.features()),
                i64s(&offsets),
                f32s(&case.targets),
                f32s(&head.w),
                Arg::F32(head.b),
                Arg::I32(d as i32),
                Arg::I32(r as i32),
                Arg::I32(mean_flag(case.reduction)),
                Arg::I32(rpb),
                zeros(r * 6),
                zeros(s),
            ],
        );
        let (stats, resid) = (out.f32(9), out.f32(10));
        let want = case.oracle();
        let chain = d + case.max_steps();
        emu.check_stats_table(
            &name,
            &stats,
            &resid,
            &want,
            &[("|grad w|^2", 0..d), ("|grad b|^2", d..d + 1)],
            chain,
        );

        // Gradients of rollouts first.. from the kernel's residuals, against an f64 loop.
        let x = case.x();
        let first = r / 3;
        let count = r - first;
        let n_params = d + 1;
        let name = format!("linear_grad_{}", case.dtype_suffix());
        let mut grads = Vec::new();
        // The launch layer's grid, then grid.y = 1 (every block strides over the parameters).
        let full = n_params.div_ceil(256).min(65535);
        for grid_y in if full > 1 { vec![full, 1] } else { vec![1] } {
            let out = emu.launch(
                &name,
                format!("{} first={first} grid.y={grid_y}", case.label),
                [count as u32, grid_y as u32, 1],
                [256, 1, 1],
                &[
                    rows_arg(case.bundle.features()),
                    i64s(&offsets),
                    f32s(&resid),
                    Arg::I32(d as i32),
                    Arg::I32(first as i32),
                    zeros(count * n_params),
                ],
            );
            grads = out.f32(5);
            let mut want = Vec::new();
            for i in first..r {
                let steps = case.bundle.rollout_steps(i);
                for p in 0..n_params {
                    let (mut v, mut a) = (0.0, 0.0);
                    for j in steps.clone() {
                        let t = if p < d { x[j * d + p] } else { 1.0 };
                        v += resid[j] as f64 * t;
                        a += (resid[j] as f64 * t).abs();
                    }
                    want.push((v, a));
                }
            }
            emu.check_sum(&name, "grad", &grads, &want, case.max_steps());
        }
        if reduce {
            reduce_grads(emu, &case.label, &grads, count, n_params);
        }
    }

    /// weighted_gram_* against the f64 sum of each slice's steps, tile by tile of the upper
    /// triangle (the blocks below the diagonal write nothing and must leave zeros).
    fn weighted_gram(emu: &mut Emu, bundle: &FeatureBundle, slice: usize, seed: u64) {
        let (d, n) = (bundle.dim(), bundle.n_steps());
        let p = d + 1;
        let mut rng = Rng(seed);
        let w = rng.vec(n, 0.0, 0.25);
        let slices = n.div_ceil(slice);
        let tiles = p.div_ceil(32) as u32;
        let suffix = match bundle.dtype() {
            FeatureDtype::F32 => "f32",
            FeatureDtype::Bf16 => "bf16",
        };
        let name = format!("weighted_gram_{suffix}");
        let out = emu.launch(
            &name,
            format!("d={d} steps={n} slice={slice} ({slices} slices)"),
            [tiles, tiles, slices as u32],
            [32, 8, 1],
            &[
                rows_arg(bundle.features()),
                f32s(&w),
                Arg::I64(n as i64),
                Arg::I32(d as i32),
                Arg::I32(slice as i32),
                zeros(slices * p * p),
            ],
        );
        let x: Vec<f64> = bundle
            .features()
            .to_f32_vec()
            .into_iter()
            .map(f64::from)
            .collect();
        let xt = |j: usize, c: usize| if c < d { x[j * d + c] } else { 1.0 };
        let got = out.f32(5);
        let mut want = Vec::new();
        let mut written = Vec::new();
        for s in 0..slices {
            for r in 0..p {
                for c in 0..p {
                    let upper_tile = r / 32 <= c / 32;
                    let (v, a) = if upper_tile {
                        (s * slice..((s + 1) * slice).min(n)).fold((0.0, 0.0), |(v, a), j| {
                            let t = f64::from(w[j]) * xt(j, r) * xt(j, c);
                            (v + t, a + t.abs())
                        })
                    } else {
                        (0.0, 0.0)
                    };
                    want.push((v, a));
                    written.push(got[(s * p + r) * p + c]);
                }
            }
        }
        emu.check_sum(&name, "out", &written, &want, slice);
        gram_accumulate(emu, &got, slices, p, seed);
    }

    /// gram_accumulate_f64 on a launch's partial tiles, onto a running sum that already holds
    /// something (a previous chunk's slices): the upper triangle must be the host's f64 loop over
    /// the slices in order, bit for bit, and the entries below the diagonal must stay as they were.
    fn gram_accumulate(emu: &mut Emu, tiles: &[f32], slices: usize, p: usize, seed: u64) {
        let mut rng = Rng(seed ^ 0x5eed);
        let before: Vec<f64> = rng
            .vec(p * p, -2.0, 2.0)
            .into_iter()
            .map(f64::from)
            .collect();
        let threads = 256usize;
        let out = emu.launch(
            "gram_accumulate_f64",
            format!("p={p} slices={slices}"),
            [(p * p).div_ceil(threads) as u32, 1, 1],
            [threads as u32, 1, 1],
            &[
                f32s(tiles),
                Arg::I64(slices as i64),
                Arg::I32(p as i32),
                f64s(&before),
            ],
        );
        let got = out.f64(3);
        for r in 0..p {
            for c in 0..p {
                let e = r * p + c;
                let want = if c >= r {
                    (0..slices).fold(before[e], |a, s| a + f64::from(tiles[s * p * p + e]))
                } else {
                    before[e]
                };
                assert_eq!(
                    got[e].to_bits(),
                    want.to_bits(),
                    "gram_accumulate_f64 p={p} slices={slices} entry ({r}, {c}): got {}, want {want}",
                    got[e]
                );
            }
        }
    }

    /// precondition_sketch_f32 against the f64 sketch of Γ(g) computed from the same f32 inputs.
    /// Each output's terms are sign_p · (β₁m_p + (1 − β₁)g_p) / √(v′_p + ε); the first sum may
    /// cancel, so a term's magnitude counts both parts: (|β₁m_p| + |(1 − β₁)g_p|) / √(v′_p + ε).
    fn precondition_sketch(emu: &mut Emu, count: usize, n_params: usize, k: usize, seed: u64) {
        let mut rng = Rng(seed);
        let grads = rng.vec(count * n_params, -0.3, 0.3);
        let m = rng.vec(n_params, -0.05, 0.05);
        // second moments from ~0 (a parameter the warm-up barely moved) to ~1e-2
        let v: Vec<f32> = rng
            .vec(n_params, -8.0, -2.0)
            .into_iter()
            .map(|e| 10f32.powf(e))
            .collect();
        let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let sketch = CountSketch::new(n_params, k, seed).expect("sketch");
        let buckets = sketch.by_bucket();
        let out = emu.launch(
            "precondition_sketch_f32",
            format!("count={count} P={n_params} k={k}"),
            [count as u32, k.div_ceil(256) as u32, 1],
            [256, 1, 1],
            &[
                f32s(&grads),
                f32s(&m),
                f32s(&v),
                Arg::F32(beta1),
                Arg::F32(beta2),
                Arg::F32(eps),
                i64s(&buckets.start),
                i64s(&buckets.members),
                f32s(&buckets.signs),
                Arg::I64(n_params as i64),
                Arg::I32(k as i32),
                zeros(count * k),
            ],
        );
        let (b1, b2, e) = (f64::from(beta1), f64::from(beta2), f64::from(eps));
        let mut want = vec![(0.0, 0.0); count * k];
        for i in 0..count {
            for p in 0..n_params {
                let g = f64::from(grads[i * n_params + p]);
                let (mp, vp) = (f64::from(m[p]), f64::from(v[p]));
                let root = (b2 * vp + (1.0 - b2) * g * g + e).sqrt();
                let term = sketch.sign[p] * (b1 * mp + (1.0 - b1) * g) / root;
                let size = ((b1 * mp).abs() + ((1.0 - b1) * g).abs()) / root;
                let w = &mut want[i * k + sketch.bucket[p] as usize];
                w.0 += term;
                w.1 += size;
            }
        }
        let longest = buckets
            .start
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        emu.check_sum(
            "precondition_sketch_f32",
            "out",
            &out.f32(11),
            &want,
            longest,
        );
    }

    /// project_f32, the engine's projection through gemm_nt_f32, and column_sum_f32 on
    /// materialised gradients [count, P].
    fn reduce_grads(emu: &mut Emu, label: &str, grads: &[f32], count: usize, n_params: usize) {
        let k = 2;
        let mut rng = Rng(n_params as u64 * 31 + count as u64);
        let dirs = rng.vec(k * n_params, -1.0, 1.0);
        let out = emu.launch(
            "project_f32",
            format!("grads of {label}: count={count} P={n_params} k={k}"),
            [count as u32, k as u32, 1],
            [256, 1, 1],
            &[
                f32s(grads),
                f32s(&dirs),
                Arg::I64(n_params as i64),
                Arg::I32(k as i32),
                zeros(count * k),
            ],
        );
        let want = twins::project(grads, &dirs, count, n_params, k);
        emu.check_twin("project_f32", "out", &out.f32(4), &want, n_params);
        // the engine's projection: the same product through the GEMM, [count, P] × [k, P]ᵀ
        let out = emu.launch(
            "gemm_nt_f32",
            format!("projection of {label}: M={count} N={k} K={n_params}"),
            [count.div_ceil(32) as u32, k.div_ceil(32) as u32, 1],
            [32, 8, 1],
            &[
                f32s(grads),
                f32s(&dirs),
                zeros(count * k),
                Arg::I64(count as i64),
                Arg::I32(k as i32),
                Arg::I32(n_params as i32),
            ],
        );
        emu.check_twin("gemm_nt_f32", "projections", &out.f32(2), &want, n_params);

        let out = emu.launch(
            "column_sum_f32",
            format!("grads of {label}: count={count} P={n_params}"),
            [n_params.div_ceil(256) as u32, 1, 1],
            [256, 1, 1],
            &[
                f32s(grads),
                Arg::I64(n_params as i64),
                Arg::I32(count as i32),
                zeros(n_params),
            ],
        );
        let want = twins::column_sum(grads, count, n_params);
        emu.check_twin("column_sum_f32", "out", &out.f32(3), &want, count);
    }

    /// gemm_nt + mlp_step checked as building blocks; returns (U = activations, E, z, ‖a‖²).
    fn mlp_forward(
        emu: &mut Emu,
        label: &str,
        rows: FeatureRows<'_>,
        s: usize,
        head: &MlpHead,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let (d, h) = (head.dim, head.hidden());
        let (w1, b1, w2, b2) = (&head.w1, &head.b1, &head.w2, head.b2);
        let act = match head.activation {
            Activation::Relu => 0,
            Activation::Gelu => 1,
        };
        let x: Vec<f64> = rows.to_f32_vec().into_iter().map(f64::from).collect();
        let name = match rows.dtype() {
            FeatureDtype::F32 => "gemm_nt_f32",
            FeatureDtype::Bf16 => "gemm_nt_bf16",
        };
        let out = emu.launch(
            name,
            format!("{label}: M={s} N={h} K={d}"),
            [s.div_ceil(32) as u32, h.div_ceil(32) as u32, 1],
            [32, 8, 1],
            &[
                rows_arg(rows),
                f32s(w1),
                zeros(s * h),
                Arg::I64(s as i64),
                Arg::I32(h as i32),
                Arg::I32(d as i32),
            ],
        );
        let u = out.f32(2);
        let want = twins::gemm_nt(&x, w1, s, h, d);
        emu.check_twin(name, "C", &u, &want, d);

        let out = emu.launch(
            "mlp_step_f32",
            format!("{label}: S={s} h={h} act={act}"),
            [s as u32, 1, 1],
            [block_of(h), 1, 1],
            &[
                f32s(&u),
                zeros(s * h),
                f32s(b1),
                f32s(w2),
                Arg::F32(b2),
                Arg::I32(h as i32),
                Arg::I32(act),
                zeros(s),
                zeros(s),
            ],
        );
        let (a, e, z, a_sq) = (out.f32(0), out.f32(1), out.f32(7), out.f32(8));
        let want = twins::mlp_step(&u, b1, w2, b2, head.activation);
        emu.check_twin("mlp_step_f32", "a", &a, &want.a, 4);
        emu.check_twin("mlp_step_f32", "e", &e, &want.e, 4);
        emu.check_twin("mlp_step_f32", "z", &z, &want.z, h + 4);
        emu.check_twin("mlp_step_f32", "|a|^2", &a_sq, &want.a_sq, h + 4);
        (a, e, z, a_sq)
    }

    /// gemm_nt → mlp_step → mlp_stats → mlp_grad → project + column_sum on one case.
    fn mlp_pipeline(emu: &mut Emu, case: &Case, reduce: bool) {
        let d = case.bundle.dim();
        let r = case.bundle.n_rollouts();
        let s = case.bundle.n_steps();
        let HeadParams::Mlp(head) = &case.head else {
            panic!("mlp case")
        };
        let h = head.hidden();
        let x = case.x();
        let (a, e, z, a_sq) = mlp_forward(emu, &case.label, case.bundle.features(), s, head);
        let limit = ghost_limit(d, h) as f32;
        let ghosts = (0..r)
            .filter(|&i| (case.bundle.rollout_len(i) as f32) < limit)
            .count();
        let name = format!("mlp_stats_{}", case.dtype_suffix());
        let offsets = case.offsets();
        let out = emu.launch(
            &name,
            format!(
                "{} h={h} (ghost {ghosts}, direct {})",
                case.label,
                r - ghosts
            ),
            [r as u32, 1, 1],
            [256, 1, 1],
            &[
                rows_arg(case.bundle.features()),
                i64s(&offsets),
                f32s(&case.targets),
                f32s(&a),
                f32s(&e),
                f32s(&z),
                f32s(&a_sq),
                Arg::I32(d as i32),
                Arg::I32(h as i32),
                Arg::I32(mean_flag(case.reduction)),
                Arg::F32(limit),
                zeros(r * 8),
                zeros(s),
            ],
        );
        let (stats, resid) = (out.f32(11), out.f32(12));
        let want = case.oracle();
        let chain = d + h + case.max_steps();
        let hd = h * d;
        let last = hd + 2 * h;
        emu.check_stats_table(
            &name,
            &stats,
            &resid,
            &want,
            &[
                ("|grad W1|^2", 0..hd),
                ("|grad b1|^2", hd..hd + h),
                ("|grad w2|^2", hd + h..last),
                ("|grad b2|^2", last..last + 1),
            ],
            chain,
        );

        let first = r / 3;
        let count = r - first;
        let n_params = hd + 2 * h + 1;
        let name = format!("mlp_grad_{}", case.dtype_suffix());
        let out = emu.launch(
            &name,
            format!("{} h={h} first={first}", case.label),
            [count as u32, n_params.div_ceil(256).min(65535) as u32, 1],
            [256, 1, 1],
            &[
                rows_arg(case.bundle.features()),
                i64s(&offsets),
                f32s(&resid),
                f32s(&a),
                f32s(&e),
                Arg::I32(d as i32),
                Arg::I32(h as i32),
                Arg::I32(first as i32),
                zeros(count * n_params),
            ],
        );
        let grads = out.f32(8);
        let mut want = Vec::new();
        for i in first..r {
            let steps = case.bundle.rollout_steps(i);
            for p in 0..n_params {
                let (mut v, mut ab) = (0.0, 0.0);
                for j in steps.clone() {
                    let t = if p < hd {
                        e[j * h + p / d] as f64 * x[j * d + p % d]
                    } else if p < hd + h {
                        e[j * h + p - hd] as f64
                    } else if p < hd + 2 * h {
                        a[j * h + p - hd - h] as f64
                    } else {
                        1.0
                    };
                    v += resid[j] as f64 * t;
                    ab += (resid[j] as f64 * t).abs();
                }
                want.push((v, ab));
            }
        }
        emu.check_sum(&name, "grad", &grads, &want, case.max_steps() + 1);
        if reduce {
            reduce_grads(emu, &case.label, &grads, count, n_params);
        }
    }

    fn compile_driver(dir: &Path) -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let exe = dir.join("emu_driver");
        let status = match Command::new("g++")
            .args([
                "-std=c++20",
                "-O1",
                "-pthread",
                "-Wall",
                "-Wno-unknown-pragmas",
                "-I",
            ])
            .arg(root.join("kernels"))
            .arg(root.join("kernels/emulation/driver.cpp"))
            .arg("-o")
            .arg(&exe)
            .status()
        {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("g++ is not runnable ({e}); install g++ (12 or newer)");
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{msg}");
                }
                eprintln!("skipping the emulated kernel test: {msg}");
                return None;
            }
        };
        assert!(
            status.success(),
            "g++ could not compile the emulation driver"
        );
        Some(exe)
    }

    #[test]
    fn every_kernel_runs_on_the_cpu_emulation_and_matches_a_reference() {
        let started = Instant::now();
        let tmp = tempfile::tempdir().expect("temporary folder");
        let Some(exe) = compile_driver(tmp.path()) else {
            return;
        };
        let listed = Command::new(&exe)
            .arg("--list")
            .output()
            .expect("driver --list");
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        let registry: Vec<&str> = kernels::ALL
            .iter()
            .flat_map(|k| k.symbols.iter().copied())
            .collect();
        for s in &registry {
            assert!(
                listed.lines().any(|l| l == *s),
                "{s} is in kernels::ALL but kernels/emulation/driver.cpp cannot launch it"
            );
        }
        let mut emu = Emu {
            exe,
            dir: tmp.path().to_path_buf(),
            runs: 0,
            time: BTreeMap::new(),
            shapes: BTreeMap::new(),
            worst: BTreeMap::new(),
        };
        let compiled = started.elapsed();

        use FeatureDtype::{Bf16, F32};
        use Reduction::{Mean, Sum};
        let lin = HeadKind::Linear;
        let mlp = |hidden, activation| HeadKind::Mlp { hidden, activation };
        let linear_cases = [
            Case::fixture(fixture::reference_linear_head(), Mean),
            Case::fixture(fixture::reference_linear_head(), Sum),
            // warp groups: d not a multiple of 32, R not a multiple of 8 (idle warps)
            Case::random(37, F32, 13, 12, lin, Mean, 11),
            // warp groups at the most columns per thread (32 × 16)
            Case::random(512, Bf16, 9, 12, lin, Sum, 12),
            // block groups: d not a multiple of 32 (64 threads, the last partly idle)
            Case::random(515, F32, 5, 12, lin, Sum, 13),
            // block groups at the most columns per thread (64 threads × 16)
            Case::random(1024, Bf16, 4, 12, lin, Mean, 14),
            // single-step rollouts, both group modes
            Case::random(100, F32, 10, 1, lin, Mean, 15),
            Case::random(600, Bf16, 3, 1, lin, Sum, 16),
            // long rollouts, up to the 12-step maximum
            Case::random_mean(37, F32, 13, 12, 10.5, lin, Sum, 17),
            Case::random_mean(70, Bf16, 9, 12, 11.5, lin, Mean, 18),
        ];
        let lens: Vec<usize> = linear_cases
            .iter()
            .flat_map(|c| (0..c.bundle.n_rollouts()).map(|i| c.bundle.rollout_len(i)))
            .collect();
        assert!(
            (1..=12).all(|n| lens.contains(&n)),
            "the cases must cover rollouts of every length 1..=12: {lens:?}"
        );
        // project/column_sum run on the gradients of a few cases (P = 38, 1025, 133, 1401).
        for (k, case) in linear_cases.iter().enumerate() {
            linear_pipeline(&mut emu, case, [2, 5].contains(&k));
        }
        let mlp_cases = [
            // ghost_limit = 1: every rollout takes the direct W₁ form
            Case::fixture(fixture::reference_mlp_head(), Mean),
            // limit 15: ghost only
            Case::random(40, F32, 6, 12, mlp(24, Activation::Gelu), Sum, 21),
            // limit ≈ 4.6: both forms
            Case::random(20, Bf16, 8, 12, mlp(6, Activation::Relu), Mean, 22),
            // single steps; h = 40 spans two GEMM column tiles
            Case::random(33, Bf16, 4, 1, mlp(40, Activation::Gelu), Sum, 23),
        ];
        for (k, case) in mlp_cases.iter().enumerate() {
            mlp_pipeline(&mut emu, case, k >= 2);
        }
        // mlp_step with h > 256 (the strided loop) and exact 32-multiple GEMM tiles.
        let mut rng = Rng(99);
        for (s, d, h, act) in [
            (3usize, 64usize, 300usize, Activation::Gelu),
            (4, 64, 288, Activation::Relu),
        ] {
            let x32 = rng.vec(s * d, -1.0, 1.0);
            let head = MlpHead {
                w1: rng.vec(h * d, -0.2, 0.2),
                b1: rng.vec(h, -0.5, 0.5),
                w2: rng.vec(h, -0.5, 0.5),
                b2: 0.1,
                activation: act,
                dim: d,
            };
            mlp_forward(&mut emu, "random", FeatureRows::F32(&x32), s, &head);
        }

        // weighted_gram: p = d + 1 spanning one and two column tiles, several step slices, the
        // last one partial, f32 and bf16 rows.
        for (d, dtype, rollouts, slice, seed) in [
            (20usize, F32, 30usize, 40usize, 31u64),
            (37, Bf16, 25, 32, 32),
            (40, F32, 9, 1024, 33),
        ] {
            let mut spec = RandomBundleSpec::realistic(rollouts, d, dtype, seed);
            spec.max_steps = 12;
            let bundle = fixture::random_bundle(&spec).expect("random bundle");
            weighted_gram(&mut emu, &bundle, slice, seed);
        }

        // precondition_sketch: long buckets (P/k ≈ 140) and k > 256 (two blocks per rollout,
        // some buckets empty).
        for (count, n_params, k, seed) in [(3usize, 700usize, 5usize, 41u64), (2, 400, 300, 42)] {
            precondition_sketch(&mut emu, count, n_params, k, seed);
        }

        let mut report = String::new();
        for s in &registry {
            let shapes = emu.shapes.get(*s);
            assert!(
                shapes.is_some(),
                "{s} is in kernels::ALL but no emulated test launches it: add a case"
            );
            writeln!(
                report,
                "{s}: worst error {:.2e}, {:.1?}, {} shapes: {}",
                emu.worst.get(*s).copied().unwrap_or(0.0),
                emu.time.get(*s).copied().unwrap_or_default(),
                shapes.map_or(0, Vec::len),
                shapes.map(|v| v.join("; ")).unwrap_or_default()
            )
            .expect("writing to a String");
        }
        eprintln!(
            "emulated kernels: {} launches (each twice) in {:.1?} (g++ {:.1?})\n{report}",
            emu.runs,
            started.elapsed(),
            compiled
        );
    }
}
