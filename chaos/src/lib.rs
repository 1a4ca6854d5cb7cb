//! `hive-chaos`: runs a workload against a local cluster while it injects faults from a
//! seeded schedule, records every acknowledged write in a ledger, and checks afterwards
//! that every one of them reads back exactly.
//!
//! - [`ledger`]: the append-only record of what the cluster acknowledged or refused.
//! - [`schedule`]: the named schedules and the seeded plan each makes.
//! - [`faults`]: how each fault is produced on a local cluster's real processes and
//!   store files, and healed.
//! - [`workload`]: the writers and the readers that verify while the faults happen.
//! - [`files`]: the file workload through a FUSE mount, and its checker.
//! - [`proxy`]: the UDP fault proxy the network faults are made with.
//! - [`checker`]: reads every ledger entry back once the faults are healed.
//! - [`report`]: what a run tells, as text and JSON.
//! - [`run`]: puts them together.

pub mod checker;
pub mod faults;
pub mod files;
pub mod ledger;
pub mod proxy;
pub mod report;
pub mod run;
pub mod schedule;
pub mod workload;
