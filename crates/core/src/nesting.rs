//! Recursion over what a user wrote (a PromQL query, a demand expression), bounded.
//!
//! The parsers and the evaluator recurse once per level of the expression (a function,
//! a parenthesis, an operator of a chain `a + b + c`), and a level takes from a few
//! hundred bytes of stack (release) to tens of kilobytes (debug). A query of 3,000
//! nested `abs(` overflowed a 2 MiB thread stack and aborted the daemon, whose query API
//! anyone who reaches it may call. So each level runs on a stack grown on the heap when
//! the thread's runs low ([`grow`]), and parsing refuses an expression deeper than
//! [`MAX_NESTING`] levels ([`nest`]), which bounds the evaluator's recursion too and
//! the time a parser that rescans each level's text may take.

use std::cell::Cell;

/// The most levels an expression may nest. Deeper ones are refused, saying so; a
/// dashboard's queries nest a few levels, and a chain of 200 `or`s still parses.
pub const MAX_NESTING: usize = 256;

/// Stack that must be left for a level to run on the current one: more than the
/// deepest single level takes (about 30 KB unoptimised).
const RED_ZONE: usize = if cfg!(debug_assertions) {
    256 << 10
} else {
    64 << 10
};

/// The size of each stack segment grown.
const SEGMENT: usize = 2 << 20;

thread_local! {
    /// Levels entered through [`nest`] on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`, on a new stack segment if this thread's is within the red zone of its end.
/// For recursion whose depth is already bounded (evaluating a parsed expression).
pub fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}

/// Runs `f` one level deeper (see [`grow`]), or refuses when that is more than
/// [`MAX_NESTING`] levels below the outermost [`nest`] on this thread.
pub fn nest<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    /// Leaves the level however `f` returns (a panic included).
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    let depth = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let _level = Level;
    if depth > MAX_NESTING {
        return Err(format!(
            "the expression nests more than {MAX_NESTING} levels deep (each function, \
             parenthesis and operator of a chain is a level): write it with fewer"
        ));
    }
    grow(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(n: usize) -> Result<usize, String> {
        nest(|| {
            if n == 0 {
                Ok(0)
            } else {
                depth(n - 1).map(|d| d + 1)
            }
        })
    }

    #[test]
    fn refuses_past_the_limit_and_counts_from_zero_again() {
        assert_eq!(depth(MAX_NESTING - 1), Ok(MAX_NESTING - 1));
        let e = depth(MAX_NESTING).unwrap_err();
        assert!(e.contains("more than 256 levels"), "{e}");
        // Every level was left, the refused ones too.
        assert_eq!(DEPTH.with(Cell::get), 0);
        assert_eq!(depth(3), Ok(3));
    }

    #[test]
    fn a_level_left_by_a_panic_is_left() {
        let r = std::panic::catch_unwind(|| nest::<()>(|| panic!("inside")));
        assert!(r.is_err());
        assert_eq!(DEPTH.with(Cell::get), 0);
    }

    #[test]
    fn deep_recursion_runs_on_grown_stacks() {
        // 20,000 levels of a 1 KiB frame: 20 MB, ten times a test thread's 2 MiB.
        fn down(n: usize) -> usize {
            let frame = std::hint::black_box([n as u8; 1024]);
            let below = if n == 0 { 0 } else { grow(|| down(n - 1)) };
            below + frame[1023] as usize
        }
        assert_eq!(down(20_000), (0..=20_000).map(|n| n % 256).sum::<usize>());
    }
}
