//! Synced lyrics as a timeline: LRC (`[mm:ss.xx] line`) parsed by the `lrc` crate, kept as
//! plain `(time, line)` pairs so they can cross tasks (the crate's type is not `Send`).

use std::time::Duration;

/// Timed lines in order of their time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    lines: Vec<(Duration, String)>,
}

impl Timeline {
    /// The timed lines of `lrc`; `None` when it has none (or does not parse).
    pub fn parse(lrc: &str) -> Option<Timeline> {
        let parsed = lrc::Lyrics::from_str(lrc)
            .map_err(|e| tracing::debug!(error = %e, "unreadable synced lyrics"))
            .ok()?;
        let mut lines: Vec<(Duration, String)> = parsed
            .get_timed_lines()
            .iter()
            .map(|(tag, text)| {
                let ms = tag.get_timestamp().max(0) as u64;
                (Duration::from_millis(ms), text.to_string())
            })
            .collect();
        lines.sort_by_key(|(t, _)| *t);
        (!lines.is_empty()).then_some(Timeline { lines })
    }

    pub fn lines(&self) -> &[(Duration, String)] {
        &self.lines
    }

    /// The line being sung at `position`: the last one that started; `None` before the first.
    pub fn index_at(&self, position: Duration) -> Option<usize> {
        self.lines
            .partition_point(|(t, _)| *t <= position)
            .checked_sub(1)
    }

    /// When the line after the one at `position` starts, if one does.
    pub fn next_change(&self, position: Duration) -> Option<Duration> {
        let i = self.lines.partition_point(|(t, _)| *t <= position);
        self.lines.get(i).map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LRC: &str = "[00:01.00] one\n[00:03.50] two\n[00:02.00] between\n[01:00.25] late\n";

    #[test]
    fn lines_are_ordered_and_found_by_position() {
        let t = Timeline::parse(LRC).unwrap();
        let texts: Vec<_> = t.lines().iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(texts, ["one", "between", "two", "late"]);
        assert_eq!(t.lines()[3].0, Duration::from_millis(60_250));
        assert_eq!(t.index_at(Duration::ZERO), None);
        assert_eq!(t.index_at(Duration::from_secs(1)), Some(0));
        assert_eq!(t.index_at(Duration::from_millis(3_499)), Some(1));
        assert_eq!(t.index_at(Duration::from_secs(5)), Some(2));
        assert_eq!(t.index_at(Duration::from_secs(600)), Some(3));
        assert_eq!(
            t.next_change(Duration::from_secs(2)),
            Some(Duration::from_millis(3_500))
        );
        assert_eq!(t.next_change(Duration::from_secs(61)), None);
    }

    #[test]
    fn text_without_time_tags_is_not_synced() {
        assert!(Timeline::parse("just words\nmore words").is_none());
        assert!(Timeline::parse("").is_none());
    }
}
