//! Text shown in Discord: durations, track links, progress bars. Pure functions.

use std::time::Duration;

use crate::sources::Track;

/// `3:05`, `1:02:03`; live or unknown is `?:??` handled by callers.
pub fn clock(d: Duration) -> String {
    crate::sources::fmt_hms(d)
}

/// The track's length as shown next to its title.
pub fn length(track: &Track) -> String {
    match (track.is_live, track.duration) {
        (true, _) => "live".into(),
        (false, Some(d)) => clock(d),
        (false, None) => "unknown length".into(),
    }
}

/// Escapes what Discord markdown would otherwise interpret inside a link label.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '\\' | '>' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn trim(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.chars().count() < text.chars().count() {
        out.push('…');
    }
    out
}

/// `[Title](url)` with the title trimmed to `max` characters.
pub fn link(track: &Track, max: usize) -> String {
    format!("[{}]({})", escape(&trim(&track.title, max)), track.page_url)
}

/// `**Title**`, trimmed to `max` characters and escaped.
pub fn bold(title: &str, max: usize) -> String {
    format!("**{}**", escape(&trim(title, max)))
}

/// "1 track", "3 tracks".
pub fn tracks(n: usize) -> String {
    format!("{n} track{}", if n == 1 { "" } else { "s" })
}

/// When each of `lengths` starts, counted from now, given what is left of the current
/// track: `None` from the first unknown length on (live, or not known).
pub fn start_times(
    current_left: Option<Duration>,
    lengths: impl IntoIterator<Item = Option<Duration>>,
) -> Vec<Option<Duration>> {
    let mut at = current_left;
    lengths
        .into_iter()
        .map(|len| {
            let starts = at;
            at = match (at, len) {
                (Some(a), Some(l)) => Some(a + l),
                _ => None,
            };
            starts
        })
        .collect()
}

/// `▬▬▬🔘▬▬▬▬▬▬` style bar of `width` cells.
pub fn progress_bar(position: Duration, total: Duration, width: usize) -> String {
    let width = width.max(2);
    let frac = if total.is_zero() {
        0.0
    } else {
        (position.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0)
    };
    let at = ((frac * (width - 1) as f64).round() as usize).min(width - 1);
    (0..width)
        .map(|i| if i == at { '🔘' } else { '▬' })
        .collect()
}

/// "total 12:34" with a note for tracks of unknown length.
pub fn total(sum: Duration, unknown: usize) -> String {
    match unknown {
        0 => clock(sum),
        n => format!("{} + {n} of unknown length", clock(sum)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        assert_eq!(clock(Duration::from_secs(0)), "0:00");
        assert_eq!(clock(Duration::from_secs(185)), "3:05");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn links_escape_and_trim() {
        let mut t = crate::player::test_track("x");
        t.title = "a*b_[c]".into();
        assert_eq!(link(&t, 100), "[a\\*b\\_\\[c\\]](https://example.com/x)");
        t.title = "abcdefghij".into();
        assert_eq!(link(&t, 4), "[abcd…](https://example.com/x)");
    }

    #[test]
    fn bars() {
        let b = progress_bar(Duration::from_secs(0), Duration::from_secs(100), 10);
        assert!(b.starts_with('🔘'));
        let b = progress_bar(Duration::from_secs(100), Duration::from_secs(100), 10);
        assert!(b.ends_with('🔘'));
        assert_eq!(b.chars().count(), 10);
        let b = progress_bar(Duration::from_secs(50), Duration::ZERO, 5);
        assert!(b.starts_with('🔘'));
    }

    #[test]
    fn start_times_add_up_until_an_unknown() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(
            start_times(s(30), [s(60), s(10), None, s(5)]),
            vec![s(30), s(90), s(100), None]
        );
        assert_eq!(start_times(None, [s(1)]), vec![None]);
        assert!(start_times(s(1), []).is_empty());
    }

    #[test]
    fn bold_and_counts() {
        assert_eq!(bold("a*b", 10), "**a\\*b**");
        assert_eq!(bold("abcdef", 3), "**abc…**");
        assert_eq!(tracks(1), "1 track");
        assert_eq!(tracks(2), "2 tracks");
    }

    #[test]
    fn lengths_and_totals() {
        let mut t = crate::player::test_track("x");
        assert_eq!(length(&t), "1:00");
        t.is_live = true;
        assert_eq!(length(&t), "live");
        assert_eq!(total(Duration::from_secs(61), 0), "1:01");
        assert_eq!(
            total(Duration::from_secs(61), 2),
            "1:01 + 2 of unknown length"
        );
    }
}
