//! Redis-style glob matching, as used by `KEYS` and `SCAN ... MATCH`.
//!
//! The rules are those of Redis's `stringmatchlen`, quirks included, so a pattern selects
//! the same keys here as on a real server:
//!
//! * `*` matches any run of bytes, `?` any single byte;
//! * `[abc]` a byte from the set, `[^abc]` a byte outside it, `[a-z]` a range, also when
//!   written backwards (`[z-a]`); `\x` inside brackets is a literal `x`;
//! * `\x` outside brackets matches `x` literally; a trailing lone `\` matches `\`;
//! * an unterminated `[` runs to the end of the pattern and still matches one byte
//!   (`[abc` acts like `[abc]`, a bare `[` matches nothing);
//! * an empty subject is only matched by the empty pattern and by `*` itself (the latter
//!   because `KEYS *` and `SCAN` treat `*` as "everything" before ever calling the matcher).
//!
//! Two deliberate differences, both at the fringes: range bounds compare as unsigned bytes
//! (Redis compares C `char`s, signed on x86, so there `[a-\xff]` does not mean "a and up"),
//! and there is no cap on the number of `*` (Redis gives up after 1000 nested stars).
//!
//! Matching is byte-wise and binary safe. Redis recurses once per `*`; here every
//! pattern element other than `*` consumes exactly one byte, which makes it enough to
//! remember only the most recent `*` when backtracking: worst case O(pattern × subject)
//! time, constant memory, and no exponential blow-up on `a*a*a*a*b`-like patterns.

/// Whether `subject` matches the Redis glob `pattern`.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    if subject.is_empty() {
        return pattern.is_empty() || pattern == b"*";
    }
    let mut p = 0;
    let mut s = 0;
    // After a mismatch, retry from here: (pattern index just past the last `*`,
    // subject index that `*` run stopped at).
    let mut resume: Option<(usize, usize)> = None;
    while s < subject.len() {
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            resume = Some((p, s));
            continue;
        }
        if let Some(next) = match_one(pattern, p, subject[s]) {
            p = next;
            s += 1;
            continue;
        }
        // A later `*` supersedes earlier ones: whatever an earlier star could absorb, the
        // latest one can absorb too, because everything in between matches fixed widths.
        let Some((star_p, star_s)) = resume else {
            return false;
        };
        p = star_p;
        s = star_s + 1;
        resume = Some((star_p, s));
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches the single-byte pattern element at `pattern[p]` (not `*`) against `c`.
/// Returns the index of the next element on a match, `None` otherwise or at pattern end.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => match_class(pattern, p + 1, c),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        literal => (literal == c).then_some(p + 1),
    }
}

