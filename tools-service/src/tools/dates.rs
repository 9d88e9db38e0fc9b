//! The calendar a caller may name, and the date window of a usage query: total functions from
//! whatever dates arrive to a window or an error that says what to change.
//!
//! chrono accepts years from -262143 to 262142, and its date arithmetic panics at those edges
//! (`end_date: "-262143-01-01"` minus the default 29 days did, and the request was never
//! answered). So dates outside [`EARLIEST`]..=[`LATEST`] are **refused** (not clamped: a
//! clamped window would answer a question nobody asked), and the arithmetic that remains is
//! checked. The bounds are not arbitrary: stores compare dates as `YYYY-MM-DD` text, which sorts
//! correctly only for four-digit years, and no telecom record predates 1900.

use chrono::{Days, NaiveDate};

use super::ToolError;
use crate::money::echo;

/// The first day a caller may name.
pub const EARLIEST: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a calendar date");
/// The last day a caller may name.
pub const LATEST: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a calendar date");
/// The longest usage window, in days (a leap year).
pub const MAX_USAGE_DAYS: i64 = 366;
/// The default usage window: the 30 days ending on `end_date` (today by default).
pub const DEFAULT_USAGE_DAYS: u64 = 30;

/// Parses a `YYYY-MM-DD` argument named `field`, refusing what is not a date of the supported
/// calendar. chrono's own error ("input is out of range") names neither the field nor the value,
/// which leaves a caller nothing to correct.
pub fn parse_date(field: &str, text: &str) -> Result<NaiveDate, String> {
    let date: NaiveDate = text.parse().map_err(|e| {
        format!(
            "{field} {:?} is not a valid date ({e}); use YYYY-MM-DD",
            echo(text)
        )
    })?;
    in_calendar(field, date)
}

fn in_calendar(field: &str, date: NaiveDate) -> Result<NaiveDate, String> {
    if (EARLIEST..=LATEST).contains(&date) {
        Ok(date)
    } else {
        Err(format!(
            "{field} {date} is outside the supported calendar; use a date from {EARLIEST} to {LATEST}"
        ))
    }
}

/// The inclusive window of a usage query: `end` defaults to `today`, `start` to
/// [`DEFAULT_USAGE_DAYS`] - 1 days before `end`; a reversed window or one longer than
/// [`MAX_USAGE_DAYS`] is refused. Total: any dates give a window or an error, never a panic.
pub fn usage_window(
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ToolError> {
    // Parsed arguments are in the calendar already; dates built another way are checked too.
    let end = in_calendar("end_date", end.unwrap_or(today)).map_err(ToolError::Invalid)?;
    let start = match start {
        Some(start) => in_calendar("start_date", start).map_err(ToolError::Invalid)?,
        None => end
            .checked_sub_days(Days::new(DEFAULT_USAGE_DAYS - 1))
            .ok_or_else(|| {
                ToolError::invalid(format!(
                    "end_date {end} leaves no room for a default window"
                ))
            })?,
    };
    if start > end {
        return Err(ToolError::invalid(format!(
            "start_date {start} is after end_date {end}; swap them"
        )));
    }
    let days = end
        .signed_duration_since(start)
        .num_days()
        .saturating_add(1);
    if days > MAX_USAGE_DAYS {
        return Err(ToolError::invalid(format!(
            "the range covers {days} days; ask for at most {MAX_USAGE_DAYS} at a time"
        )));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;
    use proptest::prelude::*;

    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    #[test]
    fn calendar_edges_are_refused_by_name() {
        for text in [
            "-262143-01-01",
            "+262142-12-31",
            "0000-01-01",
            "1899-12-31",
            "+10000-01-01",
        ] {
            let message = parse_date("end_date", text).expect_err(text);
            assert!(message.contains("end_date"), "{message}");
            assert!(message.contains("1900-01-01 to 9999-12-31"), "{message}");
        }
        assert_eq!(parse_date("start_date", "1900-01-01"), Ok(EARLIEST));
        assert_eq!(parse_date("start_date", "9999-12-31"), Ok(LATEST));
        let message = parse_date("start_date", &"9".repeat(1_000_000)).expect_err("garbage");
        assert!(message.len() < 200, "no megabyte echoed: {}", message.len());
    }

    #[test]
    fn the_window_at_the_calendar_edges_is_answered() {
        let today = date("2026-03-01");
        assert_eq!(
            usage_window(None, Some(EARLIEST), today).ok(),
            Some((date("1899-12-03"), EARLIEST)),
            "the default window may start before the calendar: no data is there"
        );
        assert!(usage_window(Some(LATEST), Some(LATEST), today).is_ok());
        assert!(usage_window(Some(NaiveDate::MIN), None, today).is_err());
        assert!(usage_window(None, Some(NaiveDate::MIN), today).is_err());
        assert!(usage_window(Some(NaiveDate::MIN), Some(NaiveDate::MAX), today).is_err());
        assert!(usage_window(Some(NaiveDate::MAX), Some(NaiveDate::MIN), today).is_err());
    }

    /// Any date chrono can hold.
    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce())
            .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("within chrono's range"))
    }

    /// A date of the supported calendar.
    fn calendar_date() -> impl Strategy<Value = NaiveDate> {
        (EARLIEST.num_days_from_ce()..=LATEST.num_days_from_ce())
            .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("within chrono's range"))
    }

    proptest! {
        #[test]
        fn any_pair_of_dates_gives_a_window_or_an_error(
            start in proptest::option::of(any_date()),
            end in proptest::option::of(any_date()),
            today in calendar_date(),
        ) {
            match usage_window(start, end, today) {
                Ok((from, to)) => {
                    prop_assert!(from <= to);
                    prop_assert!(to.signed_duration_since(from).num_days() < MAX_USAGE_DAYS);
                    prop_assert_eq!(to, end.unwrap_or(today));
                    if let Some(start) = start {
                        prop_assert_eq!(from, start);
                    }
                }
                Err(error) => prop_assert!(matches!(error, ToolError::Invalid(_))),
            }
        }

        #[test]
        fn the_default_window_is_the_30_days_ending_on_end_date(
            end in proptest::option::of(calendar_date()),
            today in calendar_date(),
        ) {
            let (from, to) = usage_window(None, end, today).expect("a default window");
            prop_assert_eq!(to, end.unwrap_or(today));
            prop_assert_eq!(to.signed_duration_since(from).num_days() + 1, 30);
        }

        #[test]
        fn any_text_parses_to_a_calendar_date_or_an_error(text in "\\PC{0,24}") {
            if let Ok(date) = parse_date("start_date", &text) {
                prop_assert!((EARLIEST..=LATEST).contains(&date));
            }
        }
    }
}
