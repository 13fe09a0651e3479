//! What people type into `/seek` and `/remove`, read forgivingly. Pure functions; every
//! error is a sentence to show as is.

use std::time::Duration;

use crate::discord::format::tracks;

/// Where `/seek` should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// `1:23`, `83`, `1m23s`
    At(Duration),
    /// `+30`, `+1:00`
    Forward(Duration),
    /// `-10`
    Back(Duration),
}

impl SeekTo {
    /// The absolute position from the current one.
    pub fn resolve(self, now: Duration) -> Duration {
        match self {
            SeekTo::At(d) => d,
            SeekTo::Forward(d) => now + d,
            SeekTo::Back(d) => now.saturating_sub(d),
        }
    }
}

/// Longest time accepted (anything longer is a typo).
const MAX_TIME: Duration = Duration::from_secs(100 * 3600);

const TIME_HELP: &str = "Give a time like `1:23`, `83` (seconds), `1m23s` or `1:02:03`; `+30` or `-10` jump from where it is.";

/// Reads `1:23`, `01:02:03`, `83`, `83.5`, `1m23s`, `1h 2m 3s`, `90s`, `2m`, and the same
/// with `+` / `-` in front for a relative jump.
pub fn parse_time(input: &str) -> Result<SeekTo, String> {
    let text = input.trim();
    let (sign, rest) = match text.chars().next() {
        Some('+') => (1, text[1..].trim_start()),
        Some('-') => (-1, text[1..].trim_start()),
        _ => (0, text),
    };
    let d = parse_duration(rest).ok_or_else(|| {
        if text.is_empty() {
            format!("Tell me where to go. {TIME_HELP}")
        } else {
            format!(
                "I can't read `{}` as a time. {TIME_HELP}",
                shorten(text, 30)
            )
        }
    })?;
    if d > MAX_TIME {
        return Err(format!(
            "`{}` is longer than any track. {TIME_HELP}",
            shorten(text, 30)
        ));
    }
    Ok(match sign {
        1 => SeekTo::Forward(d),
        -1 => SeekTo::Back(d),
        _ => SeekTo::At(d),
    })
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    if s.contains(':') {
        return parse_clock(&s);
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return secs(&s);
    }
    parse_units(&s)
}

fn secs(s: &str) -> Option<Duration> {
    if s.is_empty() || s == "." {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (0.0..1e12).contains(&v).then(|| Duration::from_secs_f64(v))
}

/// `m:ss` or `h:mm:ss` (the last part may have a fraction).
fn parse_clock(s: &str) -> Option<Duration> {
    let parts: Vec<&str> = s.split(':').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (last, head) = parts.split_last()?;
    if !last.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let seconds = secs(last)?;
    if seconds >= Duration::from_secs(60) {
        return None;
    }
    let mut total = 0u64;
    for (i, p) in head.iter().enumerate() {
        if !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 4 {
            return None;
        }
        let v: u64 = p.parse().ok()?;
        // minutes in h:mm:ss are below 60; a leading part may be anything.
        if i > 0 && v >= 60 {
            return None;
        }
        total = total * 60 + v;
    }
    Some(Duration::from_secs(total * 60) + seconds)
}

/// `1h2m3s`, `1m 23s`, `90s`, `2min`, `1.5m`.
fn parse_units(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut unit = String::new();
    let mut seen = false;
    let mut flush = |num: &mut String, unit: &mut String| -> Option<()> {
        if num.is_empty() {
            return if unit.is_empty() { Some(()) } else { None };
        }
        let v: f64 = num.parse().ok()?;
        let factor = match unit.as_str() {
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "s" | "sec" | "secs" | "second" | "seconds" | "" => 1.0,
            _ => return None,
        };
        total += v * factor;
        seen = true;
        num.clear();
        unit.clear();
        Some(())
    };
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            if !unit.is_empty() {
                flush(&mut num, &mut unit)?;
            }
            num.push(c);
        } else if c.is_ascii_alphabetic() {
            if num.is_empty() {
                return None;
            }
            unit.push(c);
        } else if c.is_whitespace() {
            continue;
        } else {
            return None;
        }
    }
    flush(&mut num, &mut unit)?;
    (seen && total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// Reads a queue position or range against a queue of `len` waiting tracks: `3`, `#3`,
/// `3-5`, `3..5`, `3 to 5`, `last`, `2-last`. A reversed range is turned around.
/// Returns 1-based, inclusive `(from, to)`.
pub fn parse_positions(input: &str, len: usize) -> Result<(usize, usize), String> {
    let text = input.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Err("Give a position from /queue, like `3`, or a range like `3-5`.".into());
    }
    let (a, b) = match split_range(&text) {
        Some((a, b)) => (a, Some(b)),
        None => (text.as_str(), None),
    };
    let from = parse_one(a, len, input)?;
    let to = match b {
        Some(b) => parse_one(b, len, input)?,
        None => from,
    };
    let (from, to) = (from.min(to), from.max(to));
    check_range(from, to, len)?;
    Ok((from, to))
}

fn split_range(text: &str) -> Option<(&str, &str)> {
    for sep in ["..", " to ", "-", "–", ":", " "] {
        if let Some((a, b)) = text.split_once(sep) {
            if !a.trim().is_empty() && !b.trim().is_empty() {
                return Some((a.trim(), b.trim()));
            }
        }
    }
    None
}

fn parse_one(s: &str, len: usize, whole: &str) -> Result<usize, String> {
    let s = s.trim().trim_start_matches('#');
    match s {
        "last" | "end" => Ok(len.max(1)),
        "first" | "next" => Ok(1),
        _ => s.parse::<usize>().map_err(|_| {
            format!(
                "I can't read `{}` as a position. Use a number from /queue, like `3`, or a range like `3-5`.",
                shorten(whole.trim(), 30)
            )
        }),
    }
}

