//! Result lines: a table for people, JSON lines for machines.

use serde_json::json;

/// Prints a line to stdout. When stdout is gone (piped into `head`), the report stops
/// quietly, as command-line tools do, instead of panicking.
macro_rules! emit {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(err) = writeln!(out, $($arg)*) {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("hive-bench: writing the report: {err}");
            std::process::exit(1);
        }
    }};
}

/// Which way a figure is better.
#[derive(Clone, Copy)]
pub enum Better {
    /// Rates: ratio = hive / baseline.
    Higher,
    /// Latencies: ratio = baseline / hive.
    #[allow(dead_code)]
    Lower,
}

/// One comparison.
pub struct Line {
    pub suite: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub hive: f64,
    pub baseline: f64,
    pub better: Better,
    /// What the baseline is, for the table's last column.
    pub against: &'static str,
}

impl Line {
    /// A rate (higher is better) measured as `t`.
    pub fn rate(
        suite: &'static str,
        name: &'static str,
        unit: &'static str,
        t: crate::measure::Throughput,
        against: &'static str,
    ) -> Self {
        Self {
            suite,
            name,
            unit,
            hive: t.hive,
            baseline: t.baseline,
            better: Better::Higher,
            against,
        }
    }

    pub fn ratio(&self) -> f64 {
        match self.better {
            Better::Higher => self.hive / self.baseline,
            Better::Lower => self.baseline / self.hive,
        }
    }
}

pub struct Report {
    json: bool,
    printed_header: bool,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            printed_header: false,
        }
    }

    /// Prints a line as soon as it is measured, so a long suite shows progress.
    pub fn add(&mut self, line: Line) {
        if self.json {
            let value = json!({
                "suite": line.suite,
                "name": line.name,
                "unit": line.unit,
                "hive": round3(line.hive),
                "baseline": round3(line.baseline),
                "ratio": round3(line.ratio()),
            });
            emit!("{value}");
            return;
        }
        if !self.printed_header {
            emit!(
                "{:<7} {:<26} {:>7} {:>11} {:>11} {:>7}  baseline",
                "suite",
                "name",
                "unit",
                "hive",
                "baseline",
                "ratio"
            );
            self.printed_header = true;
        }
        emit!(
            "{:<7} {:<26} {:>7} {:>11.1} {:>11.1} {:>7.3}  {}",
            line.suite,
            line.name,
            line.unit,
            line.hive,
            line.baseline,
            line.ratio(),
            line.against
        );
    }

    pub fn finish(&self) {
        if !self.json && self.printed_header {
            emit!("ratio > 1 means HiveFS is faster; both sides ran interleaved in this process.");
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
