//! The Java tool's way of printing an instant, which its users' scripts read.

use std::time::SystemTime;

/// `2026-11-24T20:01:48.123Z` and epoch milliseconds, as the Java tool prints instants.
pub(crate) fn java_instant(t: SystemTime) -> (String, i64) {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => (
            ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            ts.as_millisecond(),
        ),
        // Out of jiff's range (years past 9999): print something rather than nothing.
        Err(_) => (format!("{t:?}"), 0),
    }
}

/// A time zone as Java's `ZoneId.of` takes it, the way Scalar Admin for Kubernetes reads
/// `--time-zone` (its `ZoneIdConverter` is `ZoneId.of(value)`), and the id its JSON line
/// prints (`zoneId.toString()`, the normalised id: `+9` is `+09:00`, `+00:00` is `Z`,
/// `UTC+9` is `UTC+09:00`, `GMT+0` is `GMT`; a region id is kept as given).
#[derive(Debug, Clone)]
pub(crate) struct ZoneId {
    id: String,
    tz: jiff::tz::TimeZone,
}

impl ZoneId {
    /// `ZoneId.of(text)`, rule for rule (java.time.ZoneId, ZoneOffset, ZoneRegion):
    ///
    /// - one character or less, or a leading `+`/`-`: an offset (`ZoneOffset.of`);
    /// - a leading `UTC` or `GMT`, else `UT`: that prefix alone (offset zero, id the
    ///   prefix); the prefix and an offset (id the prefix and the offset's id, or the
    ///   prefix alone when the offset is zero); the prefix and anything else: a region;
    /// - otherwise a region id of the time zone database, case-sensitive.
    ///
    /// The error is Java's exception message.
    pub(crate) fn of(text: &str) -> Result<Self, String> {
        if text.len() <= 1 || text.starts_with(['+', '-']) {
            let seconds = zone_offset_of(text)?;
            return Ok(Self::fixed(offset_id(seconds), seconds));
        }
        for prefix in ["UTC", "GMT", "UT"] {
            let Some(rest) = text.strip_prefix(prefix) else {
                continue;
            };
            if rest.is_empty() {
                return Ok(Self::fixed(prefix.to_owned(), 0));
            }
            if !rest.starts_with(['+', '-']) {
                break;
            }
            let seconds = zone_offset_of(rest)
                .map_err(|e| format!("Invalid ID for offset-based ZoneId: {text} ({e})"))?;
            let id = if seconds == 0 {
                prefix.to_owned()
            } else {
                format!("{prefix}{}", offset_id(seconds))
            };
            return Ok(Self::fixed(id, seconds));
        }
        region(text)
    }

    fn fixed(id: String, seconds: i32) -> Self {
        // Within ±18:00, which jiff's offsets (±25:59:59) hold.
        let tz = jiff::tz::Offset::from_seconds(seconds)
            .map(jiff::tz::TimeZone::fixed)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        Self { id, tz }
    }

    /// The id, as `ZoneId.toString()` gives it.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The instant (to the millisecond, as `Instant.ofEpochMilli`) in this zone, as
    /// `instant.atZone(zone).toLocalDateTime().toString()` writes it.
    pub(crate) fn local_date_time(&self, epoch_ms: i64) -> String {
        match jiff::Timestamp::from_millisecond(epoch_ms) {
            Ok(ts) => {
                let dt = ts.to_zoned(self.tz.clone()).datetime();
                local_date_time(
                    i32::from(dt.year()),
                    dt.month(),
                    dt.day(),
                    dt.hour(),
                    dt.minute(),
                    dt.second(),
                    dt.subsec_nanosecond(),
                )
            }
            // Past year 9999: no backup window ends there; print something.
            Err(_) => epoch_ms.to_string(),
        }
    }
}

