//! How audio cache files are named and recognised; apart to keep audio.rs about bookkeeping.

/// FNV-1a, 64 bits: stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache file name of `key`: `<key, unsafe characters as _, at most 64>.<hash>.<ext>`,
/// with `ext` lowercased alphanumerics (at most 8) or `bin`.
pub fn file_name_for(key: &str, ext: Option<&str>) -> String {
    let safe: String = key
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ext = ext
        .map(str::to_ascii_lowercase)
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "bin".into());
    format!("{safe}.{:016x}.{ext}", fnv1a64(key))
}

/// True for names [`file_name_for`] produces.
pub fn is_cache_file_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    let [stem, hash, ext] = parts.as_slice() else {
        return false;
    };
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && hash.len() == 16
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && !ext.is_empty()
        && ext.len() <= 8
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// True for `YtDlp::download`'s temporary names (`.<name>.<hex>.encore-dl…`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".encore-dl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let n = file_name_for("youtube:dQw4w9WgXcQ", Some("webm"));
        assert!(n.starts_with("youtube_dQw4w9WgXcQ."), "{n}");
        assert!(n.ends_with(".webm"));
        assert!(is_cache_file_name(&n));
        let n = file_name_for("generic:../../etc/passwd", Some("../x"));
        assert!(!n.contains('/') && n.ends_with(".bin"), "{n}");
        assert!(is_cache_file_name(&n));
        assert_ne!(
            file_name_for("a:b", None),
            file_name_for("a_b", None),
            "the hash keeps keys apart"
        );
        assert_eq!(file_name_for("a:b", None), file_name_for("a:b", None));
        assert!(is_temp_name(".x.0123456789abcdef.webm.00aa.encore-dl"));
        for other in [
            "encore.db",
            "notes.txt",
            ".hidden",
            "a.b.c",
            "x.0123456789ABCDEF.webm",
        ] {
            assert!(
                !is_cache_file_name(other) && !is_temp_name(other),
                "{other}"
            );
        }
    }
}
