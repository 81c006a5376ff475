//! Recursion over what a user wrote (a PromQL query, a demand expression), bounded.
//!
//! The parsers and the evaluator recurse once per level of the expression (a function,
//! a parenthesis, an operator of a chain `a + b + c`), and a level takes from a few
//! hundred bytes of stack (release) to tens of kilobytes (debug). A query of 3,000
//! nested `abs(` overflowed a 2 MiB thread stack and aborted the daemon, whose query API
//! anyone who reaches it may call. So each level runs on a stack grown on the heap when
//! the thread's runs low ([`grow`]), and parsing refuses an expression deeper than
//! [`MAX_NESTING`] levels ([`nest`]), which bounds the evaluator's recursion too.
//!
//! The parsers rescan each level's text, so a long text nested deep takes as long as
//! the text of all its levels: a 2 MB chain `x+x+...` took 3 s to refuse at its 257th
//! level, and 250 `sum(` around a 2 MB name 2.6 s to parse. [`nest`] also refuses an
//! expression whose levels hold more than [`MAX_LEVELS_TEXT`] bytes between them,
//! which bounds that time (to under half a second in a release build) and no query a
//! dashboard sends: 2 MB of pod names in a regex may still sit under 11 nested
//! aggregations, or 31 functions.

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

/// The most text, in bytes, the levels of one expression may hold between them (each
/// level's text counted once per level it is inside).
pub const MAX_LEVELS_TEXT: usize = 64 << 20;

thread_local! {
    /// Levels entered through [`nest`] on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The text of the levels entered since the outermost one was, in bytes.
    static TEXT: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`, on a new stack segment if this thread's is within the red zone of its end.
/// For recursion whose depth is already bounded (evaluating a parsed expression).
pub fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}

/// Runs `f`, which parses `text`, one level deeper (see [`grow`]), or refuses when that
/// is more than [`MAX_NESTING`] levels below the outermost [`nest`] on this thread, or
/// when the levels entered since that one began hold more than [`MAX_LEVELS_TEXT`]
/// bytes of text.
pub fn nest<R>(text: &str, f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
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
    let held = TEXT.with(|t| {
        let held = if depth == 1 { 0 } else { t.get() } + text.len();
        t.set(held);
        held
    });
    if held > MAX_LEVELS_TEXT {
        return Err(format!(
            "the expression is too long for how deep it nests: its levels (each function, \
             parenthesis and operator of a chain is one) hold more than {} MiB of text \
             between them, {depth} levels in; nest it less, or shorten what the deep levels \
             hold",
            MAX_LEVELS_TEXT >> 20
        ));
    }
    grow(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(n: usize) -> Result<usize, String> {
        nest("x", || {
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

    /// A parser that takes a level per `(` in front of `text`, each holding the rest.
    fn peel(text: &str) -> Result<usize, String> {
        nest(text, || match text.strip_prefix('(') {
            Some(rest) => peel(rest).map(|d| d + 1),
            None => Ok(0),
        })
    }

    #[test]
    fn refuses_levels_holding_too_much_text_and_counts_from_zero_again() {
        // 100 parentheses around a name: a MiB in all, each level a little less.
        let text = format!("{}{}", "(".repeat(100), "x".repeat((1 << 20) - 100));
        let e = peel(&text).unwrap_err();
        assert!(
            e.contains("more than 64 MiB") && e.contains("65 levels in"),
            "{e}"
        );
        assert_eq!(DEPTH.with(Cell::get), 0);
        // 63 of them: 64 levels of under a MiB each pass, alone or after the refused
        // one (each expression counts from nothing).
        assert_eq!(peel(&text[37..]), Ok(63));
        assert!(peel(&text[36..]).is_err());
        assert_eq!(peel(&text[37..]), Ok(63));
        // Short levels nest as deep as ever.
        assert_eq!(peel(&"(".repeat(MAX_NESTING - 1)), Ok(MAX_NESTING - 1));
    }

    #[test]
    fn a_level_left_by_a_panic_is_left() {
        let r = std::panic::catch_unwind(|| nest::<()>("x", || panic!("inside")));
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
