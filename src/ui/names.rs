//! Names that fit a column and stay distinct: `homelab-cp1` / `homelab-w1` become `…cp1` / `…w1`
//! rather than two rows reading `homelab-`. A cut name that could be read as another one would
//! let the operator act on the wrong node.

use std::collections::{BTreeSet, HashMap};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Display width.
pub fn width(s: &str) -> usize {
    s.width()
}

/// The longest head of `s` that is at most `w` columns wide.
fn head(s: &str, w: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.width().unwrap_or(0);
        if used > w {
            return &s[..i];
        }
    }
    s
}

/// The longest tail of `s` that is at most `w` columns wide.
fn tail(s: &str, w: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices().rev() {
        used += c.width().unwrap_or(0);
        if used > w {
            return &s[i + c.len_utf8()..];
        }
    }
    s
}

/// Cut at the end with `…`.
fn cut_end(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    format!("{}…", head(s, w.saturating_sub(1)))
}

fn is_sep(c: char) -> bool {
    matches!(c, '-' | '.' | '_' | '/' | ':')
}

/// Byte length of the common prefix of `a` and `b`, backed off to just after a separator so the
/// rest starts at a word (`homelab-` of `homelab-cp1` / `homelab-w1`; nothing of `node1`/`node2`).
fn shared_prefix(a: &str, b: &str) -> usize {
    let mut last_sep = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            break;
        }
        if is_sep(x) {
            last_sep = i + x.len_utf8();
        }
    }
    last_sep
}

/// Labels for `names` (distinct) that are at most `w` columns wide and distinct from each other,
/// in the same order. Tries, in turn: the names; without the prefix and suffix they all share;
/// each without the prefix it shares with its closest neighbour; cut at the end; cut in the
/// middle. The first that keeps the labels distinct wins (the last one is best effort).
pub fn labels(names: &[&str], w: usize) -> Vec<String> {
    let w = w.max(1);
    if names.iter().all(|n| width(n) <= w) {
        return names.iter().map(|n| n.to_string()).collect();
    }
    let distinct = |v: &[String]| v.iter().collect::<BTreeSet<_>>().len() == v.len();
    let mut tries: Vec<Vec<String>> = Vec::new();

    // 1. Strip what they all share.
    if names.len() > 1 {
        let prefix = names.windows(2).map(|p| shared_prefix(p[0], p[1])).min().unwrap_or(0);
        let rev: Vec<String> = names.iter().map(|n| n.chars().rev().collect()).collect();
        let suffix = rev.windows(2).map(|p| shared_prefix(&p[0], &p[1])).min().unwrap_or(0);
        let all_rest = names.iter().all(|n| prefix + suffix < n.len());
        if (prefix > 0 || suffix > 0) && all_rest {
            tries.push(
                names
                    .iter()
                    .map(|n| {
                        let core = &n[prefix..n.len() - suffix];
                        let (p, s) = (if prefix > 0 { "…" } else { "" }, if suffix > 0 { "…" } else { "" });
                        let label = format!("{p}{core}{s}");
                        if width(&label) <= w { label } else { format!("{p}{}", cut_end(core, w - width(p))) }
                    })
                    .collect(),
            );
        }
    }

    // 2. Each without the prefix it shares with its nearest neighbour (in sorted order).
    let mut sorted: Vec<(usize, &str)> = names.iter().copied().enumerate().collect();
    sorted.sort_by_key(|(_, n)| *n);
    let mut own_prefix: HashMap<usize, usize> = HashMap::new();
    for (k, (i, n)) in sorted.iter().enumerate() {
        let before = k.checked_sub(1).map_or(0, |j| shared_prefix(n, sorted[j].1));
        let after = sorted.get(k + 1).map_or(0, |(_, m)| shared_prefix(n, m));
        own_prefix.insert(*i, before.max(after));
    }
    tries.push(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if width(n) <= w {
                    return n.to_string();
                }
                let p = own_prefix.get(&i).copied().unwrap_or(0);
                if p == 0 || p >= n.len() { cut_end(n, w) } else { format!("…{}", cut_end(&n[p..], w - 1)) }
            })
            .collect(),
    );

    // 3. Cut at the end; 4. in the middle.
    tries.push(names.iter().map(|n| cut_end(n, w)).collect());
    tries.push(
        names
            .iter()
            .map(|n| {
                if width(n) <= w {
                    return n.to_string();
                }
                let room = w.saturating_sub(1);
                let back = room / 2;
                format!("{}…{}", head(n, room - back), tail(n, back))
            })
            .collect(),
    );
    let last = tries.pop().unwrap_or_default();
    tries.into_iter().find(|t| distinct(t)).unwrap_or(last)
}

/// The widest label.
pub fn max_width(labels: &[String]) -> usize {
    labels.iter().map(|l| width(l)).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_are_kept() {
        assert_eq!(labels(&["homelab-cp1", "homelab-w1"], 11), ["homelab-cp1", "homelab-w1"]);
    }

    #[test]
    fn a_shared_prefix_goes_first() {
        assert_eq!(labels(&["homelab-cp1", "homelab-w1", "homelab-w2"], 6), ["…cp1", "…w1", "…w2"]);
        assert_eq!(labels(&["cp1.lab.example", "w1.lab.example"], 6), ["cp1…", "w1…"]);
    }

    #[test]
    fn many_similar_long_names_stay_distinct() {
        let owned: Vec<String> =
            (0..200).map(|i| format!("worker-{i:03}-with-a-very-long-hostname.lab.example")).collect();
        let mut names: Vec<&str> = owned.iter().map(String::as_str).collect();
        names.extend(["homelab-cp1", "homelab-w1", "ノード-東京-01"]);
        for w in [4, 8, 12, 20, 40] {
            let l = labels(&names, w);
            assert!(l.iter().all(|x| width(x) <= w), "{w}: {l:?}");
            if w >= 8 {
                assert_eq!(l.iter().collect::<BTreeSet<_>>().len(), l.len(), "{w}: {l:?}");
            }
        }
        let l = labels(&names, 12);
        assert_eq!(l[7], "…007-with-a…");
        assert_eq!(l[200], "homelab-cp1");
    }

    #[test]
    fn no_panic_on_odd_input() {
        assert_eq!(labels(&[], 5), Vec::<String>::new());
        assert_eq!(labels(&["w1", "w1-b"], 3), ["w1", "w1…"]);
        assert_eq!(labels(&["ノード"], 3), ["ノ…"]);
        let _ = labels(&["a", "b"], 0);
    }
}
