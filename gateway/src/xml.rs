//! A small XML writer for the documents this crate renders: nested elements, attributes, text
//! and comments, indented four spaces, one element per line, with every attribute value and text
//! escaped. Elements are written by closures, so a document is always balanced.
//!
//! A writer of our own rather than a library: the policies need four constructs, the output must
//! be byte-for-byte stable (it is committed and compared in a golden test), and the escaping
//! rules fit on a screen. Tests parse its output with a real XML parser.
//!
//! Attribute values that contain `"` but no `'` are quoted with `'`, so the C# policy
//! expressions API Management reads stay legible (`counter-key='@("contoso:" + ...)'`) while
//! remaining well-formed; everything else is quoted with `"`.

use std::fmt::Write as _;

const INDENT: &str = "    ";

pub(crate) struct XmlWriter {
    out: String,
    depth: usize,
}

impl XmlWriter {
    pub(crate) fn new() -> Self {
        XmlWriter {
            out: String::new(),
            depth: 0,
        }
    }

    /// `<name attrs>`, the children `body` writes one level deeper, `</name>`.
    pub(crate) fn element(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        body: impl FnOnce(&mut XmlWriter),
    ) {
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.depth += 1;
        body(self);
        self.depth -= 1;
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    /// `<name attrs />`.
    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start_tag(name, attrs);
        self.out.push_str(" />\n");
    }

    /// `<name attrs>text</name>` on one line.
    pub(crate) fn text(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start_tag(name, attrs);
        self.out.push('>');
        escape_into(&mut self.out, text, None);
        let _ = writeln!(self.out, "</{name}>");
    }

    /// `<!-- text -->`; a `--` in `text` (which XML forbids inside comments) is broken up.
    pub(crate) fn comment(&mut self, text: &str) {
        let mut text = text.to_owned();
        while text.contains("--") {
            text = text.replace("--", "- -");
        }
        self.indent();
        let _ = writeln!(self.out, "<!-- {} -->", text.trim_end_matches('-'));
    }

    /// The document, ending with a newline.
    pub(crate) fn finish(self) -> String {
        debug_assert_eq!(self.depth, 0);
        self.out
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        debug_assert!(is_name(name), "{name:?} is not an XML name");
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (attr, value) in attrs {
            debug_assert!(is_name(attr), "{attr:?} is not an XML name");
            let quote = if value.contains('"') && !value.contains('\'') {
                '\''
            } else {
                '"'
            };
            let _ = write!(self.out, " {attr}={quote}");
            escape_into(&mut self.out, value, Some(quote));
            self.out.push(quote);
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str(INDENT);
        }
    }
}

/// Escapes `value` for text (`quote` is `None`) or for an attribute quoted with `quote`.
///
/// In attributes, tab, newline and carriage return become character references, because a
/// parser would otherwise turn them into spaces. Other control characters cannot appear in XML
/// 1.0 at all; the configuration refuses them, and should one slip through it becomes U+FFFD
/// here rather than a document no parser accepts.
fn escape_into(out: &mut String, value: &str, quote: Option<char>) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quote == Some('"') => out.push_str("&quot;"),
            '\'' if quote == Some('\'') => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' if quote.is_some() => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Names this crate writes: ASCII letters, digits, `-`, `_`, `.`, starting with a letter.
fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_elements_are_indented_four_spaces() {
        let mut w = XmlWriter::new();
        w.element("policies", &[], |w| {
            w.comment("generated -- do not edit");
            w.element("inbound", &[], |w| {
                w.empty("base", &[]);
                w.text("value", &[], "a");
            });
        });
        assert_eq!(
            w.finish(),
            "<policies>\n    <!-- generated - - do not edit -->\n    <inbound>\n        <base />\n        <value>a</value>\n    </inbound>\n</policies>\n"
        );
    }

    #[test]
    fn attribute_values_are_escaped() {
        let mut w = XmlWriter::new();
        w.empty(
            "a",
            &[
                ("x", "1 < 2 && 3 > 2"),
                ("y", "it's \"quoted\""),
                ("z", "tab\tline\ncr\r"),
            ],
        );
        assert_eq!(
            w.finish(),
            "<a x=\"1 &lt; 2 &amp;&amp; 3 &gt; 2\" y=\"it's &quot;quoted&quot;\" z=\"tab&#9;line&#10;cr&#13;\" />\n"
        );
    }

    #[test]
    fn double_quotes_alone_switch_to_single_quoting() {
        let mut w = XmlWriter::new();
        w.empty("a", &[("k", r#"@("x:" + y)"#)]);
        assert_eq!(w.finish(), "<a k='@(\"x:\" + y)' />\n");
    }

    #[test]
    fn a_real_parser_reads_back_what_was_written() {
        let tricky = "a & b < c > d \"e\" 'f' \t\n\r g";
        let mut w = XmlWriter::new();
        w.element(
            "root",
            &[("double", tricky), ("single", "say \"hi\"")],
            |w| {
                w.text("text", &[], tricky);
                w.comment("a -- b -");
            },
        );
        let xml = w.finish();
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let root = doc.root_element();
        assert_eq!(root.attribute("double"), Some(tricky));
        assert_eq!(root.attribute("single"), Some("say \"hi\""));
        let text = root
            .children()
            .find(|n| n.has_tag_name("text"))
            .expect("text");
        // XML parsers turn CR LF and lone CR into LF in text; the reference keeps the CR.
        assert_eq!(text.text(), Some(tricky));
    }

    #[test]
    fn text_is_escaped_but_quotes_are_kept() {
        let mut w = XmlWriter::new();
        w.text("body", &[], "{\"a\":\"<b> & c\"}\u{1}");
        assert_eq!(
            w.finish(),
            "<body>{\"a\":\"&lt;b&gt; &amp; c\"}\u{fffd}</body>\n"
        );
    }
}
