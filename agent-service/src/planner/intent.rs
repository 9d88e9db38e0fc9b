//! What a question is about: the domain intent, recognised from keywords.
//!
//! Each intent has a list of keywords; a keyword matches a word of the question that starts
//! with it ("charge" matches "charged"), a phrase matches consecutive words. The intent with the
//! most matching keywords within the expert's domain wins; ties go to the earlier intent in
//! [`RULES`]. An intent of another domain is recognised too, so the planner can point the
//! person to the right expert instead of saying nothing useful.

use crate::experts::Domain;

use super::entities::words;

/// A kind of question the planner knows how to investigate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Overdue invoices, failed payments, a suspended service.
    Overdue,
    /// Why an invoice is what it is: the latest against the usual, usage against the cap.
    Bill,
    /// What has been paid and what is still owed.
    Payments,
    /// A device sent back and the refund for it.
    Return,
    /// A locked account, sign-in trouble, security events.
    Locked,
    /// Slow internet, dropped calls, no service.
    Service(Problem),
    /// Promotions the customer can get.
    Promotions,
    /// Using the phone abroad.
    Roaming,
    /// Plans, upgrades and the catalogue.
    Plans,
}

/// Which kind of service problem, so the right line is diagnosed and the right guide cited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Calls,
    Internet,
    General,
}

impl Intent {
    /// The domains whose expert answers it.
    pub fn domains(self) -> &'static [Domain] {
        match self {
            Intent::Overdue | Intent::Bill | Intent::Payments => &[Domain::Billing],
            Intent::Return => &[Domain::Product, Domain::Billing],
            Intent::Locked | Intent::Service(_) => &[Domain::Account],
            Intent::Promotions | Intent::Roaming | Intent::Plans => &[Domain::Product],
        }
    }

    /// What it is about, for "I can look into ..." sentences.
    pub fn topic(self) -> &'static str {
        match self {
            Intent::Overdue => "overdue invoices and suspended service",
            Intent::Bill => "why a bill is higher than usual",
            Intent::Payments => "payments and balances",
            Intent::Return => "device returns and refunds",
            Intent::Locked => "locked accounts and sign-in problems",
            Intent::Service(Problem::Calls) => "dropped calls",
            Intent::Service(Problem::Internet) => "slow internet",
            Intent::Service(Problem::General) => "service problems",
            Intent::Promotions => "promotions you are eligible for",
            Intent::Roaming => "using your phone abroad (roaming)",
            Intent::Plans => "plans, upgrades and products",
        }
    }
}

/// Keywords of each intent, in order of precedence on a tie.
const RULES: &[(Intent, &[&str])] = &[
    (
        Intent::Overdue,
        &[
            "overdue",
            "suspend",
            "past due",
            "late payment",
            "late fee",
            "paid late",
            "unpaid",
            "disconnected",
            "cut off",
            "failed payment",
            "payment failed",
            "payment was declined",
            "declined",
            "reinstat",
            "reconnect",
        ],
    ),
    (
        Intent::Return,
        &["return", "refund", "send back", "sent back", "money back"],
    ),
    (
        Intent::Bill,
        &[
            "bill",
            "invoice",
            "charge",
            "overage",
            "expensive",
            "high",
            "more than usual",
            "usage",
            "data",
            "cost",
            "statement",
            "fee",
        ],
    ),
    (
        Intent::Payments,
        &["pay", "paid", "balance", "owe", "due", "outstanding"],
    ),
    (
        Intent::Locked,
        &[
            "lock",
            "unlock",
            "sign in",
            "sign on",
            "log in",
            "login",
            "logon",
            "password",
            "security",
            "hack",
            "2fa",
            "verification code",
            "can't access",
            "cannot access",
        ],
    ),
    (
        Intent::Service(Problem::General),
        &[
            "slow",
            "speed",
            "internet",
            "wifi",
            "wi fi",
            "broadband",
            "router",
            "connection",
            "drop",
            "call",
            "signal",
            "coverage",
            "outage",
            "no service",
            "not working",
            "buffer",
            "lag",
        ],
    ),
    (
        Intent::Promotions,
        &[
            "promotion",
            "promo",
            "discount",
            "deal",
            "offer",
            "eligib",
            "coupon",
            "loyalty",
        ],
    ),
    (
        Intent::Roaming,
        &[
            "roam",
            "abroad",
            "travel",
            "international",
            "overseas",
            "trip",
            "foreign",
            "another country",
            "vacation",
            "holiday",
        ],
    ),
    (
        Intent::Plans,
        &[
            "upgrade",
            "plan",
            "product",
            "handset",
            "new phone",
            "tariff",
            "bundle",
            "package",
            "switch",
            "catalog",
        ],
    ),
];

