//! The entities a question names: which customer, subscription or invoice it is about, and the
//! amounts and dates it mentions.
//!
//! A small lexer turns the question into words, numbers, amounts and dates; an id is a number
//! anchored by the word before it ("customer 251", "customer id: 251", "I am 251", "#251",
//! "invoice 1042"). A bare number is never taken for an id: a wrong guess would look up
//! somebody else's account.

use chrono::NaiveDate;

/// One piece of a question.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// Lowercase letters, digits and apostrophes, starting with a letter.
    Word(String),
    /// A whole number.
    Int(i64),
    /// A number with decimals and no currency sign, in cents.
    Decimal(i64),
    /// An amount with a `$` in front, in cents.
    Money(i64),
    /// `#`, as in "#251".
    Hash,
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
}

/// What a question names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entities {
    pub customer_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub invoice_id: Option<i64>,
    /// Amounts mentioned, in cents, in the order they appear.
    pub amounts: Vec<i64>,
    /// Dates mentioned (`YYYY-MM-DD`), in the order they appear.
    pub dates: Vec<NaiveDate>,
}

/// What an anchored number identifies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Customer,
    Subscription,
    Invoice,
}

/// Words that name what the number after them identifies.
fn anchor(word: &str) -> Option<Kind> {
    match word {
        "customer" | "customers" | "client" | "account" | "acct" | "i'm" | "im" | "am" => {
            Some(Kind::Customer)
        }
        "subscription" | "subscriptions" | "sub" | "line" => Some(Kind::Subscription),
        "invoice" | "invoices" | "inv" => Some(Kind::Invoice),
        _ => None,
    }
}

/// Words that may stand between an anchor and its number ("customer id is 251").
fn filler(word: &str) -> bool {
    matches!(
        word,
        "id" | "number" | "no" | "num" | "nr" | "is" | "was" | "with" | "of"
    )
}

/// Reads the entities of `text`.
pub fn extract(text: &str) -> Entities {
    let tokens = lex(text);
    let mut found = Entities::default();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Int(n) => {
                let after = &tokens[i + 1..];
                if let Some(kind) = anchored(&tokens[..i]).filter(|_| !unit_follows(after)) {
                    let slot = match kind {
                        Kind::Customer => &mut found.customer_id,
                        Kind::Subscription => &mut found.subscription_id,
                        Kind::Invoice => &mut found.invoice_id,
                    };
                    slot.get_or_insert(*n);
                } else if currency_follows(after) {
                    found.amounts.push(n.saturating_mul(100));
                }
            }
            Token::Decimal(cents) if currency_follows(&tokens[i + 1..]) => {
                found.amounts.push(*cents);
            }
            Token::Money(cents) => found.amounts.push(*cents),
            Token::Date(date) => found.dates.push(*date),
            _ => {}
        }
    }
    found
}

/// What the number right after `before` identifies, judging by the words before it.
fn anchored(before: &[Token]) -> Option<Kind> {
    // "#251" and "id 251" on their own mean the person's own (customer) id.
    let mut id_like = false;
    for token in before.iter().rev().take(4) {
        match token {
            Token::Hash => id_like = true,
            Token::Word(w) if w == "id" => id_like = true,
            Token::Word(w) if filler(w) => {}
            Token::Word(w) => return anchor(w).or(id_like.then_some(Kind::Customer)),
            _ => break,
        }
    }
    id_like.then_some(Kind::Customer)
}

/// Whether a quantity's unit follows: "I am 30 days late" names no customer 30.
fn unit_follows(after: &[Token]) -> bool {
    currency_follows(after)
        || matches!(after.first(), Some(Token::Word(w)) if matches!(
            w.as_str(),
            "day" | "days" | "week" | "weeks" | "month" | "months" | "year" | "years"
                | "minute" | "minutes" | "hour" | "hours" | "gb" | "mb" | "percent"
                | "times" | "calls" | "phones" | "lines"
        ))
}

fn currency_follows(after: &[Token]) -> bool {
    matches!(after.first(), Some(Token::Word(w)) if matches!(w.as_str(), "dollar" | "dollars" | "usd" | "bucks"))
}

