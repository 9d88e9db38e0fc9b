//! Exact money: an integer number of cents.
//!
//! Amounts are stored and added as integers so no rounding can creep in. On the wire an amount
//! is a JSON number with at most two decimals (`150`, `49.99`).
//!
//! **Reading** an amount works on the number's *text*, never on a float: [`Money::from_json_text`]
//! reads the decimal digits exactly, so `5000.004` and `5000.0000000000001` (which a double
//! cannot tell from `5000`) are refused at any magnitude, while `5000.1`, `5000.10` and
//! `5000.100` are the same 500010 cents. Exponent notation is accepted when the value it denotes
//! is whole cents (`1e2` is $100.00, `15e-1` is $1.50, `1e-3` is refused): it is valid JSON, some
//! serialisers emit it for round numbers, and refusing an exact amount would only confuse.
//! A string (`"100"`) is refused: the schema says number, and accepting both hides client bugs.
//!
//! The `Deserialize` impl captures the value's text as a `serde_json::value::RawValue`. From the
//! request's own JSON text (what the tools decode their arguments from, see
//! `tools::raw`) that text is the caller's, digit for digit. From an already-parsed
//! `serde_json::Value` (the fallback when no raw text exists) it is the double's shortest
//! round-trip text: still exact for every two-decimal amount in range and for `5000.004`, but a
//! third decimal beyond a double's 15-17 significant digits is gone before we see it.
//!
//! **Writing** an amount: whole dollars as an integer, otherwise the double nearest to the
//! amount, whose shortest round-trip text is exactly the two-decimal text for every amount up to
//! [`Money::MAX`] (15 significant digits is what a double always reproduces), so clients that read
//! numbers get the value the database holds.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// An amount in US dollars, held as whole cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a value given by a caller is not an acceptable amount of money. Each message shows (a
/// prefix of) what was sent, so the caller sees what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected a JSON number of dollars such as 49.99, got {0}")]
    NotANumber(String),
    #[error("amount must have at most two decimal places (cents), got {0}")]
    SubCent(String),
    #[error("amount {0} is too large; at most 9999999999999.99 is accepted")]
    TooLarge(String),
}

/// How much of a refused value an error message repeats: enough to recognise it, never a
/// megabyte echoed back.
const ECHO_CHARS: usize = 40;

