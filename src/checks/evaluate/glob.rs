//! The glob Argo CD applies to a directory source's `include` / `exclude`.

/// Glob as Argo CD's directory include/exclude: `*`, `?`, `{a,b}`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}'))
        && open < close
    {
        let (pre, rest) = pattern.split_at(open);
        let alts = &rest[1..close - open];
        let post = &rest[close - open + 1..];
        return alts.split(',').any(|alt| glob_match(&format!("{pre}{alt}{post}"), name));
    }
    fn m(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], n) || (!n.is_empty() && n[0] != '/' && m(p, &n[1..])),
            (Some('?'), Some(c)) if *c != '/' => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*-app.yaml", "cilium-app.yaml"));
        assert!(!glob_match("*-app.yaml", "values.yaml"));
        assert!(glob_match("{cilium-app.yaml,other.yaml}", "cilium-app.yaml"));
        assert!(glob_match("*.{yaml,yml}", "cilium-app.yml"));
        assert!(!glob_match("*.json", "cilium-app.yaml"));
    }
}
