//! User-name patterns as written in `routes[].user`: `*` and `?` globs.
//!
//! Pure string functions, used by `policy::route` to pick a route and by
//! [`super::Config::warnings`] to spot a route shadowed by an earlier one. A new
//! pattern feature (character classes, case folding) goes here, with its tests in
//! `tests/pattern.rs`.

/// Whether `user` matches `pattern`: `*` is any run of characters (also none), `?`
/// exactly one, everything else itself (case-sensitive, as FTP servers compare
/// user names).
pub fn user_matches(pattern: &str, user: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let u: Vec<char> = user.chars().collect();
    // Greedy match with one backtrack point: the last `*` seen and where in `u` it
    // started. Linear for patterns with one star, O(len(p) * len(u)) at worst.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < u.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == '?' || c == u[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether every name `inner` matches is matched by `outer` too (so a route with
/// `inner` after one with `outer` is never used). Sound but not complete: `true`
/// is always right, some covered patterns are not detected.
pub(crate) fn pattern_covers(outer: &str, inner: &str) -> bool {
    let a: Vec<char> = outer.chars().collect();
    let b: Vec<char> = inner.chars().collect();
    // covers[i][j]: outer[i..] covers inner[j..]. An outer `*` takes any run of
    // inner tokens (stars included), an outer `?` one inner literal or `?`, a
    // literal only the same literal.
    let mut covers = vec![vec![false; b.len() + 1]; a.len() + 1];
    covers[a.len()][b.len()] = true;
    for i in (0..a.len()).rev() {
        for j in (0..=b.len()).rev() {
            covers[i][j] = match a[i] {
                '*' => covers[i + 1][j] || (j < b.len() && covers[i][j + 1]),
                '?' => j < b.len() && b[j] != '*' && covers[i + 1][j + 1],
                c => j < b.len() && b[j] == c && covers[i + 1][j + 1],
            };
        }
    }
    covers[0][0]
}