/// What the planner made of a question for one expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recognised {
    /// An intent this expert answers.
    Intent(Intent),
    /// Only intents of another expert's domain matched.
    Elsewhere(Intent),
    /// Nothing matched.
    Unknown,
}

/// Recognises the intent of `question` for the expert of `domain`. `mentions_amount`: the
/// question names an amount of money, which leans towards a billing question.
pub fn recognise(domain: Domain, question: &str, mentions_amount: bool) -> Recognised {
    let words = words(question);
    let scored: Vec<(Intent, usize)> = RULES
        .iter()
        .map(|&(intent, keywords)| {
            let mut score = keywords.iter().filter(|k| matches(&words, k)).count();
            if intent == Intent::Bill && mentions_amount {
                score += 1;
            }
            (specialise(intent, &words), score)
        })
        .filter(|&(_, score)| score > 0)
        .collect();
    let best = |mine: bool| {
        scored
            .iter()
            .filter(|(intent, _)| intent.domains().contains(&domain) == mine)
            .fold(
                None,
                |best: Option<(Intent, usize)>, &(intent, score)| match best {
                    Some((_, top)) if top >= score => best,
                    _ => Some((intent, score)),
                },
            )
            .map(|(intent, _)| intent)
    };
    match (best(true), best(false)) {
        (Some(intent), _) => Recognised::Intent(intent),
        (None, Some(other)) => Recognised::Elsewhere(other),
        (None, None) => Recognised::Unknown,
    }
}

/// Every intent the expert of `domain` answers, for "I can answer ..." sentences.
pub fn answered_by(domain: Domain) -> Vec<Intent> {
    RULES
        .iter()
        .map(|&(intent, _)| intent)
        .filter(|intent| intent.domains().contains(&domain))
        .collect()
}

/// Whether `question` asks for the account to be unlocked ("please unlock my account", "can
/// you unlock it?"), as opposed to mentioning an unlock ("why can't I unlock my phone?",
/// "do not unlock it").
pub fn asks_to_unlock(question: &str) -> bool {
    let words = words(question);
    words.iter().enumerate().any(|(i, word)| {
        let negated = i > 0
            && matches!(
                words[i - 1].as_str(),
                "not" | "don't" | "dont" | "never" | "can't" | "cannot"
            );
        word.starts_with("unlock")
            && !negated
            && words[i + 1..].iter().take(3).any(|w| {
                matches!(
                    w.as_str(),
                    "account" | "it" | "me" | "login" | "access" | "customer"
                )
            })
    })
}

/// Narrows a service problem to calls or internet when the words say which.
fn specialise(intent: Intent, words: &[String]) -> Intent {
    if intent != Intent::Service(Problem::General) {
        return intent;
    }
    let any = |keys: &[&str]| keys.iter().any(|k| matches(words, k));
    if any(&["call", "drop", "signal", "coverage"]) {
        Intent::Service(Problem::Calls)
    } else if any(&["internet", "slow", "speed", "wifi", "broadband", "router"]) {
        Intent::Service(Problem::Internet)
    } else {
        intent
    }
}