/// Checks that `from..=to` (1-based) lies in a queue of `len` waiting tracks.
pub fn check_range(from: usize, to: usize, len: usize) -> Result<(), String> {
    if len == 0 {
        return Err("Nothing is waiting in the queue.".into());
    }
    for p in [from, to] {
        check_position(p, len)?;
    }
    Ok(())
}

/// Checks one 1-based position against a queue of `len` waiting tracks.
pub fn check_position(p: usize, len: usize) -> Result<(), String> {
    if len == 0 {
        return Err("Nothing is waiting in the queue.".into());
    }
    if p == 0 {
        return Err(format!(
            "Positions start at 1 (the next track); the queue has {}.",
            tracks(len)
        ));
    }
    if p > len {
        return Err(format!(
            "There is no track at position {p}; the queue has {}.",
            tracks(len)
        ));
    }
    Ok(())
}

fn shorten(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out.replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SeekTo {
        SeekTo::At(Duration::from_secs(s))
    }

    #[test]
    fn times_in_every_usual_form() {
        assert_eq!(parse_time("1:23"), Ok(at(83)));
        assert_eq!(parse_time("83"), Ok(at(83)));
        assert_eq!(parse_time("1m23s"), Ok(at(83)));
        assert_eq!(parse_time(" 1m 23s "), Ok(at(83)));
        assert_eq!(parse_time("01:02:03"), Ok(at(3723)));
        assert_eq!(parse_time("1h2m3s"), Ok(at(3723)));
        assert_eq!(parse_time("90s"), Ok(at(90)));
        assert_eq!(parse_time("2m"), Ok(at(120)));
        assert_eq!(parse_time("2 min"), Ok(at(120)));
        assert_eq!(parse_time("0"), Ok(at(0)));
        assert_eq!(parse_time("0:00"), Ok(at(0)));
        assert_eq!(
            parse_time("75:00"),
            Ok(at(4500)),
            "minutes may exceed 59 in m:ss"
        );
        assert_eq!(
            parse_time("83.5"),
            Ok(SeekTo::At(Duration::from_millis(83_500)))
        );
        assert_eq!(
            parse_time("1:02.5"),
            Ok(SeekTo::At(Duration::from_millis(62_500)))
        );
    }

    #[test]
    fn relative_times() {
        assert_eq!(
            parse_time("+30"),
            Ok(SeekTo::Forward(Duration::from_secs(30)))
        );
        assert_eq!(
            parse_time("-10s"),
            Ok(SeekTo::Back(Duration::from_secs(10)))
        );
        assert_eq!(
            parse_time("+1:00"),
            Ok(SeekTo::Forward(Duration::from_secs(60)))
        );
        let now = Duration::from_secs(20);
        assert_eq!(
            SeekTo::Back(Duration::from_secs(30)).resolve(now),
            Duration::ZERO
        );
        assert_eq!(
            SeekTo::Forward(Duration::from_secs(30)).resolve(now),
            Duration::from_secs(50)
        );
        assert_eq!(at(5).resolve(now), Duration::from_secs(5));
    }

    #[test]
    fn bad_times_are_explained() {
        for bad in [
            "",
            "abc",
            "1:60",
            "1:2:3:4",
            ":30",
            "1:",
            "1x",
            "m1",
            "1:-5",
            "--3",
            "1:aa",
            "1.2.3",
            "5 parsecs",
            "1h:2",
        ] {
            let e = parse_time(bad).expect_err(bad);
            assert!(e.contains("1:23"), "{bad}: {e}");
        }
        assert!(parse_time("999999999").unwrap_err().contains("longer"));
        assert!(parse_time("`rm -rf`").unwrap_err().contains("'rm -rf'"));
    }

    #[test]
    fn positions_and_ranges() {
        assert_eq!(parse_positions("3", 5), Ok((3, 3)));
        assert_eq!(parse_positions("#3", 5), Ok((3, 3)));
        assert_eq!(parse_positions("2-4", 5), Ok((2, 4)));
        assert_eq!(parse_positions("2..4", 5), Ok((2, 4)));
        assert_eq!(parse_positions("2 to 4", 5), Ok((2, 4)));
        assert_eq!(parse_positions("2 - 4", 5), Ok((2, 4)));
        assert_eq!(parse_positions("4-2", 5), Ok((2, 4)), "turned around");
        assert_eq!(parse_positions("last", 5), Ok((5, 5)));
        assert_eq!(parse_positions("2-last", 5), Ok((2, 5)));
        assert_eq!(parse_positions("next", 5), Ok((1, 1)));
    }

    #[test]
    fn wrong_positions_are_explained() {
        let e = parse_positions("0", 5).unwrap_err();
        assert!(e.contains("start at 1"), "{e}");
        let e = parse_positions("9", 5).unwrap_err();
        assert_eq!(
            e,
            "There is no track at position 9; the queue has 5 tracks."
        );
        let e = parse_positions("2-9", 1).unwrap_err();
        assert!(e.contains("1 track."), "{e}");
        let e = parse_positions("1", 0).unwrap_err();
        assert!(e.contains("Nothing is waiting"), "{e}");
        let e = parse_positions("x", 5).unwrap_err();
        assert!(e.contains("`x`"), "{e}");
        let e = parse_positions("-3", 5).unwrap_err();
        assert!(e.contains("can't read"), "{e}");
        let e = parse_positions("", 5).unwrap_err();
        assert!(e.contains("like `3`"), "{e}");
        let e = parse_positions("99999999999999999999999", 5).unwrap_err();
        assert!(e.contains("can't read"), "{e}");
        assert!(check_position(3, 3).is_ok());
        assert!(check_range(1, 4, 3).is_err());
    }
}
