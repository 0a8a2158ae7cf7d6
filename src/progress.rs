//! Progress on stderr for long runs, in one of three modes chosen when a stage starts:
//!
//! - stderr is a terminal: indicatif bars. Every bar joins one shared [`MultiProgress`], so a
//!   stage that runs inside another (the gradient norms computed while the selection experiment
//!   builds its selectors) gets its own line under the outer bar instead of fighting it for the
//!   same line. An inner bar clears its line when it finishes: the outer bar already counts the
//!   finished unit, and a column of finished inner bars would push the live ones off screen.
//! - stderr is not a terminal (a log file, CI): no bars, but one plain line per stage every
//!   [`LOG_EVERY`] and one when it finishes, e.g.
//!   `progress: gradnorm 12,000/63,840 (1,950/s, eta 27s)`. Stages shorter than [`QUIET_UNDER`]
//!   write nothing.
//! - `MPRM_NO_PROGRESS` is set (to anything): nothing at all, so tests and CI logs stay clean.
//!
//! Call sites use [`Progress`] like an indicatif bar (`inc`, `set_position`, `set_message`,
//! `finish_and_clear`); it is `Sync`, so parallel workers can share one.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{
    BinaryBytes, HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};

/// How often the non-terminal mode writes a line for a running stage.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A stage that ends sooner than this without having written a line stays silent in the
/// non-terminal mode: the theory checks run hundreds of sub-second gradient passes, and a log
/// holding one "done in 0s" line for each hides the stages that matter.
pub const QUIET_UNDER: Duration = Duration::from_secs(2);

/// What a stage counts, for the plain log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Items,
    Bytes,
}

/// Progress of one stage: an indicatif bar, a periodic log line, or nothing (see the module
/// documentation for which).
pub struct Progress {
    bar: ProgressBar,
    log: Option<LineLog>,
}

/// A bar counting `total` units of `what`.
pub fn bar(total: u64, what: &str) -> Progress {
    start(
        total,
        what,
        Unit::Items,
        "{spinner} {prefix:<12} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta}) {msg}",
    )
}

/// A bar counting bytes.
pub fn byte_bar(total: u64, what: &str) -> Progress {
    start(
        total,
        what,
        Unit::Bytes,
        "{spinner} {prefix:<12} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta}) {msg}",
    )
}

fn start(total: u64, what: &str, unit: Unit, template: &'static str) -> Progress {
    // Configured while still hidden: a bar that draws before it joins the shared display, or
    // before a caller hides it, leaves a stray "0/N" line behind.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    if std::env::var_os("MPRM_NO_PROGRESS").is_some() {
        return Progress { bar, log: None };
    }
    if std::io::stderr().is_terminal() {
        return Progress {
            bar: multi().add(bar),
            log: None,
        };
    }
    let started = Instant::now();
    Progress {
        bar,
        log: Some(LineLog::new(
            what,
            total,
            unit,
            Box::new(move || started.elapsed()),
            Box::new(std::io::stderr()),
        )),
    }
}

/// The display every terminal bar joins.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

impl Progress {
    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(log) = &self.log {
            log.update(|s| s.done += n);
        }
    }

    /// Sets the units done (a resumed run starts past 0; rates count from there).
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        if let Some(log) = &self.log {
            log.update(|s| {
                if !s.counted {
                    s.base = pos;
                }
                s.done = pos;
            });
        }
    }

    /// A note shown after the counts (e.g. the current loss).
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        let msg = msg.into();
        if let Some(log) = &self.log {
            log.state.lock().expect("progress state").msg = msg.to_string();
        }
        self.bar.set_message(msg);
    }

    /// Replaces where the bar draws; a hidden target silences this stage in every mode (callers
    /// hide stages too short to be worth a line).
    pub fn set_draw_target(&self, target: ProgressDrawTarget) {
        if target.is_hidden() {
            multi().remove(&self.bar);
            if let Some(log) = &self.log {
                log.state.lock().expect("progress state").hidden = true;
            }
        }
        self.bar.set_draw_target(target);
    }

    /// Ends the stage: a terminal bar clears its line, the log writes its final line.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        if let Some(log) = &self.log {
            log.finish();
        }
    }
}

/// The non-terminal mode: plain lines, at most one per [`LOG_EVERY`] while running, and one at
/// the end. Lines are written when the count changes, so a stage that makes no progress stays
/// quiet until it does.
struct LineLog {
    stage: String,
    total: u64,
    unit: Unit,
    /// Time since the stage started (injected so tests need no real clock).
    clock: Box<dyn Fn() -> Duration + Send + Sync>,
    sink: Mutex<Box<dyn Write + Send>>,
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    done: u64,
    /// Units already done when counting began (a resumed run), left out of the rate.
    base: u64,
    /// Whether any unit was counted yet (until then `set_position` moves `base`).
    counted: bool,
    /// When the last line was written.
    last_line: Duration,
    msg: String,
    hidden: bool,
    finished: bool,
    /// Whether a periodic line was written (then the final one always is).
    wrote: bool,
}

