//! Durations (`250ms`, `10s`, `5m`, `1h`, `1m30s`) and sizes (`1048576`, `64KiB`, `1MiB`).

use std::time::Duration;

/// No setting needs more; it keeps instant arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration made of one or more `<number><unit>` parts, unit one of
/// `ms`, `s`, `m`, `h`, `d`. A bare `0` is accepted as zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || {
        format!("invalid duration {t:?}: expected a number with a unit, e.g. 250ms, 10s, 5m, 1h")
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total > MAX_DURATION {
        return Err(format!("duration {t:?} is longer than the maximum of 365d"));
    }
    Ok(total)
}

/// Formats a duration the way the config file writes it (`1500ms`, `90s`, `5m`, `1h`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Parses a size: plain bytes, or a number with `KiB`, `MiB`, `GiB` (1024-based) or
/// `KB`, `MB`, `GB` (1000-based).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid size {t:?}: expected bytes or a number with a unit, e.g. 65536, 64KiB, 1MiB"
        )
    };
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let mult: u64 = match t[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("0", 0),
            (" 2s ", 2_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "10 s",
            "99999999999999999h",
            "366d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("ten").unwrap_err().contains("\"ten\""));
    }

    #[test]
    fn formats_durations_round_trip() {
        for text in ["250ms", "10s", "5m", "1h", "90s", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("1024", 1024),
            ("64KiB", 65536),
            ("1MiB", 1 << 20),
            ("1GiB", 1 << 30),
            ("2KB", 2000),
        ];
        for (text, n) in ok {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        for bad in ["", "MiB", "1.5MiB", "1TiB", "-1", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
