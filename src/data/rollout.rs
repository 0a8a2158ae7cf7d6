//! The in-memory model of an MC-annotated rollout and of a corpus of them.

/// One reasoning step with its Monte Carlo annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Step text (may be empty in real data: consecutive blank lines make empty steps).
    pub text: String,
    /// MC score: the fraction of continuations from this prefix that reached the right answer.
    pub score: f64,
    /// Successful continuations.
    pub num_mc_correct: u32,
    /// Continuations sampled (0 after an early stop).
    pub num_mc_total: u32,
}

/// One sampled solution with per-step MC scores, as stored in a raw annotation file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rollout {
    /// Source name: the annotation file's stem (records carry no source field).
    pub source: String,
    /// 0-based physical line in the source file.
    pub line: u64,
    /// Relative image path.
    pub image: Option<String>,
    /// The prompted question sent to the policy.
    pub question: Option<String>,
    /// The original question (used first when building PRM lines).
    pub question_orig: Option<String>,
    /// Ground-truth answer.
    pub answer: Option<String>,
    /// The full sampled solution.
    pub response: Option<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Continuations per step (16 in VisualPRM400K).
    pub num_mc_sequences: u32,
}

impl Rollout {
    /// The MC scores in step order.
    pub fn scores(&self) -> Vec<f64> {
        self.steps.iter().map(|s| s.score).collect()
    }
}

/// A corpus: its sources in sorted file order, each with its rollouts in line order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corpus {
    /// Sources in sorted file-path order.
    pub sources: Vec<SourceRollouts>,
}

/// The rollouts of one source file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRollouts {
    /// Source name (file stem).
    pub name: String,
    /// Rollouts in line order.
    pub rollouts: Vec<Rollout>,
}

impl Corpus {
    /// Total number of rollouts.
    pub fn n_rollouts(&self) -> usize {
        self.sources.iter().map(|s| s.rollouts.len()).sum()
    }

    /// Total number of steps.
    pub fn n_steps(&self) -> usize {
        self.sources
            .iter()
            .flat_map(|s| &s.rollouts)
            .map(|r| r.steps.len())
            .sum()
    }

    /// All rollouts in corpus order (sources in order, lines in order).
    pub fn rollouts(&self) -> impl Iterator<Item = &Rollout> {
        self.sources.iter().flat_map(|s| s.rollouts.iter())
    }
}