/// `ZoneOffset.of(text)` as total seconds: `Z`, `+h`, `+hh`, `+hh:mm`, `+hhmm`,
/// `+hh:mm:ss`, `+hhmmss` (sign required; `+h` is read as `+0h`), hours at most 18,
/// minutes and seconds at most 59, and nothing past ±18:00. The forms are told apart by
/// length alone, as Java does: `+09:3` (5 characters, read as `+hhmm`) is refused.
fn zone_offset_of(text: &str) -> Result<i32, String> {
    let invalid = |why: &str| format!("Invalid ID for ZoneOffset, {why}: {text}");
    if text == "Z" {
        return Ok(0);
    }
    // Every character of a valid offset is checked to be a sign, digit or colon.
    if !text.is_ascii() {
        return Err(invalid("invalid format"));
    }
    let b = text.as_bytes();
    let padded;
    let b: &[u8] = if b.len() == 2 {
        padded = [b[0], b'0', b[1]];
        &padded
    } else {
        b
    };
    let number = |pos: usize, after_colon: bool| -> Result<i32, String> {
        if after_colon && b[pos - 1] != b':' {
            return Err(invalid("colon not found when expected"));
        }
        let (c1, c2) = (b[pos], b[pos + 1]);
        if !c1.is_ascii_digit() || !c2.is_ascii_digit() {
            return Err(invalid("non numeric characters found"));
        }
        Ok(i32::from(c1 - b'0') * 10 + i32::from(c2 - b'0'))
    };
    let (hours, minutes, seconds) = match b.len() {
        3 => (number(1, false)?, 0, 0),
        5 => (number(1, false)?, number(3, false)?, 0),
        6 => (number(1, false)?, number(4, true)?, 0),
        7 => (number(1, false)?, number(3, false)?, number(5, false)?),
        9 => (number(1, false)?, number(4, true)?, number(7, true)?),
        _ => return Err(invalid("invalid format")),
    };
    let negative = match b[0] {
        b'+' => false,
        b'-' => true,
        _ => return Err(invalid("plus/minus not found when expected")),
    };
    if hours > 18 {
        return Err(format!(
            "Zone offset hours not in valid range: value {hours} is not in the range -18 to 18"
        ));
    }
    if minutes > 59 {
        return Err(format!(
            "Zone offset minutes not in valid range: value {minutes} is not in the range -59 to 59"
        ));
    }
    if seconds > 59 {
        return Err(format!(
            "Zone offset seconds not in valid range: value {seconds} is not in the range -59 to 59"
        ));
    }
    if hours == 18 && (minutes | seconds) != 0 {
        return Err("Zone offset not in valid range: -18:00 to +18:00".to_owned());
    }
    let total = hours * 3600 + minutes * 60 + seconds;
    Ok(if negative { -total } else { total })
}

/// `ZoneOffset.getId()`: `Z` for zero, else `±hh:mm`, and `:ss` when the seconds are
/// not zero.
fn offset_id(total: i32) -> String {
    if total == 0 {
        return "Z".to_owned();
    }
    let sign = if total < 0 { '-' } else { '+' };
    let abs = total.unsigned_abs();
    let (hours, minutes, seconds) = (abs / 3600, abs / 60 % 60, abs % 60);
    let mut id = format!("{sign}{hours:02}:{minutes:02}");
    if seconds != 0 {
        id.push_str(&format!(":{seconds:02}"));
    }
    id
}

/// `ZoneRegion.ofId(text, true)`: the name checked (letters anywhere; digits, `/`, `~`,
/// `.`, `_`, `+`, `-` past the first character; two characters at least), then looked up,
/// case-sensitive, in the time zone database. jiff's bundled copy of the IANA database
/// stands for the JDK's own `tzdb.dat`: both hold the canonical zones and the
/// `backward` links (`Japan`, `US/Pacific`, `Etc/GMT+9`); the two can differ by a
/// tzdata release, as two JDKs can.
fn region(text: &str) -> Result<ZoneId, String> {
    let well_formed = text.len() >= 2
        && text.bytes().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || (i != 0 && (c.is_ascii_digit() || b"/~._+-".contains(&c)))
        });
    if !well_formed {
        return Err(format!(
            "Invalid ID for region-based ZoneId, invalid format: {text}"
        ));
    }
    let db = jiff::tz::TimeZoneDatabase::bundled();
    // jiff's lookup ignores case; Java's does not.
    let listed = db.available().any(|name| name.as_str() == text);
    match db.get(text) {
        Ok(tz) if listed => Ok(ZoneId {
            id: text.to_owned(),
            tz,
        }),
        _ => Err(format!("Unknown time-zone ID: {text}")),
    }
}

