//! What people type into `/seek` and `/remove` / `/move` (`docs/fuzzing.md`).
#![no_main]

use std::time::Duration;

use encore::discord::commands::parse::{parse_positions, parse_time, SeekTo};
use libfuzzer_sys::fuzz_target;

/// `parse_time`'s ceiling: 100 hours.
const MAX_TIME: Duration = Duration::from_secs(100 * 3600);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_time(text) {
        Ok(to) => {
            let (SeekTo::At(d) | SeekTo::Forward(d) | SeekTo::Back(d)) = to;
            assert!(d <= MAX_TIME, "{text:?} -> {d:?}");
            // From anywhere in a track up to a century long, the target is reachable
            // without overflow and lands where the sign says.
            for now in [
                Duration::ZERO,
                Duration::from_millis(1500),
                Duration::from_secs(u32::MAX as u64),
            ] {
                let at = to.resolve(now);
                match to {
                    SeekTo::At(_) => assert_eq!(at, d),
                    SeekTo::Forward(_) => assert_eq!(at, now + d),
                    SeekTo::Back(_) => assert_eq!(at, now.saturating_sub(d)),
                }
            }
        }
        Err(e) => short_sentence(text, &e),
    }
    for len in [0, 1, 3, 10, 1000] {
        match parse_positions(text, len) {
            Ok((from, to)) => {
                assert!(
                    1 <= from && from <= to && to <= len,
                    "{text:?} in {len}: {from}..={to}"
                );
            }
            Err(e) => short_sentence(text, &e),
        }
    }
});

/// An error is a short sentence, and the user's text quoted in it cannot open or close a
/// code span of its own (Discord markup).
fn short_sentence(text: &str, e: &str) {
    assert!(!e.is_empty(), "{text:?}");
    assert!(e.chars().count() <= 300, "{text:?}: {e}");
    assert!(e.matches('`').count() % 2 == 0, "{text:?}: {e}");
}
