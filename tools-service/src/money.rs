//! Exact money: an integer number of cents.
//!
//! Amounts are stored and added as integers so no rounding can creep in. On the wire an amount
//! is a JSON number with at most two decimals (`150`, `49.99`): JSON numbers are decimal text, and
//! converting whole cents to the shortest decimal representation is exact, so clients that read
//! numbers get the same value the database holds.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in US dollars, held as whole cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a number given by a caller is not an acceptable amount of money.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a finite number")]
    NotFinite,
    #[error("amount must have at most two decimal places (cents), got {0}")]
    SubCent(f64),
    #[error("amount {0} is too large")]
    TooLarge(f64),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub const fn dollars(dollars: i64) -> Self {
        Money(dollars * 100)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Converts a decimal number of dollars given by a caller, refusing what is not whole cents.
    ///
    /// The float is only the carrier of the caller's decimal text: `49.99` arrives as the double
    /// nearest to 49.99, which times 100 lands within a hair of 4999. Anything further away than
    /// rounding noise had a third decimal.
    pub fn from_dollars_f64(amount: f64) -> Result<Self, MoneyError> {
        if !amount.is_finite() {
            return Err(MoneyError::NotFinite);
        }
        let scaled = amount * 100.0;
        // 2^53 cents is where doubles stop being exact integers.
        if scaled.abs() > 9_007_199_254_740_992.0 {
            return Err(MoneyError::TooLarge(amount));
        }
        let cents = scaled.round();
        if (scaled - cents).abs() > 1e-6 * scaled.abs().max(1.0) {
            return Err(MoneyError::SubCent(amount));
        }
        Ok(Money(cents as i64))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// `percent` of this amount, rounded half up to the cent.
    pub fn percent(self, percent: i64) -> Money {
        Money((self.0 * percent + 50).div_euclid(100))
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
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
            // Shortest round-trip formatting of cents/100 reproduces the exact two-decimal text.
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let amount = f64::deserialize(deserializer)?;
        Money::from_dollars_f64(amount).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "US dollars, exact to the cent (at most two decimals)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_cents_convert_exactly() {
        for (input, cents) in [(0.01, 1), (49.99, 4999), (100.0, 10000), (0.1 + 0.2, 30)] {
            assert_eq!(Money::from_dollars_f64(input), Ok(Money(cents)), "{input}");
        }
    }

    #[test]
    fn sub_cent_and_non_finite_amounts_are_refused() {
        assert_eq!(
            Money::from_dollars_f64(1.005),
            Err(MoneyError::SubCent(1.005))
        );
        assert_eq!(
            Money::from_dollars_f64(f64::NAN),
            Err(MoneyError::NotFinite)
        );
        assert_eq!(
            Money::from_dollars_f64(f64::INFINITY),
            Err(MoneyError::NotFinite)
        );
        assert!(matches!(
            Money::from_dollars_f64(1e300),
            Err(MoneyError::TooLarge(_))
        ));
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
        assert_eq!(Money(1999).percent(10), Money(200));
    }
}
