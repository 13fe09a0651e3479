//! Human-friendly byte sizes for the configuration: `"2GiB"`, `"500 MB"`, `"1.5gib"`,
//! `1048576` (a plain integer is bytes).
//!
//! Units (case-insensitive, optional space before them): `B`; decimal `KB` `MB` `GB` `TB`
//! (powers of 1000) and binary `KiB` `MiB` `GiB` `TiB` (powers of 1024). `K`/`M`/`G`/`T`
//! alone are taken as binary, the way most people mean them for disk sizes.

use std::fmt;

/// Parses a size. Fractions are allowed (`"1.5GiB"`) and rounded down to whole bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(format!("{text:?} does not start with a number"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB)"
            ))
        }
    };
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("{text:?} is too large"));
    }
    let f: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a number followed by a unit"))?;
    let v = f * mult as f64;
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(v as u64)
}

/// `1536` → `"1.5 KiB"`, `0` → `"0 B"`: for `/resources` and logs.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        let s = format!("{v:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s);
        format!("{s} {}", UNITS[i])
    }
}

/// serde `deserialize_with` for a size written as a string or a plain integer of bytes.
pub fn deserialize<'de, D>(d: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as \"2GiB\" or \"500MB\", or a number of bytes")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("a size can't be negative"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_bytes(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert_eq!(parse_bytes("123B").unwrap(), 123);
        assert_eq!(parse_bytes("2KB").unwrap(), 2000);
        assert_eq!(parse_bytes("2KiB").unwrap(), 2048);
        assert_eq!(parse_bytes("2 kib").unwrap(), 2048);
        assert_eq!(parse_bytes("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_bytes("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes(" 1.5 GiB ").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1T").unwrap(), 1 << 40);
        assert_eq!(parse_bytes("1_000MB").unwrap(), 1_000_000_000);
        for bad in [
            "",
            "GiB",
            "2 parsecs",
            "-1GiB",
            "1.2.3MB",
            ".",
            "99999999999999TiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(300 << 20), "300 MiB");
    }

    #[test]
    fn deserializes_strings_and_numbers() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "deserialize")]
            a: u64,
            #[serde(deserialize_with = "deserialize")]
            b: u64,
        }
        let s: S = toml::from_str("a = \"1MiB\"\nb = 42\n").unwrap();
        assert_eq!((s.a, s.b), (1 << 20, 42));
        let e = toml::from_str::<S>("a = \"1 parsec\"\nb = 1\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        assert!(toml::from_str::<S>("a = -1\nb = 1\n").is_err());
    }
}
