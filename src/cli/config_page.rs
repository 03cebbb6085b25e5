//! ftpsgate.yaml(5), rendered from `policies/example.yaml` (compiled in).
//!
//! The example is the reference: every key with its default and unit, in
//! comments beside it. The page shows its opening comment as DESCRIPTION and
//! then the file itself, verbatim, one subsection per top-level key — so a key
//! documented in the example is in the page, and nothing else is. Only roff
//! escaping is applied (tests/packaging.rs renders the page and finds every
//! line of the example in it).

/// The annotated example shipped as `/usr/share/doc/ftpsgate/examples/example.yaml`.
pub(crate) const EXAMPLE: &str = include_str!("../../policies/example.yaml");

/// The whole page as roff; `version` goes into the footer.
pub(crate) fn render(version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH FTPSGATE.YAML 5 \"\" \"ftpsgate {}\" \"File Formats\"\n",
        escape(version)
    ));
    out.push_str(".SH NAME\nftpsgate.yaml \\- ftpsgate configuration and policy file\n");
    out.push_str(".SH SYNOPSIS\n\\fI/etc/ftpsgate/ftpsgate.yaml\\fR\n");
    out.push_str(
        ".SH DESCRIPTION\n\
         \\fBftpsgate\\fR(1) reads one YAML file, plus the files it includes. \
         Everything is validated at start and by \\fBftpsgate check\\fR. \
         Below is the annotated example shipped as \
         \\fI/usr/share/doc/ftpsgate/examples/example.yaml\\fR: every key, \
         its default and its unit, in comments beside it. \
         A commented-out key is optional and shown with an example value.\n",
    );
    let blocks = blocks(EXAMPLE);
    let first_key = blocks.iter().position(|b| top_level_key(b).is_some());
    let (intro, keys) = blocks.split_at(first_key.unwrap_or(blocks.len()));
    out.push_str(".SS Conventions\n.nf\n");
    for block in intro {
        for line in block {
            out.push_str(&escape_line(uncomment(line)));
        }
        out.push('\n');
    }
    out.push_str(".fi\n.SH KEYS\n");
    for block in keys {
        if let Some(key) = top_level_key(block) {
            out.push_str(&format!(".SS {}\n", escape(key)));
        }
        out.push_str(".nf\n");
        for line in block {
            out.push_str(&escape_line(line));
        }
        out.push_str(".fi\n");
    }
    out.push_str(
        ".SH FILES\n\\fI/etc/ftpsgate/ftpsgate.yaml\\fR, \
         \\fI/usr/share/doc/ftpsgate/examples/\\fR\n\
         .SH \"SEE ALSO\"\n\\fBftpsgate\\fR(1)\n",
    );
    out
}

/// Paragraphs of the file: runs of non-blank lines.
fn blocks(text: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The top-level key a paragraph documents: its first line in column 0 that is
/// `key:` or, commented out, `# key:`.
fn top_level_key<'a>(block: &[&'a str]) -> Option<&'a str> {
    block.iter().find_map(|line| {
        let rest = line.strip_prefix("# ").unwrap_or(line);
        let (key, _) = rest.split_once(':')?;
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        is_key.then_some(key)
    })
}

/// An opening comment line as text: without its `# `.
fn uncomment(line: &str) -> &str {
    line.strip_prefix("# ")
        .or_else(|| line.strip_prefix('#'))
        .unwrap_or(line)
}

/// One line of no-fill text: a leading `.` or `'` would be a request.
fn escape_line(line: &str) -> String {
    let escaped = escape(line);
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}\n")
    } else {
        format!("{escaped}\n")
    }
}

/// roff escapes: backslash, and `-` as a plain minus so that it renders as
/// ASCII `-` (a key such as `max-sessions` or a range `50000-50099` stays
/// copy-pasteable). Typographic characters become groff's named glyphs or
/// ASCII, which every output device has (`man` on a terminal warns about, and
/// drops, a character its font lacks, such as U+2026).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\u{2026}' => out.push_str("..."),
            '\u{2014}' => out.push_str("\\(em"),
            '\u{2013}' => out.push_str("\\(en"),
            '\u{2192}' => out.push_str("\\(->"),
            '\u{2265}' => out.push_str("\\(>="),
            '\u{2264}' => out.push_str("\\(<="),
            '\u{00d7}' => out.push_str("\\(mu"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_ascii() {
        // tests/packaging.rs compares the rendered page with the example line by
        // line; a typographic character would render differently.
        for (n, line) in EXAMPLE.lines().enumerate() {
            assert!(line.is_ascii(), "policies/example.yaml:{}: {line}", n + 1);
        }
    }

    #[test]
    fn every_line_of_the_example_is_in_the_page() {
        let page = render("0");
        let mut rest = page.as_str();
        for line in EXAMPLE.lines().filter(|l| !l.trim().is_empty()) {
            let intro_form = escape(uncomment(line));
            let key_form = escape(line);
            // In order: the page is the example, not a reordering of it.
            let at = [rest.find(&key_form), rest.find(&intro_form)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| panic!("line missing from ftpsgate.yaml(5): {line}"));
            rest = &rest[at..];
        }
    }

    #[test]
    fn each_top_level_section_gets_a_heading() {
        let page = render("0");
        for key in [
            "listeners",
            "backends",
            "timeouts",
            "metrics",
            "transfer_log",
        ] {
            assert!(page.contains(&format!(".SS {key}\n")), "no .SS {key}");
        }
    }

    #[test]
    fn leading_dots_are_escaped() {
        assert_eq!(escape_line(".x"), "\\&.x\n");
        assert_eq!(escape("a-b\\c"), "a\\-b\\ec");
        assert_eq!(escape("$2b$\u{2026} \u{2014} x"), "$2b$... \\(em x");
    }
}