impl LineLog {
    fn new(
        stage: &str,
        total: u64,
        unit: Unit,
        clock: Box<dyn Fn() -> Duration + Send + Sync>,
        sink: Box<dyn Write + Send>,
    ) -> LineLog {
        LineLog {
            stage: stage.to_string(),
            total,
            unit,
            clock,
            sink: Mutex::new(sink),
            state: Mutex::new(LineState::default()),
        }
    }

    fn update(&self, change: impl FnOnce(&mut LineState)) {
        let now = (self.clock)();
        let mut s = self.state.lock().expect("progress state");
        change(&mut s);
        s.counted = true;
        if s.hidden || s.finished || now.saturating_sub(s.last_line) < LOG_EVERY {
            return;
        }
        s.last_line = now;
        s.wrote = true;
        let line = self.line(&s, now, false);
        drop(s);
        self.write(&line);
    }

    fn finish(&self) {
        let now = (self.clock)();
        let mut s = self.state.lock().expect("progress state");
        if s.hidden || s.finished {
            return;
        }
        s.finished = true;
        if !s.wrote && now < QUIET_UNDER {
            return;
        }
        let line = self.line(&s, now, true);
        drop(s);
        self.write(&line);
    }

    fn line(&self, s: &LineState, elapsed: Duration, finished: bool) -> String {
        format_line(&LineView {
            stage: &self.stage,
            done: s.done,
            total: self.total,
            counted: s.done.saturating_sub(s.base),
            elapsed,
            unit: self.unit,
            msg: &s.msg,
            finished,
        })
    }

    fn write(&self, line: &str) {
        let mut sink = self.sink.lock().expect("progress sink");
        // Progress is a courtesy: a closed stderr must not fail the run.
        let _ = writeln!(sink, "{line}");
        let _ = sink.flush();
    }
}

/// Everything one log line shows.
struct LineView<'a> {
    stage: &'a str,
    done: u64,
    total: u64,
    /// Units done since counting began (the rate's numerator).
    counted: u64,
    elapsed: Duration,
    unit: Unit,
    msg: &'a str,
    finished: bool,
}

/// Units per second, once there is something to divide.
fn rate(counted: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (counted > 0 && secs > 0.0).then(|| counted as f64 / secs)
}

/// Time left at `rate`, rounded up to whole seconds.
fn eta(done: u64, total: u64, rate: Option<f64>) -> Option<Duration> {
    let left = total.saturating_sub(done) as f64;
    rate.map(|r| Duration::from_secs((left / r).ceil() as u64))
}

/// `27s`, `4m05s`, `2h03m`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Items => HumanCount(n).to_string(),
        Unit::Bytes => BinaryBytes(n).to_string(),
    }
}

fn rate_text(r: Option<f64>, unit: Unit) -> String {
    match (r, unit) {
        (None, _) => "-".into(),
        (Some(r), Unit::Bytes) => format!("{}/s", BinaryBytes(r as u64)),
        (Some(r), Unit::Items) if r >= 10.0 => format!("{}/s", HumanCount(r.round() as u64)),
        (Some(r), Unit::Items) if r >= 1.0 => format!("{r:.1}/s"),
        (Some(r), Unit::Items) => format!("{r:.2}/s"),
    }
}

