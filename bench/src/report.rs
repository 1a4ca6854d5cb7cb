//! Result lines: a table for people, JSON lines for machines.

use serde_json::json;

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
            println!("{value}");
            return;
        }
        if !self.printed_header {
            println!(
                "{:<7} {:<26} {:>7} {:>11} {:>11} {:>7}  baseline",
                "suite", "name", "unit", "hive", "baseline", "ratio"
            );
            self.printed_header = true;
        }
        println!(
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
            println!(
                "ratio > 1 means HiveFS is faster; both sides ran interleaved in this process."
            );
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