/// Whether `keyword` (one word or a phrase) occurs in `words`: every word of the phrase in a
/// row, the last one as a prefix ("charge" matches "charges"), the others exactly.
fn matches(words: &[String], keyword: &str) -> bool {
    let parts: Vec<&str> = keyword.split(' ').collect();
    let Some((last, exact)) = parts.split_last() else {
        return false;
    };
    words.windows(parts.len()).any(|window| {
        window
            .iter()
            .zip(exact)
            .all(|(word, part)| word.as_str() == *part)
            && window[exact.len()].starts_with(last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(domain: Domain, question: &str) -> Recognised {
        recognise(domain, question, false)
    }

    #[test]
    fn the_scenario_questions_are_recognised_for_their_experts() {
        use Recognised::Intent as I;
        let cases = [
            (
                Domain::Billing,
                "Why is my bill so high this month?",
                I(Intent::Bill),
            ),
            (
                Domain::Account,
                "My internet is very slow",
                I(Intent::Service(Problem::Internet)),
            ),
            (
                Domain::Product,
                "I'm travelling abroad next week, can I use my phone?",
                I(Intent::Roaming),
            ),
            (
                Domain::Account,
                "I can't log in, my account seems locked.",
                I(Intent::Locked),
            ),
            (
                Domain::Product,
                "Which promotions am I eligible for?",
                I(Intent::Promotions),
            ),
            (
                Domain::Product,
                "I returned my phone, where is my refund?",
                I(Intent::Return),
            ),
            (
                Domain::Billing,
                "I returned my phone, where is my refund?",
                I(Intent::Return),
            ),
            (
                Domain::Account,
                "My calls keep dropping.",
                I(Intent::Service(Problem::Calls)),
            ),
            (
                Domain::Billing,
                "Why is my service suspended?",
                I(Intent::Overdue),
            ),
            (
                Domain::Account,
                "Please unlock my account",
                I(Intent::Locked),
            ),
            (
                Domain::Billing,
                "How much do I still owe?",
                I(Intent::Payments),
            ),
            (Domain::Product, "Can I upgrade my plan?", I(Intent::Plans)),
        ];
        for (domain, question, expected) in cases {
            assert_eq!(intent(domain, question), expected, "{domain:?}: {question}");
        }
        assert_eq!(
            recognise(Domain::Billing, "Why is my mobile bill $150?", true),
            I(Intent::Bill)
        );
    }

    #[test]
    fn other_domains_and_unknown_questions_are_told_apart() {
        assert_eq!(
            intent(Domain::Billing, "My account is locked"),
            Recognised::Elsewhere(Intent::Locked)
        );
        assert_eq!(
            intent(Domain::Account, "Which promotions can I get?"),
            Recognised::Elsewhere(Intent::Promotions)
        );
        assert_eq!(
            intent(Domain::Product, "What is the capital of France?"),
            Recognised::Unknown
        );
        assert_eq!(intent(Domain::Billing, ""), Recognised::Unknown);
    }

    #[test]
    fn only_a_request_to_unlock_the_account_counts_as_one() {
        for asked in [
            "Please unlock my account, customer 254",
            "Can you unlock it?",
            "unlock the account of customer 254",
        ] {
            assert!(asks_to_unlock(asked), "{asked}");
        }
        for not_asked in [
            "I can't log in, my account seems locked.",
            "Why can't I unlock my phone?",
            "Do not unlock my account",
            "I cannot unlock it",
        ] {
            assert!(!asks_to_unlock(not_asked), "{not_asked}");
        }
    }

    #[test]
    fn keywords_match_word_starts_and_phrases_in_a_row() {
        let w = words("I got charged twice and can't log in");
        assert!(matches(&w, "charge"));
        assert!(matches(&w, "log in"));
        assert!(!matches(&w, "arge"));
        assert!(!matches(&w, "sign in"));
        assert!(!matches(&words("log out in a minute"), "log in"));
        assert_eq!(
            answered_by(Domain::Account),
            [Intent::Locked, Intent::Service(Problem::General)]
        );
    }
}
