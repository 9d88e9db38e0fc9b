//! The soak's table and verdict: one Markdown row per interval (each measured process's memory
//! and descriptors, the agent's sessions and conversations, requests and errors per kind in the
//! interval), and whether memory and descriptors stayed flat after the warm-up.
//!
//! Flat means: no sample after the warm-up exceeds the first sample after it by more than the
//! tolerance. Shrinking is fine; a leak shows as growth, however noisy.

use std::{fmt::Write as _, time::Duration};

use super::{
    traffic::{Counts, Kind},
    watch::{AgentState, ProcessSample},
};

/// One interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Since the traffic started, at the end of the interval.
    pub at: Duration,
    /// One per measured process, in the order of their names.
    pub processes: Vec<ProcessSample>,
    pub agent: AgentState,
    /// What was done in the interval.
    pub counts: Counts,
}

/// The table's two header lines for processes called `names`.
pub fn header(names: &[String]) -> String {
    let mut head = "| t (s) |".to_owned();
    for name in names {
        let _ = write!(head, " {name} RSS MiB | {name} fds |");
    }
    head.push_str(" sessions | conversations | agent db MiB |");
    for kind in Kind::ALL {
        let _ = write!(head, " {} ok/err |", kind.label());
    }
    head.push_str(" 429 |");
    let columns = 1 + 2 * names.len() + 3 + Kind::ALL.len() + 1;
    let rule = format!("|{}", "---:|".repeat(columns));
    format!("{head}\n{rule}")
}

/// One row of the table.
pub fn row(row: &Row) -> String {
    let mut line = format!("| {} |", row.at.as_secs());
    for p in &row.processes {
        let _ = write!(
            line,
            " {} | {} |",
            mib(p.rss_kib.map(|k| k * 1024)),
            or_dash(p.fds)
        );
    }
    let _ = write!(
        line,
        " {} | {} | {} |",
        or_dash(row.agent.sessions),
        or_dash(row.agent.conversations),
        mib(row.agent.db_bytes)
    );
    for kind in Kind::ALL {
        let i = kind as usize;
        let (done, errors) = (row.counts.done[i], row.counts.errors[i]);
        let ok = done - errors.min(done);
        let _ = write!(line, " {ok}/{errors} |");
    }
    let _ = write!(line, " {} |", row.counts.limited);
    line
}

/// What every row's counts add up to: ok/err per kind and 429s, in words.
pub fn totals(rows: &[Row]) -> String {
    let mut total = Counts::default();
    for r in rows {
        for i in 0..Kind::ALL.len() {
            total.done[i] += r.counts.done[i];
            total.errors[i] += r.counts.errors[i];
        }
        total.limited += r.counts.limited;
    }
    let parts: Vec<String> = Kind::ALL
        .iter()
        .map(|&kind| {
            let i = kind as usize;
            format!(
                "{} {} ({} errors)",
                kind.label(),
                total.done[i],
                total.errors[i]
            )
        })
        .collect();
    format!("{}; 429: {}", parts.join(", "), total.limited)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
}

fn or_dash(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

/// One figure's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// e.g. `devstack RSS`.
    pub what: String,
    /// The first sample after the warm-up.
    pub baseline: u64,
    pub peak: u64,
    pub last: u64,
    /// `(peak - baseline) / baseline`, in percent (0 when it never grew).
    pub growth_pct: f64,
    pub ok: bool,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = if self.what.ends_with("RSS") {
            "KiB"
        } else {
            "descriptors"
        };
        write!(
            f,
            "{}: {}: {} {unit} after the warm-up, peak {} (+{:.1} %), last {}",
            if self.ok { "flat" } else { "GREW" },
            self.what,
            self.baseline,
            self.peak,
            self.growth_pct,
            self.last
        )
    }
}

/// One figure of a process sample.
type Figure = fn(&ProcessSample) -> Option<u64>;

