//! `excludes` as GNU tar's `--exclude` applies them.
//!
//! The legacy tool ran `cd $(dirname path); tar -cf - --exclude … ./$(basename path)`.
//! GNU tar matches an unanchored pattern against a member name and each of its tails after
//! a `/`, with `fnmatch(3)` without `FNM_PATHNAME` (so `*` and `?` match `/` too) and
//! without `FNM_PERIOD` (so `*` matches a leading dot). The pattern is taken as written:
//! `tmp/` and `./tmp` match no member name, so they exclude nothing there, and nothing
//! here. Names are bytes (a latin-1 `caf\xe9` included), and so is the matching; `{a,b}`
//! and `**` mean nothing special to tar, and nothing special here.

pub struct Excludes {
    patterns: Vec<Vec<u8>>,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Excludes {
        Excludes {
            patterns: patterns.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    /// The index of the first pattern that excludes member `name` (`./base/a/b`, as bytes).
    pub fn matching(&self, name: &[u8]) -> Option<usize> {
        if self.patterns.is_empty() {
            return None;
        }
        let tails = tails(name);
        self.patterns
            .iter()
            .position(|p| tails.iter().any(|t| fnmatch(p, t)))
    }
}

/// The names GNU tar matches an unanchored pattern against: `./b/c/d` gives `./b/c/d`,
/// `b/c/d`, `c/d` and `d`.
fn tails(name: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![name];
    for (i, &byte) in name.iter().enumerate() {
        if byte == b'/' && i + 1 < name.len() {
            out.push(&name[i + 1..]);
        }
    }
    out
}

/// `fnmatch(pattern, name, 0)`: `*` any run of bytes, `?` one character, `[...]` a set
/// (`!` or `^` negates, `a-z` ranges, `[:alpha:]` classes), `\` quotes the next byte.
pub fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index it covers to).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some((p + 1, char_len(&name[n..]))),
            Some(b'[') => match bracket(&pattern[p..], &name[n..]) {
                Some((used, matched, len)) => matched.then_some((p + used, len)),
                // An unclosed `[` is a literal `[`, as in fnmatch.
                None => (name[n] == b'[').then_some((p + 1, 1)),
            },
            Some(b'\\') if p + 1 < pattern.len() => {
                (name[n] == pattern[p + 1]).then_some((p + 2, 1))
            }
            Some(&literal) => (name[n] == literal).then_some((p + 1, 1)),
            None => None,
        };
        match step {
            Some((next_p, len)) => {
                p = next_p;
                n += len;
            }
            None => match star {
                // Let the last `*` take one more byte and try again from there.
                Some((after, covered)) => {
                    star = Some((after, covered + 1));
                    p = after;
                    n = covered + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Bytes in the character starting `name`: a UTF-8 sequence when valid there, else one.
fn char_len(name: &[u8]) -> usize {
    let want = match name[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 1,
    };
    match name.get(..want).map(std::str::from_utf8) {
        Some(Ok(_)) => want,
        _ => 1,
    }
}

/// Matches a `[...]` set at the start of `pattern` against the first character of `name`:
/// (pattern bytes used, matched, name bytes used), or `None` when the set is not closed.
fn bracket(pattern: &[u8], name: &[u8]) -> Option<(usize, bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let len = char_len(name);
    let c = decode(&name[..len]);
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((i + 1, matched != negate, len));
        }
        first = false;
        if b == b'[' && pattern.get(i + 1) == Some(&b':') {
            let end = pattern[i + 2..].windows(2).position(|w| w == b":]")?;
            let class = &pattern[i + 2..i + 2 + end];
            matched |= in_class(class, c);
            i += end + 4;
            continue;
        }
        let (low, used) = pattern_char(&pattern[i..]);
        i += used;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&b| b != b']') {
            let (high, used) = pattern_char(&pattern[i + 1..]);
            i += 1 + used;
            matched |= (low..=high).contains(&c);
        } else {
            matched |= c == low;
        }
    }
}

/// One character of a pattern (after a `\` when quoted) as a code point, and bytes used.
fn pattern_char(pattern: &[u8]) -> (u32, usize) {
    let quoted = pattern[0] == b'\\' && pattern.len() > 1;
    let start = usize::from(quoted);
    let len = char_len(&pattern[start..]);
    (decode(&pattern[start..start + len]), start + len)
}

/// The code point of a valid UTF-8 character, or the byte itself (as U+DC80-style
/// surrogate-escaped value, so an invalid byte never equals a real character).
fn decode(bytes: &[u8]) -> u32 {
    match std::str::from_utf8(bytes) {
        Ok(s) if bytes.len() > 1 || bytes[0] < 0x80 => s.chars().next().map_or(0, u32::from),
        _ => 0xdc00 + u32::from(bytes[0]),
    }
}

fn in_class(class: &[u8], c: u32) -> bool {
    let Some(ch) = char::from_u32(c) else {
        return false;
    };
    match class {
        b"alpha" => ch.is_alphabetic(),
        b"digit" => ch.is_ascii_digit(),
        b"alnum" => ch.is_alphanumeric(),
        b"upper" => ch.is_uppercase(),
        b"lower" => ch.is_lowercase(),
        b"space" => ch.is_whitespace(),
        b"blank" => ch == ' ' || ch == '\t',
        b"punct" => ch.is_ascii_punctuation(),
        b"xdigit" => ch.is_ascii_hexdigit(),
        b"cntrl" => ch.is_control(),
        b"print" => !ch.is_control(),
        b"graph" => !ch.is_control() && ch != ' ',
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_fnmatch_without_pathname_or_period() {
        assert!(fnmatch(b"*~", b"notes.txt~"));
        assert!(fnmatch(b"*", b"a/b/.hidden"));
        assert!(fnmatch(b"a?c", b"a/c"));
        assert!(fnmatch(b"cache/*.db", b"cache/x/y.db"));
        assert!(!fnmatch(b"tmp/", b"tmp"));
        assert!(fnmatch(b"caf?.txt", b"caf\xe9.txt"));
        assert!(fnmatch("caf?.txt".as_bytes(), "café.txt".as_bytes()));
        assert!(fnmatch(b"[a-c]x", b"bx"));
        assert!(!fnmatch(b"[!a-c]x", b"bx"));
        assert!(fnmatch(b"[[:digit:]]*", b"7up"));
        assert!(fnmatch(b"\\*", b"*"));
        assert!(!fnmatch(b"\\*", b"a"));
        assert!(fnmatch(b"{a,b}", b"{a,b}"));
        assert!(fnmatch(b"[", b"["));
        assert!(fnmatch(b"*.log", b".log"));
        assert!(!fnmatch(b"*.log", b"x.logs"));
    }

    #[test]
    fn unanchored_patterns_see_the_name_and_each_tail() {
        let ex = Excludes::new(&["tmp".into(), "base/logs/*".into(), "data/*".into()]);
        assert_eq!(ex.matching(b"./base/a/tmp"), Some(0));
        assert_eq!(ex.matching(b"./base/logs/x"), Some(1));
        // `data` is above the source's folder: tar never sees it in a member name.
        assert_eq!(ex.matching(b"./base/x"), None);
    }
}