/// The words of `text`, lowercase, for keyword matching.
pub(crate) fn words(text: &str) -> Vec<String> {
    lex(text)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// Splits `text` into tokens; punctuation other than `$`, `#` and apostrophes inside words
/// separates them.
pub(crate) fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text
        .to_lowercase()
        .chars()
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            let mut j = i + 1;
            while chars.get(j) == Some(&' ') {
                j += 1;
            }
            match number(&chars, j) {
                Some((cents, _, end)) => {
                    tokens.push(Token::Money(cents));
                    i = end;
                }
                None => i += 1,
            }
        } else if c.is_ascii_digit() {
            if let Some(date) = date(&chars, i) {
                tokens.push(Token::Date(date));
                i += 10;
            } else if let Some((cents, decimal, end)) = number(&chars, i) {
                tokens.push(if decimal {
                    Token::Decimal(cents)
                } else {
                    Token::Int(cents / 100)
                });
                i = end;
            } else {
                // Too long to be a number anyone means: skip the digits.
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '\'') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token::Word(word.trim_end_matches('\'').to_owned()));
        } else {
            if c == '#' {
                tokens.push(Token::Hash);
            }
            i += 1;
        }
    }
    tokens
}

/// A number starting at `start`: digits (with `,` between thousands), then at most two
/// decimals. Returns it in cents, whether it had decimals, and where it ends.
fn number(chars: &[char], start: usize) -> Option<(i64, bool, usize)> {
    let digit = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    if !digit(start) {
        return None;
    }
    let mut whole: i64 = 0;
    let mut i = start;
    while i < chars.len() {
        if digit(i) {
            let d = i64::from(chars[i].to_digit(10)?);
            whole = whole.checked_mul(10)?.checked_add(d)?;
            i += 1;
        } else if chars[i] == ',' && digit(i + 1) && digit(i + 2) && digit(i + 3) && !digit(i + 4) {
            i += 1;
        } else {
            break;
        }
    }
    let mut cents = whole.checked_mul(100)?;
    let mut decimal = false;
    if chars.get(i) == Some(&'.') && digit(i + 1) {
        let tens = i64::from(chars[i + 1].to_digit(10)?);
        let ones = if digit(i + 2) {
            i64::from(chars[i + 2].to_digit(10)?)
        } else {
            0
        };
        cents = cents.checked_add(tens * 10 + ones)?;
        decimal = true;
        i += if digit(i + 2) { 3 } else { 2 };
    }
    Some((cents, decimal, i))
}

/// A `YYYY-MM-DD` date starting at `start`.
fn date(chars: &[char], start: usize) -> Option<NaiveDate> {
    let text: String = chars.get(start..start + 10)?.iter().collect();
    let shaped = text.char_indices().all(|(k, c)| match k {
        4 | 7 => c == '-',
        _ => c.is_ascii_digit(),
    });
    if !shaped || chars.get(start + 10).is_some_and(char::is_ascii_digit) {
        return None;
    }
    NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(text: &str) -> Option<i64> {
        extract(text).customer_id
    }

    #[test]
    fn customer_ids_are_read_from_the_ways_people_give_them() {
        for text in [
            "Why is my bill so high this month? I'm customer 251",
            "I am 251",
            "I\u{2019}m 251 and my bill is high",
            "customer #251",
            "#251: slow internet",
            "my id 251",
            "Customer ID: 251",
            "customer number is 251",
            "my account 251 is locked",
        ] {
            assert_eq!(customer(text), Some(251), "{text}");
        }
    }

    #[test]
    fn bare_numbers_units_and_amounts_are_not_ids() {
        for text in [
            "I used 22 GB on a 10 GB plan",
            "Why is my mobile bill $150?",
            "I have 2 phones",
            "Which promotions am I eligible for?",
            "I am 30 days late with my payment",
            "My account 2 years old is locked",
        ] {
            assert_eq!(customer(text), None, "{text}");
        }
    }

    #[test]
    fn subscription_and_invoice_ids_amounts_and_dates() {
        let found = extract(
            "Customer 259: invoice #1042 of 2026-11-22 on subscription 17 says $1,150.50, \
             not 60 dollars or 12.5 USD",
        );
        assert_eq!(
            found,
            Entities {
                customer_id: Some(259),
                subscription_id: Some(17),
                invoice_id: Some(1042),
                amounts: vec![115_050, 6_000, 1_250],
                dates: vec![NaiveDate::from_ymd_opt(2026, 11, 22).expect("date")],
            }
        );
    }

    #[test]
    fn the_first_id_of_a_kind_wins_and_malformed_input_does_not_panic() {
        assert_eq!(customer("customer 251, or was it customer 252?"), Some(251));
        for text in [
            "",
            "$",
            "#",
            "99999999999999999999999 customer",
            "customer 99999999999999999999999",
            "2026-13-45",
            "1.",
            "$.5",
            "éé'' ''",
            // Whole dollars that fit in cents, whose decimals then overflow (found by review
            // of the fuzz target's invariants).
            "$92233720368547758.99",
        ] {
            let _ = extract(text);
        }
        assert_eq!(extract("2026-13-45").dates, vec![]);
        assert_eq!(
            words("Can't sign-in, HELP!"),
            ["can't", "sign", "in", "help"]
        );
    }
}
