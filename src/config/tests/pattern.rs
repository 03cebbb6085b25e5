//! User-name patterns (`pattern.rs`): glob matching and route shadowing.

use crate::config::pattern::{pattern_covers, user_matches};

#[test]
fn globs() {
    for (p, u) in [
        ("alice", "alice"),
        ("*", ""),
        ("*", "anyone"),
        ("ro-*", "ro-"),
        ("ro-*", "ro-bob"),
        ("?ob", "bob"),
        ("a*b*c", "aXXbYYc"),
        ("a*b*c", "abc"),
        ("*@example.com", "x@example.com"),
        ("**", "x"),
        ("ü?", "üx"),
    ] {
        assert!(user_matches(p, u), "{p} should match {u}");
    }
    for (p, u) in [
        ("alice", "Alice"),
        ("alice", "alice2"),
        ("ro-*", "rw-bob"),
        ("?ob", "ob"),
        ("a*b*c", "aXXbYY"),
        ("", "x"),
        ("x?", "x"),
    ] {
        assert!(!user_matches(p, u), "{p} should not match {u}");
    }
}

#[test]
fn pattern_coverage() {
    for (outer, inner) in [
        ("*", "alice"),
        ("*", "ro-*"),
        ("ro-*", "ro-bob"),
        ("ro-*", "ro-b*"),
        ("alice", "alice"),
        ("?lice", "alice"),
        ("a*", "a?c"),
    ] {
        assert!(pattern_covers(outer, inner), "{outer} covers {inner}");
    }
    for (outer, inner) in [("alice", "*"), ("ro-*", "rw-*"), ("?", "*"), ("a?", "a*")] {
        assert!(
            !pattern_covers(outer, inner),
            "{outer} does not cover {inner}"
        );
    }
}
