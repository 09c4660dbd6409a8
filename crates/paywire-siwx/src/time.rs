//! A strict RFC 3339 subset for sign-in timestamps: `YYYY-MM-DDTHH:MM:SS(.f+)?Z`,
//! UTC only, 1 to 9 fraction digits, no leap seconds, years 1970–9999.
//!
//! Times are handled as Unix milliseconds (`u64`) everywhere in this crate.

use std::sync::Arc;

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {text:?} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z): {why}")]
pub struct TimeError {
    /// The text received (truncated to 64 characters).
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A source of the current time in Unix milliseconds. Injected so tests can
/// move time forward.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

fn fail(text: &str, why: &'static str) -> TimeError {
    TimeError {
        text: text.chars().take(64).collect(),
        why,
    }
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a valid civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719_468 days separate 0000-03-01 from 1970-01-01; year >= 1970 keeps this positive.
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn digits(text: &str, bytes: &[u8], range: std::ops::Range<usize>) -> Result<u64, TimeError> {
    let slice = bytes.get(range).ok_or_else(|| fail(text, "too short"))?;
    slice.iter().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u64::from(b - b'0'))
        } else {
            Err(fail(text, "expected a digit"))
        }
    })
}

/// Parses a timestamp into Unix milliseconds (fraction digits beyond the
/// millisecond are truncated).
pub fn parse_rfc3339(text: &str) -> Result<u64, TimeError> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.len() > 30 {
        return Err(fail(text, "wrong length"));
    }
    for (index, expected) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        if bytes[index] != expected {
            return Err(fail(text, "wrong separator"));
        }
    }
    let year = digits(text, bytes, 0..4)?;
    let month = digits(text, bytes, 5..7)?;
    let day = digits(text, bytes, 8..10)?;
    let hour = digits(text, bytes, 11..13)?;
    let minute = digits(text, bytes, 14..16)?;
    let second = digits(text, bytes, 17..19)?;
    if year < 1970 {
        return Err(fail(text, "year before 1970"));
    }
    if !(1..=12).contains(&month) {
        return Err(fail(text, "month out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(fail(text, "day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail(text, "time of day out of range"));
    }
    let rest = &bytes[19..];
    let millis = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] => {
            if fraction.is_empty() || fraction.len() > 9 {
                return Err(fail(text, "fraction must have 1 to 9 digits"));
            }
            let mut millis = 0;
            for (index, b) in fraction.iter().enumerate() {
                if !b.is_ascii_digit() {
                    return Err(fail(text, "expected a digit"));
                }
                if index < 3 {
                    millis += u64::from(b - b'0') * [100, 10, 1][index];
                }
            }
            millis
        }
        _ => return Err(fail(text, "must end in Z (UTC) after seconds")),
    };
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.sssZ` (the form
/// JavaScript's `Date.toISOString` writes).
pub fn format_rfc3339(unix_millis: u64) -> String {
    let days = unix_millis / 86_400_000;
    let in_day = unix_millis % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, millis) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.000Z"),
            Ok(1_705_314_600_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.123456789Z"),
            Ok(1_709_251_199_123)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.5Z"),
            Ok(1_705_314_600_500)
        );
        assert_eq!(
            format_rfc3339(1_705_314_600_000),
            "2024-01-15T10:30:00.000Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn round_trips_over_a_range() {
        let mut t = 0u64;
        while t < 4_102_444_800_000 {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t), "{t}");
            t += 86_399_999 * 17 + 12_345;
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2024-01-15",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30:00+00:00",
            "2024-01-15t10:30:00Z",
            "2024-01-15 10:30:00Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00.0000000000Z",
            "2024-13-15T10:30:00Z",
            "2024-00-15T10:30:00Z",
            "2023-02-29T10:30:00Z",
            "2024-04-31T10:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:60:00Z",
            "2024-01-15T10:30:60Z",
            "1969-12-31T23:59:59Z",
            "2024-01-15T10:30:00.00aZ",
            "+024-01-15T10:30:00Z",
            "2024-01-15T10:30:00ZZ",
            "２024-01-15T10:30:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }
}
