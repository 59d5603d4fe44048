//! Log lines of the native path, handed to Python's logging in batches.
//!
//! The native path writes no log I/O itself: a line (an upstream failure,
//! already rate-limited per target by `upstream::FailureLog`) is queued here
//! and the control plane's drain task writes it through the named Python
//! logger, so it comes out as the same JSON line Python would have written.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

/// Python's logging levels.
pub const WARNING: u8 = 30;

/// Lines kept while Python does not drain; older ones are dropped first.
const CAPACITY: usize = 10_000;

/// One queued line: level, logger name, message.
pub type Line = (u8, &'static str, String);

fn queue() -> &'static Mutex<VecDeque<Line>> {
    static QUEUE: OnceLock<Mutex<VecDeque<Line>>> = OnceLock::new();
    QUEUE.get_or_init(|| Mutex::new(VecDeque::new()))
}

/// Queue a line for `logger` at `level`.
pub fn push(level: u8, logger: &'static str, message: String) {
    let mut lines = queue().lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() >= CAPACITY {
        lines.pop_front();
    }
    lines.push_back((level, logger, message));
}

/// Take up to `max` queued lines, oldest first.
pub fn drain(max: usize) -> Vec<Line> {
    let mut lines = queue().lock().unwrap_or_else(|e| e.into_inner());
    let n = max.min(lines.len());
    lines.drain(..n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_in_order_and_the_queue_is_bounded() {
        push(WARNING, "bastion.test", "one".into());
        push(WARNING, "bastion.test", "two".into());
        let got = drain(1);
        assert_eq!(got, vec![(WARNING, "bastion.test", "one".to_string())]);
        for i in 0..CAPACITY + 5 {
            push(WARNING, "bastion.test", i.to_string());
        }
        let all = drain(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(
            all.last().map(|l| l.2.as_str()),
            Some((CAPACITY + 4).to_string().as_str())
        );
    }
}
