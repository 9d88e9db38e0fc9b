//! The plain-text rendering of tool outputs, for clients and models that read text: the
//! [`Render`] trait each output implements, and the line helpers more than one area uses.

use std::fmt::Write;

use crate::domain::Invoice;

/// A readable text version of a structured result.
pub trait Render {
    fn render(&self) -> String;
}

pub(super) fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
    out.push('\n');
}

macro_rules! ln {
    ($out:expr, $($arg:tt)*) => { $crate::tools::render::line($out, format_args!($($arg)*)) };
}
pub(super) use ln;

pub(super) fn invoice_line(out: &mut String, i: &Invoice) {
    ln!(
        out,
        "- invoice {} of {} ({}): {} billed, {} paid, {} outstanding, due {}, {}",
        i.id,
        i.invoice_date,
        i.description,
        i.amount,
        i.paid,
        i.outstanding,
        i.due_date,
        i.status
    );
}
