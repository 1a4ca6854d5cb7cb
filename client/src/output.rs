//! Printing a command's report to standard output.
//!
//! `println!` panics when the reader of a pipe has gone (`hive inspect file … | head`).
//! A report cut short by its reader is not an error: the command stops quietly, the way
//! any Unix tool does.

use std::io::{ErrorKind, Write};

/// Write `text` to standard output; exit 0 at once if the reader has closed the pipe.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

/// [`print`] with a line end.
pub fn println(line: &str) {
    print(&format!("{line}\n"));
}

/// `println!` through [`println`]: a report whose reader has closed the pipe ends the
/// command quietly instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::println(&format!($($arg)*))
    };
}