/// `LocalDateTime.toString()`: `uuuu-MM-dd'T'HH:mm`, then `:ss` when the seconds or the
/// nanoseconds are not zero, then the fraction when the nanoseconds are not zero, in
/// groups of three digits: 3 when whole milliseconds, 6 when whole microseconds, else 9.
/// The year: four digits at least (zero-padded), `+` before one past 9999, `-` before a
/// negative one.
pub(crate) fn local_date_time(
    year: i32,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nano: i32,
) -> String {
    let mut out = if year.unsigned_abs() < 1000 {
        if year < 0 {
            format!("-{:04}", year.unsigned_abs())
        } else {
            format!("{year:04}")
        }
    } else if year > 9999 {
        format!("+{year}")
    } else {
        year.to_string()
    };
    out.push_str(&format!("-{month:02}-{day:02}T{hour:02}:{minute:02}"));
    if second > 0 || nano > 0 {
        out.push_str(&format!(":{second:02}"));
        if nano > 0 {
            if nano % 1_000_000 == 0 {
                out.push_str(&format!(".{:03}", nano / 1_000_000));
            } else if nano % 1000 == 0 {
                out.push_str(&format!(".{:06}", nano / 1000));
            } else {
                out.push_str(&format!(".{nano:09}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ZoneId.of(input).toString()` by the JDK's rules (java.time.ZoneId.of,
    /// ZoneOffset.of and its buildId, ZoneId.ofWithPrefix/ofOffset, ZoneRegion.ofId), the
    /// rules behind Scalar Admin for Kubernetes' `ZoneIdConverter` and `Result.timezone`
    /// (`zoneId.toString()`), with the offset each stands for, in seconds.
    const ACCEPTED: &[(&str, &str, i32)] = &[
        // ResultTest's zone, and the tool's default.
        ("Asia/Tokyo", "Asia/Tokyo", 9 * 3600),
        ("Etc/UTC", "Etc/UTC", 0),
        // ZoneOffset.of: Z, +h, +hh, +hh:mm, +hhmm, +hh:mm:ss, +hhmmss.
        ("Z", "Z", 0),
        ("+9", "+09:00", 9 * 3600),
        ("-9", "-09:00", -9 * 3600),
        ("+09", "+09:00", 9 * 3600),
        ("+09:00", "+09:00", 9 * 3600),
        ("+0930", "+09:30", 9 * 3600 + 1800),
        ("+09:30", "+09:30", 9 * 3600 + 1800),
        ("-03:30", "-03:30", -(3 * 3600 + 1800)),
        ("+09:30:15", "+09:30:15", 9 * 3600 + 1815),
        ("+093015", "+09:30:15", 9 * 3600 + 1815),
        ("-00:00:01", "-00:00:01", -1),
        ("-00:30", "-00:30", -1800),
        ("+18", "+18:00", 18 * 3600),
        ("-18:00", "-18:00", -18 * 3600),
        ("+17:59:59", "+17:59:59", 18 * 3600 - 1),
        // A zero offset's id is Z, whatever its sign or form.
        ("+00:00", "Z", 0),
        ("-00:00", "Z", 0),
        ("+0", "Z", 0),
        ("-000000", "Z", 0),
        // UTC, GMT, UT: alone, or with an offset (kept as the prefix and the offset's
        // id; the prefix alone when the offset is zero).
        ("UTC", "UTC", 0),
        ("GMT", "GMT", 0),
        ("UT", "UT", 0),
        ("GMT+9", "GMT+09:00", 9 * 3600),
        ("UTC+09:00", "UTC+09:00", 9 * 3600),
        ("UTC+9", "UTC+09:00", 9 * 3600),
        ("UT-0530", "UT-05:30", -(5 * 3600 + 1800)),
        ("GMT+0", "GMT", 0),
        ("UTC-00:00", "UTC", 0),
        ("UTC+18", "UTC+18:00", 18 * 3600),
        // A prefix without a sign after it is a region id.
        ("GMT0", "GMT0", 0),
        ("UCT", "UCT", 0),
        // Region ids as given (links are not resolved), with their rules.
        ("Japan", "Japan", 9 * 3600),
        ("Etc/GMT+9", "Etc/GMT+9", -9 * 3600),
        ("Etc/GMT-14", "Etc/GMT-14", 14 * 3600),
        (
            "America/Argentina/Buenos_Aires",
            "America/Argentina/Buenos_Aires",
            -3 * 3600,
        ),
        ("Asia/Kolkata", "Asia/Kolkata", 5 * 3600 + 1800),
    ];

    /// What `ZoneId.of` throws DateTimeException for (picocli's exit 2).
    const REFUSED: &[&str] = &[
        "",
        "+",
        "-",
        "z",
        "9",
        "+09:3",     // 5 characters: read as +hhmm, ':' is no digit
        "+9:30",     // 5 characters: the same
        "+930",      // 4 characters: no such form
        "+09:000",   // 7 characters: +hhmmss, ':' is no digit
        "+18:30",    // past +18:00
        "-18:00:01", // past -18:00
        "+19",       // hours past 18
        "+09:60",    // minutes past 59
        "+09:00:60", // seconds past 59
        "09:00",     // no sign: a region id, and none is named so
        "+09-00",    // colon expected
        "+０９",     // digits are ASCII ones
        "UTC+",
        "UTC+09:3",
        "UTC+19",
        "GMT+9:00",
        "UTCZ",       // not a sign after the prefix: a region id, unknown
        "UTC +9",     // a space
        "asia/tokyo", // region ids are case-sensitive
        "ASIA/TOKYO",
        "utc",
        "JST", // short ids need the alias map, which the tool does not pass
        "PST",
        "Mars/Olympus",
        "/Asia/Tokyo", // '/' not first
        "Asia/Tokyo ",
        " Asia/Tokyo",
    ];

    #[test]
    fn zone_ids_as_java_normalises_them() {
        let at = jiff::Timestamp::from_second(1_716_257_891).unwrap();
        for &(input, id, offset) in ACCEPTED {
            let zone = ZoneId::of(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(zone.id(), id, "{input:?}");
            assert_eq!(
                zone.tz.to_offset(at).seconds(),
                offset,
                "{input:?}: the offset it stands for"
            );
        }
    }

    #[test]
    fn zone_ids_java_refuses() {
        for input in REFUSED {
            assert!(ZoneId::of(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn every_short_string_parses_or_fails_without_panicking() {
        let alphabet = ["", "+", "-", ":", "0", "1", "9", "Z", "U", "é"];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let text = format!("{a}{b}{c}{d}");
                        let _ = ZoneId::of(&text);
                        let _ = ZoneId::of(&format!("+{text}:{text}"));
                        let _ = ZoneId::of(&format!("UTC{text}"));
                    }
                }
            }
        }
    }

    /// `LocalDateTime.toString()` (java.time.LocalDate/LocalTime.toString): minutes
    /// always, seconds only when they or the fraction are not zero, the fraction in 3, 6
    /// or 9 digits.
    #[test]
    fn local_date_times_as_java_writes_them() {
        // Year, month, day, hour, minute, second, nanosecond.
        type Fields = (i32, i8, i8, i8, i8, i8, i32);
        let table: &[(Fields, &str)] = &[
            ((2024, 5, 21, 11, 18, 0, 0), "2024-05-21T11:18"),
            ((2024, 5, 21, 11, 18, 11, 0), "2024-05-21T11:18:11"),
            (
                (2024, 5, 21, 11, 18, 11, 548_000_000),
                "2024-05-21T11:18:11.548",
            ),
            (
                (2024, 5, 21, 11, 18, 0, 500_000_000),
                "2024-05-21T11:18:00.500",
            ),
            (
                (2024, 5, 21, 11, 18, 0, 1_000_000),
                "2024-05-21T11:18:00.001",
            ),
            (
                (2024, 5, 21, 0, 0, 0, 123_456_000),
                "2024-05-21T00:00:00.123456",
            ),
            (
                (2024, 5, 21, 0, 0, 0, 123_456_789),
                "2024-05-21T00:00:00.123456789",
            ),
            ((2024, 5, 21, 0, 0, 0, 1), "2024-05-21T00:00:00.000000001"),
            ((2024, 5, 21, 0, 0, 0, 1000), "2024-05-21T00:00:00.000001"),
            ((1970, 1, 1, 0, 0, 0, 0), "1970-01-01T00:00"),
            ((999, 12, 31, 23, 59, 59, 0), "0999-12-31T23:59:59"),
            ((-1, 1, 1, 0, 0, 0, 0), "-0001-01-01T00:00"),
            ((-12345, 1, 1, 0, 0, 0, 0), "-12345-01-01T00:00"),
            ((10000, 1, 1, 0, 0, 0, 0), "+10000-01-01T00:00"),
        ];
        for &((y, mo, d, h, mi, s, n), expected) in table {
            assert_eq!(local_date_time(y, mo, d, h, mi, s, n), expected);
        }
    }

    /// ResultTest (cli/src/test/java/com/scalar/admin/kubernetes/ResultTest.java): the
    /// period 1000 to 6000 ms in Asia/Tokyo is `1970-01-01T09:00:01` to
    /// `1970-01-01T09:00:06`; and instants through zones, each form of the string.
    #[test]
    fn instants_through_zones() {
        let tokyo = ZoneId::of("Asia/Tokyo").unwrap();
        assert_eq!(tokyo.local_date_time(1000), "1970-01-01T09:00:01");
        assert_eq!(tokyo.local_date_time(6000), "1970-01-01T09:00:06");
        let table: &[(&str, i64, &str)] = &[
            ("Etc/UTC", 1_716_257_891_548, "2024-05-21T02:18:11.548"),
            ("Etc/UTC", 1_716_257_891_000, "2024-05-21T02:18:11"),
            ("Etc/UTC", 1_716_257_880_000, "2024-05-21T02:18"),
            ("Etc/UTC", 1_716_257_880_010, "2024-05-21T02:18:00.010"),
            ("Asia/Tokyo", 1_716_257_891_548, "2024-05-21T11:18:11.548"),
            ("+9", 1_716_257_891_548, "2024-05-21T11:18:11.548"),
            ("GMT+9", 1_716_257_880_000, "2024-05-21T11:18"),
            ("-03:30", 1_716_257_880_000, "2024-05-20T22:48"),
            ("+09:30:15", 1_716_257_880_000, "2024-05-21T11:48:15"),
            // Daylight saving: New York in May is UTC-4, in January UTC-5.
            ("America/New_York", 1_716_257_880_000, "2024-05-20T22:18"),
            ("America/New_York", 1_704_067_200_000, "2023-12-31T19:00"),
            // Before the epoch: milliseconds floor, as Instant.ofEpochMilli.
            ("Z", -1, "1969-12-31T23:59:59.999"),
        ];
        for &(zone, ms, expected) in table {
            let zone = ZoneId::of(zone).unwrap();
            assert_eq!(zone.local_date_time(ms), expected, "{} {ms}", zone.id());
        }
    }
}