/// `text` as an error message shows it: at most [`ECHO_CHARS`] characters, marked when cut.
pub(crate) fn echo(text: &str) -> String {
    let mut shown: String = text.chars().take(ECHO_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

impl Money {
    pub const ZERO: Money = Money(0);
    /// The largest amount a caller may name, $9,999,999,999,999.99: 15 significant digits, the
    /// most a JSON double carries back exactly (so the answer shows what was stored).
    pub const MAX: Money = Money(999_999_999_999_999);

    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub const fn dollars(dollars: i64) -> Self {
        Money(dollars.saturating_mul(100))
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Reads the text of a JSON value as an amount of dollars, exactly (see the module docs).
    ///
    /// Refused: anything but a JSON number (strings, `null`, arrays...), a non-zero digit below
    /// the cent, and magnitudes above [`Money::MAX`]. `-0` is zero; negative amounts are read,
    /// and each tool says whether it takes them.
    pub fn from_json_text(text: &str) -> Result<Self, MoneyError> {
        let text = text.trim();
        let number = JsonNumber::parse(text).ok_or_else(|| MoneyError::NotANumber(echo(text)))?;
        // The value is digits × 10^scale cents.
        let mut digits = number.digits.trim_start_matches('0');
        let mut scale = number
            .exponent
            .saturating_add(2)
            .saturating_sub(number.fraction_len);
        let significant = digits.trim_end_matches('0');
        scale = scale.saturating_add((digits.len() - significant.len()) as i64);
        digits = significant;
        if digits.is_empty() {
            return Ok(Money::ZERO);
        }
        if scale < 0 {
            return Err(MoneyError::SubCent(echo(text)));
        }
        // Up to 15 digits of cents; the check on the sum cannot overflow (scale is bounded).
        if digits.len() as i64 + scale > 15 {
            return Err(MoneyError::TooLarge(echo(text)));
        }
        let cents = digits
            .parse::<i64>()
            .ok()
            .and_then(|d| d.checked_mul(10_i64.checked_pow(u32::try_from(scale).ok()?)?))
            .ok_or_else(|| MoneyError::TooLarge(echo(text)))?;
        Ok(Money(if number.negative { -cents } else { cents }))
    }

    /// The amount as plain decimal text with two decimals (`-5.00`, `49.99`), the form
    /// [`Money::from_json_text`] reads back exactly.
    pub fn as_decimal(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// `percent` of this amount, rounded half up to the cent (in 128 bits, so no product
    /// overflows; the result saturates at the `i64` range).
    pub fn percent(self, percent: i64) -> Money {
        let exact = (i128::from(self.0) * i128::from(percent) + 50).div_euclid(100);
        Money(i64::try_from(exact).unwrap_or(if exact < 0 { i64::MIN } else { i64::MAX }))
    }
}

/// The parts of a JSON number's text (RFC 8259 §6 grammar), read without converting it.
struct JsonNumber<'a> {
    negative: bool,
    /// Integer and fraction digits, concatenated.
    digits: std::borrow::Cow<'a, str>,
    fraction_len: i64,
    /// Saturated: an exponent beyond ±10^15 means the same as one at the bound.
    exponent: i64,
}

impl<'a> JsonNumber<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (integer, fraction) = match mantissa.split_once('.') {
            Some((integer, fraction)) => (integer, Some(fraction)),
            None => (mantissa, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // No leading zeros ("01"), at least one digit on each side of a point.
        if !all_digits(integer) || (integer.len() > 1 && integer.starts_with('0')) {
            return None;
        }
        if fraction.is_some_and(|f| !all_digits(f)) {
            return None;
        }
        let exponent = match exponent {
            None => 0,
            Some(e) => {
                let (sign, magnitude) = match e.as_bytes().first() {
                    Some(b'-') => (-1, &e[1..]),
                    Some(b'+') => (1, &e[1..]),
                    _ => (1, e),
                };
                if !all_digits(magnitude) {
                    return None;
                }
                const BOUND: i64 = 1_000_000_000_000_000;
                let magnitude = magnitude.trim_start_matches('0');
                let value = if magnitude.is_empty() {
                    0
                } else {
                    magnitude.parse::<i64>().map_or(BOUND, |v| v.min(BOUND))
                };
                sign * value
            }
        };
        let fraction = fraction.unwrap_or("");
        let digits = if fraction.is_empty() {
            std::borrow::Cow::Borrowed(integer)
        } else {
            std::borrow::Cow::Owned(format!("{integer}{fraction}"))
        };
        Some(JsonNumber {
            negative,
            digits,
            fraction_len: fraction.len() as i64,
            exponent,
        })
    }
}

// Stored amounts are bounded (each input is at most `Money::MAX`, balances are checked), so sums
// never come near the `i64` range; saturating keeps the arithmetic total anyway.
impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |total, m| total + m)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            serializer.serialize_i64(self.0 / 100)
        } else {
            // Shortest round-trip formatting of cents/100 reproduces the exact two-decimal text
            // (for every amount up to Money::MAX; see the module docs).
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The value's text: the caller's own digits when decoding from JSON text, the double's
        // shortest text when decoding from a `serde_json::Value`.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Money::from_json_text(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "US dollars, exact to the cent (at most two decimals, at most 9999999999999.99)"
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(text: &str) -> Result<Money, MoneyError> {
        Money::from_json_text(text)
    }

    #[test]
    fn two_decimal_text_is_read_exactly() {
        for (text, cents) in [
            ("0.01", 1),
            ("49.99", 4999),
            ("100", 10000),
            ("5000.1", 500010),
            ("5000.10", 500010),
            ("5000.100", 500010),
            ("-5", -500),
            ("-0", 0),
            ("0", 0),
            ("0.00", 0),
            ("1e2", 10000),
            ("1E+2", 10000),
            ("15e-1", 150),
            ("1.5e1", 1500),
            ("0e999999999999999999999", 0),
            ("9999999999999.99", 999_999_999_999_999),
            (" 7 ", 700),
        ] {
            assert_eq!(read(text), Ok(Money(cents)), "{text}");
        }
    }

    #[test]
    fn a_third_decimal_is_refused_at_any_magnitude() {
        for text in [
            "5000.004",
            "5000.0000000000001",
            "0.001",
            "1.005",
            "123456789012.001",
            "1e-3",
            "1e-999999999999999999999",
        ] {
            assert_eq!(read(text), Err(MoneyError::SubCent(echo(text))), "{text}");
        }
    }

    #[test]
    fn huge_amounts_and_what_is_not_a_number_are_refused() {
        for text in [
            "10000000000000",
            "12345678901234567890",
            "1e400",
            "1e300",
            "1e999999999999999999999",
            "99999999999999999999999999999999999999",
        ] {
            assert!(matches!(read(text), Err(MoneyError::TooLarge(_))), "{text}");
        }
        for text in [
            "\"100\"", "null", "true", "[1]", "{}", "", "-", "01", "1.", ".5", "1e", "+1", "1e+",
            "NaN", "Infinity", "0x10", "1_000",
        ] {
            assert!(
                matches!(read(text), Err(MoneyError::NotANumber(_))),
                "{text}: {:?}",
                read(text)
            );
        }
        let long = "9".repeat(1_000_000);
        let Err(MoneyError::TooLarge(shown)) = read(&long) else {
            panic!("a million digits is too large");
        };
        assert!(shown.len() < 50, "the message does not echo a megabyte");
    }

    #[test]
    fn deserialising_reads_the_text_not_a_double() {
        let exact: Result<Money, _> = serde_json::from_str("5000.0000000000001");
        assert!(exact.is_err(), "the text has a third decimal");
        let from_string: Result<Money, _> = serde_json::from_str("\"100\"");
        assert!(
            from_string
                .expect_err("a string")
                .to_string()
                .contains("got \"100\"")
        );
        // From a parsed Value, the double's text is all there is: still exact to the cent.
        let value = serde_json::json!(5000.004);
        assert!(serde_json::from_value::<Money>(value).is_err());
        let value = serde_json::json!(49.99);
        assert_eq!(
            serde_json::from_value::<Money>(value).ok(),
            Some(Money(4999))
        );
    }

    #[test]
    fn serializes_as_exact_decimal_text() {
        let text = serde_json::to_string(&[Money(15000), Money(4999), Money(5), Money(-250)])
            .expect("serialize");
        assert_eq!(text, "[150,49.99,0.05,-2.5]");
        let back: Vec<Money> = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, [Money(15000), Money(4999), Money(5), Money(-250)]);
    }

    #[test]
    fn displays_as_dollars() {
        assert_eq!(Money(10000).to_string(), "$100.00");
        assert_eq!(Money(-5).to_string(), "-$0.05");
        assert_eq!(Money(-500).as_decimal(), "-5.00");
        assert_eq!(Money(1999).percent(10), Money(200));
        assert_eq!(Money(i64::MAX).percent(200), Money(i64::MAX), "saturates");
        assert_eq!(Money(i64::MAX) + Money(1), Money(i64::MAX), "saturates");
    }

    /// Any amount a caller may name, in cents.
    fn cents() -> impl Strategy<Value = i64> {
        -Money::MAX.0..=Money::MAX.0
    }

    proptest! {
        #[test]
        fn any_two_decimal_text_round_trips_exactly(cents in cents(), pad in 0usize..3) {
            let text = format!("{}{}", Money(cents).as_decimal(), "0".repeat(pad));
            prop_assert_eq!(read(&text), Ok(Money(cents)));
        }

        #[test]
        fn any_text_with_a_third_non_zero_decimal_is_refused(
            cents in cents(),
            extra in "[0-9]{0,20}[1-9]",
        ) {
            let text = format!("{}{extra}", Money(cents).as_decimal());
            prop_assert_eq!(read(&text), Err(MoneyError::SubCent(echo(&text))));
        }

        #[test]
        fn what_is_written_reads_back_the_same(cents in cents()) {
            let money = Money(cents);
            let json = serde_json::to_string(&money).expect("serialize");
            prop_assert_eq!(read(&json), Ok(money), "{}", json);
            let display = money.to_string().replacen('$', "", 1);
            prop_assert_eq!(read(&display), Ok(money));
        }

        #[test]
        fn no_text_makes_reading_panic(text in "\\PC{0,40}") {
            let _ = read(&text);
        }

        #[test]
        fn no_number_text_makes_reading_panic(
            text in "-?[0-9]{1,30}(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,25})?",
        ) {
            // Whatever it denotes, the answer is an amount within bounds or an error.
            if let Ok(money) = read(&text) {
                prop_assert!(money.0.abs() <= Money::MAX.0);
            }
        }
    }
}
