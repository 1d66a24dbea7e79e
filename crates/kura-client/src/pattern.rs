//! Path patterns for `backup --exclude` and `restore --include`, with restic's rules: a pattern
//! is matched component by component against the whole path; one that starts with `/` is
//! anchored at the root, any other may start at any depth; `*`, `?` and `[...]` stay within a
//! component and `**` spans any number of them; a trailing `/` is ignored. A pattern that
//! matches a directory matches everything under it. Each pattern remembers whether it matched
//! anything, so a typo can be reported instead of silently doing nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use globset::{Glob, GlobMatcher};

use crate::{ClientError, Result};

/// One component of a pattern.
#[derive(Debug)]
enum Part {
    /// `**`: any number of components, none included.
    Any,
    /// A glob for exactly one component.
    One(GlobMatcher),
}

/// One pattern as the user wrote it.
#[derive(Debug)]
struct Pattern {
    text: String,
    parts: Vec<Part>,
    anchored: bool,
    matched: AtomicBool,
}

/// A list of patterns; a path matches if any of them does.
#[derive(Debug, Default)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    /// Compiles the patterns; an invalid glob is a usage error naming it.
    pub fn new(patterns: &[String]) -> Result<Patterns> {
        let mut out = Vec::new();
        for text in patterns {
            let bad = |why: String| ClientError::Usage(format!("bad pattern {text:?}: {why}"));
            let trimmed = text.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(bad("it names no path".into()));
            }
            let mut parts = Vec::new();
            for c in trimmed.split('/').filter(|c| !c.is_empty()) {
                parts.push(if c == "**" {
                    Part::Any
                } else {
                    let glob = Glob::new(c).map_err(|e| bad(e.to_string()))?;
                    Part::One(glob.compile_matcher())
                });
            }
            out.push(Pattern {
                text: text.clone(),
                parts,
                anchored: text.starts_with('/'),
                matched: AtomicBool::new(false),
            });
        }
        Ok(Patterns(out))
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether absolute `path` (or a directory it is in) matches one of the patterns.
    pub fn matches(&self, path: &Path) -> bool {
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut any = false;
        for p in &self.0 {
            let hit = if p.anchored {
                prefix_matches(&p.parts, &comps)
            } else {
                (0..comps.len()).any(|start| prefix_matches(&p.parts, &comps[start..]))
            };
            if hit {
                p.matched.store(true, Ordering::Relaxed);
                any = true;
            }
        }
        any
    }

    /// The patterns that have matched nothing so far.
    pub fn unmatched(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|p| !p.matched.load(Ordering::Relaxed))
            .map(|p| p.text.clone())
            .collect()
    }
}

/// Whether `parts` match the first components of `comps` (the rest is under what matched).
fn prefix_matches(parts: &[Part], comps: &[&OsStr]) -> bool {
    match parts.split_first() {
        None => true,
        Some((Part::Any, rest)) => {
            (0..=comps.len()).any(|skip| prefix_matches(rest, &comps[skip..]))
        }
        Some((Part::One(glob), rest)) => match comps.split_first() {
            Some((c, more)) => {
                glob.is_match(Path::new(OsStr::from_bytes(c.as_bytes())))
                    && prefix_matches(rest, more)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Patterns::new(&[pattern.into()])
            .unwrap()
            .matches(Path::new(path))
    }

    #[test]
    fn a_name_matches_at_any_depth_and_everything_below() {
        assert!(m("test", "/home/u/py/test"));
        assert!(m("test", "/home/u/py/test/a/b.py"));
        assert!(!m("test", "/home/u/py/tests"));
        assert!(m("*.tmp", "/x/y/a.tmp"));
        assert!(!m("*.tmp", "/x/y/a.tmpx"));
    }

    #[test]
    fn a_relative_path_matches_at_any_depth_an_absolute_one_at_the_root() {
        assert!(m("py/test", "/home/u/py/test/x"));
        assert!(!m("py/test", "/home/u/py/other/test"));
        assert!(m("/home/u/py", "/home/u/py/test"));
        assert!(!m("/u/py", "/home/u/py"));
        assert!(m("py/test/", "/a/py/test"), "a trailing slash is ignored");
    }

    #[test]
    fn stars_stay_in_a_component_and_double_stars_span_them() {
        assert!(!m("/home/*", "/home"));
        assert!(m("/home/*", "/home/u"));
        assert!(m("/data/*/cache", "/data/x/cache/f"));
        assert!(!m("/data/*/cache", "/data/x/y/cache"));
        assert!(m("/data/**/cache", "/data/x/y/cache"));
        assert!(m("/data/**/cache", "/data/cache"));
        assert!(m("**/d2/*", "/t/src/d2/f2.bin"));
    }

    #[test]
    fn patterns_that_matched_nothing_are_named() {
        let p = Patterns::new(&["*.tmp".into(), "nothing-here".into()]).unwrap();
        assert!(p.matches(Path::new("/a/b.tmp")));
        assert!(!p.matches(Path::new("/a/c")));
        assert_eq!(p.unmatched(), vec!["nothing-here".to_string()]);
        assert!(Patterns::new(&["[".into()]).is_err());
        assert!(Patterns::new(&["/".into()]).is_err());
    }
}