/// `progress: gradnorm 12,000/63,840 (1,950/s, eta 27s)`; a finished stage reports its time
/// instead of an ETA.
fn format_line(v: &LineView<'_>) -> String {
    let r = rate(v.counted, v.elapsed);
    let when = if v.finished {
        format!("done in {}", short_duration(v.elapsed))
    } else {
        eta(v.done, v.total, r).map_or("eta -".into(), |d| format!("eta {}", short_duration(d)))
    };
    let mut line = format!(
        "progress: {} {}/{} ({}, {when})",
        v.stage,
        amount(v.done, v.unit),
        amount(v.total, v.unit),
        rate_text(r, v.unit),
    );
    if !v.msg.is_empty() {
        line.push(' ');
        line.push_str(v.msg);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn view(done: u64, total: u64, secs: u64) -> LineView<'static> {
        LineView {
            stage: "gradnorm",
            done,
            total,
            counted: done,
            elapsed: Duration::from_secs(secs),
            unit: Unit::Items,
            msg: "",
            finished: false,
        }
    }

    #[test]
    fn line_shows_stage_counts_rate_and_eta() {
        assert_eq!(
            format_line(&view(12_000, 63_840, 6)),
            "progress: gradnorm 12,000/63,840 (2,000/s, eta 26s)"
        );
        let mut v = view(63_840, 63_840, 33);
        v.finished = true;
        assert_eq!(
            format_line(&v),
            "progress: gradnorm 63,840/63,840 (1,935/s, done in 33s)"
        );
        // Nothing counted yet: no rate, no ETA.
        assert_eq!(
            format_line(&view(0, 10, 0)),
            "progress: gradnorm 0/10 (-, eta -)"
        );
        let mut v = view(3, 10, 4);
        v.stage = "train";
        v.msg = "loss 0.1234";
        assert_eq!(
            format_line(&v),
            "progress: train 3/10 (0.75/s, eta 10s) loss 0.1234"
        );
        let mut v = view(1 << 20, 4 << 20, 2);
        v.unit = Unit::Bytes;
        assert_eq!(
            format_line(&v),
            "progress: gradnorm 1.00 MiB/4.00 MiB (512.00 KiB/s, eta 6s)"
        );
    }

    #[test]
    fn rate_and_eta_math() {
        assert_eq!(rate(0, Duration::from_secs(5)), None);
        assert_eq!(rate(10, Duration::ZERO), None);
        assert_eq!(rate(30, Duration::from_secs(4)), Some(7.5));
        assert_eq!(eta(30, 100, Some(7.5)), Some(Duration::from_secs(10)));
        assert_eq!(eta(100, 100, Some(7.5)), Some(Duration::ZERO));
        assert_eq!(eta(5, 10, None), None);
        assert_eq!(short_duration(Duration::from_secs(59)), "59s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(short_duration(Duration::from_secs(7380)), "2h03m");
        assert_eq!(rate_text(Some(1950.4), Unit::Items), "1,950/s");
        assert_eq!(rate_text(Some(3.26), Unit::Items), "3.3/s");
    }

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn non_terminal_mode_logs_periodically_and_at_the_end() {
        let sink = Shared::default();
        let secs = Arc::new(AtomicU64::new(0));
        let clock = {
            let secs = secs.clone();
            Box::new(move || Duration::from_secs(secs.load(Ordering::SeqCst)))
        };
        let p = Progress {
            bar: ProgressBar::hidden(),
            log: Some(LineLog::new(
                "gradnorm",
                1_000,
                Unit::Items,
                clock,
                Box::new(sink.clone()),
            )),
        };
        let text = || String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        // A resumed run: the first 100 were done before, so they are not in the rate.
        p.set_position(100);
        secs.store(4, Ordering::SeqCst);
        p.inc(100);
        assert_eq!(text(), "", "no line before {LOG_EVERY:?}");
        secs.store(10, Ordering::SeqCst);
        p.inc(100);
        assert_eq!(text(), "progress: gradnorm 300/1,000 (20/s, eta 35s)\n");
        secs.store(15, Ordering::SeqCst);
        p.set_message("loss 0.5");
        p.inc(700);
        p.finish_and_clear();
        p.finish_and_clear();
        assert_eq!(
            text(),
            "progress: gradnorm 300/1,000 (20/s, eta 35s)\n\
             progress: gradnorm 1,000/1,000 (60/s, done in 15s) loss 0.5\n"
        );
    }

    #[test]
    fn a_stage_shorter_than_quiet_under_writes_nothing() {
        let sink = Shared::default();
        let secs = Arc::new(AtomicU64::new(0));
        let clock = {
            let secs = secs.clone();
            Box::new(move || Duration::from_secs(secs.load(Ordering::SeqCst)))
        };
        let log = |stage: &str, clock| Progress {
            bar: ProgressBar::hidden(),
            log: Some(LineLog::new(
                stage,
                10,
                Unit::Items,
                clock,
                Box::new(sink.clone()),
            )),
        };
        let quick = log("quick", clock);
        quick.inc(10);
        secs.store(1, Ordering::SeqCst);
        quick.finish_and_clear();
        let text = || String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text(), "");
        // The same stage lasting QUIET_UNDER says that it finished.
        let clock = {
            let secs = secs.clone();
            Box::new(move || Duration::from_secs(secs.load(Ordering::SeqCst)))
        };
        let slow = log("slow", clock);
        slow.inc(10);
        secs.store(QUIET_UNDER.as_secs(), Ordering::SeqCst);
        slow.finish_and_clear();
        assert_eq!(text(), "progress: slow 10/10 (5.0/s, done in 2s)\n");
    }

    #[test]
    fn hidden_stage_writes_nothing() {
        let sink = Shared::default();
        let p = Progress {
            bar: ProgressBar::hidden(),
            log: Some(LineLog::new(
                "gradnorm",
                10,
                Unit::Items,
                Box::new(|| Duration::from_secs(60)),
                Box::new(sink.clone()),
            )),
        };
        p.set_draw_target(ProgressDrawTarget::hidden());
        p.inc(10);
        p.finish_and_clear();
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
