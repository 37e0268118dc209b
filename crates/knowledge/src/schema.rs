// Rules for the `tags` and `reviewed` keys of a curated table. `build.rs`
// includes this file (`mod schema { include!(...) }`) to enforce them on
// `data/ports/*.toml`; the library compiles it only for its unit tests, so the
// rules themselves are tested. Plain comments, not `//!`: an included file
// cannot carry inner doc comments.

use crate::TAGS;

/// Most tags one entry may carry.
pub const MAX_TAGS: usize = 4;
/// The earliest `reviewed` month accepted: the first full fact pass.
pub const EARLIEST_REVIEW: &str = "2026-01";

/// Checks a table's `tags`: at most [`MAX_TAGS`] distinct values from [`TAGS`].
/// A missing key is accepted unless `required`.
pub fn check_tags(tags: Option<&[String]>, required: bool) -> Result<(), String> {
    let Some(tags) = tags else {
        return if required {
            Err(format!(
                "tags = [...] is missing: give 0-{MAX_TAGS} of {}",
                TAGS.join(", ")
            ))
        } else {
            Ok(())
        };
    };
    if tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags, got {}", tags.len()));
    }
    for (i, t) in tags.iter().enumerate() {
        if !TAGS.contains(&t.as_str()) {
            return Err(format!(
                "unknown tag {t:?}: valid tags are {}",
                TAGS.join(", ")
            ));
        }
        if tags[..i].contains(t) {
            return Err(format!("tag {t:?} is listed twice"));
        }
    }
    Ok(())
}

/// Checks a table's `reviewed`: `YYYY-MM` with a real month, not before
/// [`EARLIEST_REVIEW`]. A missing key is accepted unless `required`.
pub fn check_reviewed(reviewed: Option<&str>, required: bool) -> Result<(), String> {
    let Some(r) = reviewed else {
        return if required {
            Err("reviewed = \"YYYY-MM\" is missing: the month the entry was fact-checked".into())
        } else {
            Ok(())
        };
    };
    let b = r.as_bytes();
    let well_formed = b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && (1..=12).contains(&r[5..].parse::<u8>().unwrap_or(0));
    // Fixed width makes the string comparison a date comparison.
    if well_formed && r >= EARLIEST_REVIEW {
        Ok(())
    } else {
        Err(format!(
            "reviewed = {r:?} must be \"YYYY-MM\" (month 01-12), {EARLIEST_REVIEW} or later"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_come_from_the_vocabulary() {
        assert!(check_tags(Some(&tags(&["ics", "iot"])), true).is_ok());
        assert!(check_tags(Some(&[]), true).is_ok());
        let e = check_tags(Some(&tags(&["scada"])), false).unwrap_err();
        assert!(
            e.contains("unknown tag \"scada\"") && e.contains("remote-access"),
            "{e}"
        );
        assert!(check_tags(Some(&tags(&["ics", "ics"])), false).is_err());
        assert!(check_tags(Some(&tags(&["ics", "iot", "web", "vpn", "dns"])), false).is_err());
    }

    #[test]
    fn reviewed_is_a_month_from_2026_on() {
        assert!(check_reviewed(Some("2026-12"), true).is_ok());
        assert!(check_reviewed(Some("2026-01"), true).is_ok());
        for bad in [
            "2025-12",
            "2026-13",
            "2026-00",
            "2026-1",
            "26-12",
            "2026/12",
            "2026-12-01",
            "",
            "２026-12",
        ] {
            assert!(
                check_reviewed(Some(bad), false).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn missing_keys_pass_only_while_not_required() {
        assert!(check_tags(None, false).is_ok());
        assert!(check_reviewed(None, false).is_ok());
        assert!(check_tags(None, true).unwrap_err().contains("missing"));
        assert!(check_reviewed(None, true).unwrap_err().contains("missing"));
    }
}
