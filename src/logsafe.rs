//! What reaches a log must not be able to attack whoever reads it: a client
//! controls user names, paths and SNI, and a user name with `ESC [` paints
//! the admin's terminal, one with `CR`/`LF` forges a line, and one with
//! U+202E (right-to-left override) reorders what the admin reads.
//!
//! [`escape`] makes a string printable: C0 controls, DEL, C1 controls, line
//! and paragraph separators and the bidi/format characters become `\uXXXX`
//! (the JSON escape, so JSON logs stay valid). [`text_fields`] applies it to
//! every field value of the text log and [`SafeWriter`] to every line of the
//! JSON log, so no field is forgotten wherever it is logged; xferlog applies
//! the same rule to its own fields. Pure, no I/O besides the wrapped writer.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

/// True for the characters a log must never carry raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(
            c,
            '\u{061C}'              // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, LRE..RLO
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{206F}' // LRI..PDI, deprecated format chars
            | '\u{FEFF}'            // BOM / zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// `s` with every [`is_unsafe`] character written as `\uXXXX`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    if is_unsafe(c) {
        // Every unsafe character is in the BMP.
        let _ = write!(out, "\\u{:04x}", c as u32);
    } else {
        out.push(c);
    }
}

/// Field formatting for the text log: `name=value` (the message bare), each
/// value [`escape`]d. The formatter's own colours are not fields, so they
/// stay.
pub fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name().starts_with("log.") {
            // `log` records' metadata, which the default formatter hides too.
            return Ok(());
        }
        let text = format!("{value:?}");
        let text = escape(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// A log writer that escapes each line it is given (tracing-subscriber's fmt
/// layer writes one whole event per `write`); the line's final newline is
/// kept, every other unsafe character escaped.
pub struct SafeWriter<W>(pub W);

impl<W: io::Write> io::Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (buf, false),
        };
        let text = String::from_utf8_lossy(body);
        let mut line = escape(&text).into_owned();
        if newline {
            line.push('\n');
        }
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn printable_text_is_untouched() {
        assert!(matches!(escape("alice ßü 名前 ~!"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_del_c1_and_bidi_are_escaped() {
        assert_eq!(escape("a\x1b[31mb"), "a\\u001b[31mb");
        assert_eq!(escape("x\r\ny\t"), "x\\u000d\\u000ay\\u0009");
        assert_eq!(escape("del\x7f"), "del\\u007f");
        assert_eq!(escape("c1\u{85}\u{9b}"), "c1\\u0085\\u009b");
        assert_eq!(escape("evil\u{202E}txt.exe"), "evil\\u202etxt.exe");
        assert_eq!(escape("ls\u{2028}\u{2029}"), "ls\\u2028\\u2029");
        assert_eq!(
            escape("\u{2066}\u{2069}\u{200F}\u{FEFF}"),
            "\\u2066\\u2069\\u200f\\ufeff"
        );
    }

    #[test]
    fn writer_keeps_the_line_end_and_escapes_the_rest() {
        let mut w = SafeWriter(Vec::new());
        w.write_all(b"INFO login attempt user=root\x1b]0;pwned\x07\r\nfake line\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "INFO login attempt user=root\\u001b]0;pwned\\u0007\\u000d\\u000afake line\n"
        );
    }
}
