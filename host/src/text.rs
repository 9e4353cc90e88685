//! Untrusted text made safe to show. Every string a plugin (or a destination's stored
//! object) hands the host is someone else's words: it goes into terminals, logs, reports
//! and notifications, where a newline forges a line ("every source reached every
//! destination") and an escape sequence (`ESC[8m`) hides the real verdict. So such text
//! is cut to a readable size and every control or bidirectional-formatting character in
//! it is written out as an escape (`\n`, `\u{1b}`), visible and inert.

/// `text` cut to at most `most` bytes (on a character boundary), saying how much was cut.
pub fn shorten(mut text: String, most: usize) -> String {
    if text.len() > most {
        let mut cut = most;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!(" […{dropped} more bytes]"));
    }
    text
}

/// `text` with control and bidi-formatting characters escaped, then cut to `most` bytes.
pub fn for_terminal(text: &str, most: usize) -> String {
    if !text.chars().any(needs_escape) {
        return shorten(text.to_string(), most);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    shorten(out, most)
}

/// Characters that move the cursor, change what a terminal shows, or reorder text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_written_out() {
        let forged =
            "disk failed\nOK: every source reached every destination\u{1b}[8m\u{202e}x\u{9b}";
        let shown = for_terminal(forged, 1000);
        assert!(!shown.chars().any(needs_escape), "{shown:?}");
        assert_eq!(
            shown,
            "disk failed\\nOK: every source reached every destination\\u{1b}[8m\\u{202e}x\\u{9b}"
        );
        assert_eq!(for_terminal("plain é text", 100), "plain é text");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let cut = for_terminal(&"é".repeat(100), 11);
        assert!(cut.starts_with("ééééé "), "{cut}");
        assert!(cut.ends_with("more bytes]"), "{cut}");
    }
}
