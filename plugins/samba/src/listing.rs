//! Reading what smbclient's `ls` prints.
//!
//! smbclient prints each entry as `"  %-30s%7.7s %8.0f  %s"`: the name padded to 30
//! bytes, the attribute letters right-aligned in 7, the size, and the write time in
//! `asctime` form (in the client's time zone: the plugin runs smbclient with `TZ=UTC`).
//! A name may hold any number of spaces, leading ones included, so an entry is read from
//! the right, where the widths are fixed. A recursive listing starts the block of each
//! subdirectory with a line holding its path from the root of the share, `\dir\sub`.

/// One file or directory of a listing, with its path from the root of the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: Option<u64>,
}

/// The entries of a (possibly recursive) listing of `listed_dir` (a path from the root of
/// the share, `/`-separated, "" for the root). `.` and `..` are left out; lines that are
/// not entries (the free-space summary, messages) are skipped.
pub fn parse(output: &str, listed_dir: &str) -> Vec<Entry> {
    let mut dir = listed_dir.trim_matches('/').to_string();
    let mut entries = Vec::new();
    for line in output.lines() {
        if let Some(header) = line.strip_prefix('\\') {
            dir = header
                .trim_end()
                .trim_end_matches("\\*")
                .replace('\\', "/")
                .trim_matches('/')
                .to_string();
            continue;
        }
        let Some((name, is_dir, size, modified)) = entry(line) else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        entries.push(Entry {
            path: if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            },
            is_dir,
            size,
            modified,
        });
    }
    entries
}

/// Width of the padded name and of the attribute field in an entry line.
const NAME_WIDTH: usize = 30;
const ATTRIBUTE_WIDTH: usize = 7;
/// Minimum width of the size field.
const SIZE_WIDTH: usize = 8;
/// `Thu Jan  2 03:04:05 2025`
const TIME_WIDTH: usize = 24;

/// (name, is a directory, size, modified) of one entry line.
fn entry(line: &str) -> Option<(&str, bool, u64, Option<u64>)> {
    let body = line.strip_prefix("  ")?;
    let split = body.len().checked_sub(TIME_WIDTH)?;
    if !body.is_char_boundary(split) {
        return None;
    }
    let (rest, time) = body.split_at(split);
    let modified = asctime_seconds(time);
    let rest = rest.strip_suffix("  ")?;
    let digits_at = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let digits = &rest[digits_at..];
    let size: u64 = digits.parse().ok()?;
    // One space of separator, then the padding of a size shorter than its field.
    let padding = 1 + SIZE_WIDTH.saturating_sub(digits.len());
    let before = rest[..digits_at].strip_suffix(&" ".repeat(padding))?;
    let split = before.len().checked_sub(ATTRIBUTE_WIDTH)?;
    if !before.is_char_boundary(split) {
        return None;
    }
    let (padded_name, attributes) = before.split_at(split);
    let attributes = attributes.trim_start();
    if !attributes.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    // Only a name shorter than the field was padded; SMB names never end with a space.
    let name = if padded_name.len() <= NAME_WIDTH {
        padded_name.trim_end_matches(' ')
    } else {
        padded_name
    };
    if name.is_empty() {
        return None;
    }
    Some((name, attributes.contains('D'), size, modified))
}

/// `Thu Jan  2 03:04:05 2025`, read as UTC, in seconds since the Unix epoch.
fn asctime_seconds(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = text.split_whitespace();
    let (_weekday, month, day, clock, year) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = clock.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from smbclient 4.17 (`recurse; ls "x/*"`), names with spaces included.
    const RECURSIVE: &str =
        "  .                                   D        0  Sun Nov 22 17:35:12 2026
  ..                                  D        0  Sun Nov 22 17:34:57 2026
  ä ö                               N        1  Sun Nov 22 17:35:12 2026
  y                                   D        0  Sun Nov 22 17:35:02 2026
   y  z .txt                          N        3  Sun Nov 22 17:35:12 2026
  a name that is longer than thirty bytes.gpg      A 123456789  Thu Jan  2 03:04:05 2025

\\x\\y
  .                                   D        0  Sun Nov 22 17:35:02 2026
  ..                                  D        0  Sun Nov 22 17:35:12 2026
  g.partial                           A        6  Sun Nov 22 17:34:57 2026

\t\t264212084 blocks of size 1024. 81673320 blocks available
";

    #[test]
    fn reads_names_with_spaces_sizes_times_and_subdirectories() {
        let entries = parse(RECURSIVE, "x");
        let files: Vec<(&str, u64, bool)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.size, e.is_dir))
            .collect();
        assert_eq!(
            files,
            [
                ("x/ä ö", 1, false),
                ("x/y", 0, true),
                ("x/ y  z .txt", 3, false),
                (
                    "x/a name that is longer than thirty bytes.gpg",
                    123_456_789,
                    false
                ),
                ("x/y/g.partial", 6, false),
            ]
        );
        // 2025-01-02T03:04:05Z
        assert_eq!(entries[3].modified, Some(1_735_787_045));
    }

    #[test]
    fn dates_are_utc_seconds() {
        assert_eq!(asctime_seconds("Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(
            asctime_seconds("Sun Nov 22 17:35:12 2026"),
            Some(1_795_368_912)
        );
        assert_eq!(
            asctime_seconds("Tue Feb 29 12:00:00 2028"),
            Some(1_835_438_400)
        );
    }
}