/// Matches a bracket expression whose body starts at `pattern[i]` (just past `[`).
fn match_class(pattern: &[u8], mut i: usize, c: u8) -> Option<usize> {
    let len = pattern.len();
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        if i >= len {
            // Unterminated: the class simply ends with the pattern.
            i = len;
            break;
        }
        match pattern[i] {
            b'\\' if len - i >= 2 => {
                i += 1;
                matched |= pattern[i] == c;
            }
            b']' => {
                i += 1;
                break;
            }
            // Redis only needs three bytes to see a range, so in `[a-]` the `]` becomes
            // the range's end and the class runs on past it; kept for compatibility.
            start if len - i >= 3 && pattern[i + 1] == b'-' => {
                let end = pattern[i + 2];
                let (lo, hi) = if start <= end { (start, end) } else { (end, start) };
                matched |= (lo..=hi).contains(&c);
                i += 2;
            }
            literal => matched |= literal == c,
        }
        i += 1;
    }
    (matched != negate).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, subject: &str) -> bool {
        glob_match(pattern.as_bytes(), subject.as_bytes())
    }

    /// A direct recursive transcription of the matching rules, exponential but obviously
    /// faithful, to cross-check the backtracking implementation on small inputs.
    fn reference(pattern: &[u8], subject: &[u8]) -> bool {
        if subject.is_empty() {
            return pattern.is_empty() || pattern == b"*";
        }
        fn go(p: &[u8], s: &[u8]) -> bool {
            match p.first() {
                None => s.is_empty(),
                Some(b'*') => (0..=s.len()).any(|skip| go(&p[1..], &s[skip..])),
                Some(_) => match s.first() {
                    None => false,
                    Some(&c) => match match_one(p, 0, c) {
                        Some(next) => go(&p[next..], &s[1..]),
                        None => false,
                    },
                },
            }
        }
        go(pattern, subject)
    }

    #[test]
    fn star_and_question_mark() {
        assert!(matches("h?llo", "hello"));
        assert!(matches("h?llo", "hallo"));
        assert!(!matches("h?llo", "hllo"));
        assert!(matches("h*llo", "hllo"));
        assert!(matches("h*llo", "heeeello"));
        assert!(!matches("h*llo", "hello!"));
        assert!(matches("*", "anything"));
        assert!(matches("a*", "a"));
        assert!(matches("a*b*", "ab"));
        assert!(matches("*a", "bba"));
        assert!(!matches("*a", "ab"));
        assert!(matches("user:*:name", "user:42:name"));
        assert!(matches("**x**", "abx"));
    }

    #[test]
    fn empty_subject_matches_only_empty_pattern_and_lone_star() {
        assert!(matches("", ""));
        assert!(matches("*", ""));
        assert!(!matches("**", ""));
        assert!(!matches("?", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn bracket_sets_and_negation() {
        assert!(matches("h[ae]llo", "hello"));
        assert!(matches("h[ae]llo", "hallo"));
        assert!(!matches("h[ae]llo", "hillo"));
        assert!(matches("h[^e]llo", "hallo"));
        assert!(matches("h[^e]llo", "hbllo"));
        assert!(!matches("h[^e]llo", "hello"));
        // `[]` is a complete, empty set: it matches nothing, and the second `]` is literal.
        assert!(!matches("[]", "]"));
        assert!(!matches("[]]", "]]"));
    }

    #[test]
    fn ranges_work_in_both_directions() {
        assert!(matches("h[a-b]llo", "hallo"));
        assert!(matches("h[a-b]llo", "hbllo"));
        assert!(!matches("h[a-b]llo", "hcllo"));
        assert!(matches("[z-a]", "m"));
        assert!(matches("[0-9x]", "x"));
        assert!(!matches("[^0-9]", "5"));
    }

    #[test]
    fn escapes_outside_and_inside_brackets() {
        assert!(matches("h\\*llo", "h*llo"));
        assert!(!matches("h\\*llo", "hello"));
        assert!(matches("\\?", "?"));
        assert!(!matches("\\?", "a"));
        assert!(matches("a\\", "a\\"), "a trailing backslash is literal");
        assert!(matches("[\\]]", "]"));
        assert!(matches("[\\-]", "-"));
        assert!(matches("[a\\-z]", "-"));
        assert!(!matches("[a\\-z]", "b"));
        assert!(matches("[\\^a]", "^"));
    }

    #[test]
    fn unterminated_bracket_behaves_like_redis() {
        assert!(matches("[abc", "a"));
        assert!(matches("[abc", "c"));
        assert!(!matches("[abc", "d"));
        assert!(!matches("[abc", "ab"));
        assert!(!matches("[", "["));
        assert!(!matches("ab[", "abc"));
        assert!(matches("[^", "x"));
        assert!(matches("x[^", "xy"));
    }

    #[test]
    fn dash_before_closing_bracket_forms_a_range_like_redis() {
        // `[a-]` is the range `]`..`a` (0x5d..0x61) running to the pattern end.
        assert!(matches("[a-]", "_"));
        assert!(matches("[a-]", "a"));
        assert!(!matches("[a-]", "-"));
        assert!(!matches("[a-]", "b"));
        // With nothing after the dash it is a literal dash.
        assert!(matches("[a-", "-"));
    }

    #[test]
    fn binary_subjects_and_patterns() {
        assert!(glob_match(b"\xff*", b"\xff\x00abc"));
        assert!(glob_match(b"?\x00?", b"a\x00b"));
        assert!(glob_match(b"[\x80-\xff]", b"\xc3"));
        assert!(!glob_match(b"[\x80-\xff]", b"a"));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let subject = vec![b'a'; 100_000];
        assert!(!glob_match(b"a*a*a*a*a*a*a*a*a*a*b", &subject));
        let mut subject = subject;
        subject.push(b'b');
        assert!(glob_match(b"a*a*a*a*a*a*a*a*a*a*b", &subject));
        let mut stars = b"*a".repeat(2000);
        assert!(glob_match(&stars, &subject[..5000]));
        stars.push(b'b');
        assert!(!glob_match(&stars, &subject[..5000]));
    }

    #[test]
    fn agrees_with_the_recursive_reference_on_random_inputs() {
        const PATTERN_BYTES: &[u8] = b"ab*?[]^-\\";
        const SUBJECT_BYTES: &[u8] = b"ab]-^\\*";
        let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        let mut next = |n: usize| rng.usize(..n);
        for _ in 0..200_000 {
            let pattern: Vec<u8> = (0..next(8)).map(|_| PATTERN_BYTES[next(PATTERN_BYTES.len())]).collect();
            let subject: Vec<u8> = (0..next(7)).map(|_| SUBJECT_BYTES[next(SUBJECT_BYTES.len())]).collect();
            assert_eq!(
                glob_match(&pattern, &subject),
                reference(&pattern, &subject),
                "pattern {:?} subject {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&subject)
            );
        }
    }
}