/// Memory and descriptors of each of `names` in `rows`, the rows up to `warmup` left out; an
/// `Err` when no row is left to judge or a process could not be read.
pub fn verdict(
    rows: &[Row],
    names: &[String],
    warmup: Duration,
    tolerance_pct: f64,
) -> Result<Vec<Check>, String> {
    let judged: Vec<&Row> = rows.iter().filter(|r| r.at > warmup).collect();
    if judged.is_empty() {
        return Err(format!(
            "no row after the {} s warm-up: run longer than the warm-up",
            warmup.as_secs()
        ));
    }
    let mut checks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let figures: [(&str, Figure); 2] = [("RSS", |p| p.rss_kib), ("fds", |p| p.fds)];
        for (label, pick) in figures {
            let what = format!("{name} {label}");
            let values: Option<Vec<u64>> = judged
                .iter()
                .map(|r| r.processes.get(i).and_then(pick))
                .collect();
            let values =
                values.ok_or_else(|| format!("{what} could not be read (did it exit?)"))?;
            let baseline = values[0];
            let peak = values.iter().copied().max().unwrap_or(baseline);
            let last = values[values.len() - 1];
            let growth_pct = if baseline == 0 {
                0.0
            } else {
                peak.saturating_sub(baseline) as f64 * 100.0 / baseline as f64
            };
            checks.push(Check {
                what,
                baseline,
                peak,
                last,
                growth_pct,
                ok: growth_pct <= tolerance_pct,
            });
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, rss_kib: u64, fds: u64) -> Row {
        Row {
            at: Duration::from_secs(secs),
            processes: vec![ProcessSample {
                rss_kib: Some(rss_kib),
                fds: Some(fds),
            }],
            ..Row::default()
        }
    }

    #[test]
    fn growth_after_the_warm_up_beyond_the_tolerance_fails() {
        let names = vec!["devstack".to_owned()];
        let warmup = Duration::from_secs(60);
        // Growth in the warm-up does not count; a dip does not either.
        let flat = [
            at(60, 10, 5),
            at(120, 100, 50),
            at(180, 90, 55),
            at(240, 109, 54),
        ];
        let checks = verdict(&flat, &names, warmup, 10.0).expect("rows to judge");
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert_eq!(checks[0].baseline, 100);
        assert_eq!(checks[0].peak, 109);

        let leaking = [at(120, 100, 50), at(180, 105, 50), at(240, 111, 50)];
        let checks = verdict(&leaking, &names, warmup, 10.0).expect("rows to judge");
        assert!(!checks[0].ok, "memory grew 11 %");
        assert!(checks[1].ok, "descriptors did not");
        assert!(
            checks[0]
                .to_string()
                .starts_with("GREW: devstack RSS: 100 KiB")
        );

        assert!(verdict(&[at(60, 1, 1)], &names, warmup, 10.0).is_err());
        let unreadable = Row {
            at: Duration::from_secs(120),
            processes: vec![ProcessSample::default()],
            ..Row::default()
        };
        assert!(verdict(&[unreadable], &names, warmup, 10.0).is_err());
    }

    #[test]
    fn a_row_has_a_cell_for_every_column() {
        let names = vec!["devstack".to_owned(), "soak".to_owned()];
        let head = header(&names);
        let columns = head.lines().next().expect("head").matches('|').count();
        let mut r = at(30, 2048, 7);
        r.processes.push(ProcessSample::default());
        r.counts.done[Kind::Tool as usize] = 5;
        r.counts.errors[Kind::Tool as usize] = 1;
        let line = row(&r);
        assert_eq!(line.matches('|').count(), columns, "{head}\n{line}");
        assert_eq!(
            head.lines().nth(1).expect("rule").matches('|').count(),
            columns
        );
        assert!(line.starts_with("| 30 | 2.0 | 7 | - | - |"), "{line}");
        assert!(line.contains("| 4/1 |"), "{line}");
    }
}
