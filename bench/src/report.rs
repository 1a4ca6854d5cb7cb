//! Result lines: a table for people, JSON lines for machines.

use serde_json::json;

/// Prints a line to stdout. When stdout is gone (piped into `head`), the report stops
/// quietly, as command-line tools do, instead of panicking.
macro_rules! emit {
    ($($arg:tt)*) => {
        hive_client::outln!($($arg)*)
    };
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

/// One row of a cost breakdown: what a stage of a data path costs per byte of user
/// data, for the reader to see where the time goes.
pub struct Cost {
    pub suite: &'static str,
    /// The data path, like `put` or `get`.
    pub path: &'static str,
    pub stage: &'static str,
    pub ns_per_byte: f64,
    /// Fraction of the path's modelled total; `None` for rows outside the model (a
    /// whole run measured for comparison).
    pub share: Option<f64>,
    /// How it was measured, for the table only.
    pub how: String,
}

pub struct Report {
    json: bool,
    printed_header: bool,
    /// Breakdown rows, printed as a table after the result lines.
    costs: Vec<Cost>,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            printed_header: false,
            costs: Vec::new(),
        }
    }

    /// A breakdown row: printed at once as a JSON line, or kept for the table that
    /// follows the result lines.
    pub fn cost(&mut self, cost: Cost) {
        if !self.json {
            self.costs.push(cost);
            return;
        }
        let mut value = json!({
            "suite": cost.suite,
            "path": cost.path,
            "stage": cost.stage,
            "ns_per_byte": round3(cost.ns_per_byte),
        });
        if let Some(share) = cost.share {
            value["share"] = json!(round3(share));
        }
        emit!("{value}");
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
        let mut path = "";
        for cost in &self.costs {
            if cost.path != path {
                path = cost.path;
                emit!(
                    "\n{} {path}: CPU per byte of user data\n{:<14} {:>8} {:>7}  measured as",
                    cost.suite,
                    "stage",
                    "ns/byte",
                    "share"
                );
            }
            let share = cost
                .share
                .map_or_else(String::new, |s| format!("{:.1}%", s * 100.0));
            emit!(
                "{:<14} {:>8.3} {:>7}  {}",
                cost.stage,
                cost.ns_per_byte,
                share,
                cost.how
            );
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
