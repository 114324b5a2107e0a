//! The glob Argo CD applies to a directory source's `include` / `exclude`.
//!
//! Argo CD's repo server matches each manifest's path relative to the source path with
//! `github.com/gobwas/glob`, compiled without separators. So:
//! - `*` (and `**`) is any run of characters, `/` included; `?` is any one character;
//! - `[abc]`, `[a-z]` and their negations `[!abc]`, `[!a-z]` are one character of a set or range;
//! - `{a,b,c}` is one of the alternatives, each a pattern of its own (nesting allowed);
//! - `\` makes the next character literal; `,` and `}` are literal outside a `{...}`, `]` outside
//!   a `[...]`;
//! - a pattern that does not compile (unclosed `{` or `[`, trailing `\`) matches nothing: Argo CD
//!   logs a warning and treats it as no match.
//!
//! The pattern comes from an Application on the cluster, i.e. from outside: matching must stay
//! cheap whatever it says. The `{...}` groups are expanded up front into at most
//! [`MAX_ALTERNATIVES`] plain patterns, and each is matched by the two-pointer `*` algorithm
//! (backtrack only to the last `*`), which is O(pattern × name) instead of exponential.

/// More expanded alternatives than this and the pattern is refused (matches nothing): a directory
/// include has a handful; thousands would only make every check slower.
const MAX_ALTERNATIVES: usize = 256;

/// Deeper `{` nesting than this is refused, so that parsing cannot exhaust the stack.
const MAX_NESTING: usize = 16;

/// Why a pattern does not compile (it then matches nothing, as in Argo CD).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PatternError {
    #[error("unclosed `{{`")]
    UnclosedGroup,
    #[error("unclosed or malformed `[...]`")]
    BadClass,
    #[error("trailing `\\`")]
    TrailingEscape,
    #[error("more than {MAX_ALTERNATIVES} alternatives")]
    TooManyAlternatives,
    #[error("`{{` nested deeper than {MAX_NESTING}")]
    TooDeep,
}

/// One element of an expanded (brace-free) pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*` or `**`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    Literal(char),
    /// `[...]`: one character in (or, negated, not in) the set.
    Class {
        negated: bool,
        set: CharSet,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CharSet {
    Chars(Vec<char>),
    Range(char, char),
}

impl Token {
    /// Whether this single-character token accepts `c` (never called for `Star`).
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Literal(l) => *l == c,
            Token::Class { negated, set } => {
                let inside = match set {
                    CharSet::Chars(cs) => cs.contains(&c),
                    CharSet::Range(lo, hi) => (*lo..=*hi).contains(&c),
                };
                inside != *negated
            }
        }
    }
}

/// Glob as Argo CD's directory include/exclude (see the module doc): true when `name` matches.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let Ok(alternatives) = compile(pattern) else {
        return false;
    };
    let name: Vec<char> = name.chars().collect();
    alternatives.iter().any(|p| match_tokens(p, &name))
}

/// The pattern with its `{...}` groups expanded: one token list per alternative.
fn compile(pattern: &str) -> Result<Vec<Vec<Token>>, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pos = 0;
    let out = sequence(&chars, &mut pos, 0)?;
    // At depth 0 `sequence` only stops at the end of the pattern.
    debug_assert_eq!(pos, chars.len());
    Ok(out)
}

/// Parses from `pos` to the end of the pattern, or (inside a group, `depth > 0`) to the `,` or
/// `}` that ends this alternative, which is left unread.
fn sequence(p: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Token>>, PatternError> {
    let mut acc: Vec<Vec<Token>> = vec![Vec::new()];
    while let Some(&c) = p.get(*pos) {
        if depth > 0 && (c == ',' || c == '}') {
            break;
        }
        *pos += 1;
        let token = match c {
            '*' => {
                while p.get(*pos) == Some(&'*') {
                    *pos += 1;
                }
                Token::Star
            }
            '?' => Token::Any,
            '[' => class(p, pos)?,
            '\\' => {
                let c = *p.get(*pos).ok_or(PatternError::TrailingEscape)?;
                *pos += 1;
                Token::Literal(c)
            }
            '{' => {
                let alts = group(p, pos, depth + 1)?;
                if acc.len().saturating_mul(alts.len()) > MAX_ALTERNATIVES {
                    return Err(PatternError::TooManyAlternatives);
                }
                acc = acc.iter().flat_map(|a| alts.iter().map(move |b| [a.as_slice(), b].concat())).collect();
                continue;
            }
            c => Token::Literal(c),
        };
        for a in &mut acc {
            a.push(token.clone());
        }
    }
    Ok(acc)
}

/// After a `{`: the alternatives up to the matching `}`, each expanded.
fn group(p: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Token>>, PatternError> {
    if depth > MAX_NESTING {
        return Err(PatternError::TooDeep);
    }
    let mut alts = Vec::new();
    loop {
        let alt = sequence(p, pos, depth)?;
        if alts.len() + alt.len() > MAX_ALTERNATIVES {
            return Err(PatternError::TooManyAlternatives);
        }
        alts.extend(alt);
        match p.get(*pos) {
            Some(',') => *pos += 1,
            Some('}') => {
                *pos += 1;
                return Ok(alts);
            }
            _ => return Err(PatternError::UnclosedGroup),
        }
    }
}

/// After a `[`: `!`? then either one range `a-z` or a set of characters (`\` escapes), then `]`.
fn class(p: &[char], pos: &mut usize) -> Result<Token, PatternError> {
    let negated = p.get(*pos) == Some(&'!');
    if negated {
        *pos += 1;
    }
    let set = match (p.get(*pos), p.get(*pos + 1), p.get(*pos + 2)) {
        (Some(&lo), Some('-'), Some(&hi)) => {
            *pos += 3;
            CharSet::Range(lo, hi)
        }
        _ => {
            let mut cs = Vec::new();
            loop {
                match p.get(*pos) {
                    None => return Err(PatternError::BadClass),
                    Some(']') => break,
                    Some('\\') => {
                        *pos += 1;
                        cs.push(*p.get(*pos).ok_or(PatternError::TrailingEscape)?);
                    }
                    Some(&c) => cs.push(c),
                }
                *pos += 1;
            }
            CharSet::Chars(cs)
        }
    };
    if p.get(*pos) != Some(&']') || matches!(&set, CharSet::Chars(cs) if cs.is_empty()) {
        return Err(PatternError::BadClass);
    }
    *pos += 1;
    Ok(Token::Class { negated, set })
}

/// Two-pointer match of a brace-free pattern: on a mismatch, go back to just after the last `*`
/// and let it swallow one more character. Earlier `*`s never need revisiting (whatever they
/// matched, the last one can absorb), so this is O(pattern × name).
fn match_tokens(p: &[Token], name: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // (token after the last `*`, name position that `*` matched up to)
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        match p.get(pi) {
            Some(Token::Star) => {
                pi += 1;
                star = Some((pi, ni));
            }
            Some(t) if t.accepts(name[ni]) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((after, upto)) => {
                    pi = after;
                    ni = upto + 1;
                    star = Some((after, ni));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Token::Star)
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

    #[test]
    fn pathological_patterns_finish() {
        // Exponential for a backtracking matcher (it never returned); a handful of passes here.
        let name = "a".repeat(40);
        assert!(!glob_match("a*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(glob_match("a*a*a*a*a*a*a*a*a*a*a*", &name));
        assert!(!glob_match(&format!("{}b", "*a".repeat(200)), &"a".repeat(400)));
        // 2^20 alternatives are refused (no match) instead of being expanded.
        let braces = "{a,b}".repeat(20);
        assert_eq!(compile(&braces), Err(PatternError::TooManyAlternatives));
        assert!(!glob_match(&braces, &"a".repeat(20)));
        assert_eq!(compile(&"{".repeat(10_000)), Err(PatternError::TooDeep));
        // Within the bound they still work.
        assert!(glob_match(&"{a,b}".repeat(8), "abababab"));
    }

    #[test]
    fn argo_cd_syntax() {
        // No separators in Argo CD's glob: `*` and `?` cross `/` (a recursive source's paths).
        assert!(glob_match("*.yaml", "apps/cilium-app.yaml"));
        assert!(glob_match("apps?cilium-app.yaml", "apps/cilium-app.yaml"));
        assert!(glob_match("**/*-app.yaml", "a/b/cilium-app.yaml"));
        assert!(glob_match("?-x", "a-x"));
        assert!(!glob_match("?-x", "-x"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("", "a"));
        // Classes, ranges, negation.
        assert!(glob_match("[abc]ilium-app.yaml", "cilium-app.yaml"));
        assert!(glob_match("[a-z]*-app.yaml", "cilium-app.yaml"));
        assert!(!glob_match("[!a-z]*-app.yaml", "cilium-app.yaml"));
        assert!(glob_match("[!0-9]*", "cilium-app.yaml"));
        assert!(glob_match("v[\\]]", "v]"));
        // Alternatives hold patterns, may nest and may be empty.
        assert!(glob_match("{*-app,other}.{yaml,yml}", "cilium-app.yml"));
        assert!(glob_match("cilium{-app,{-x,-y}}.yaml", "cilium-y.yaml"));
        assert!(glob_match("cilium-app{,.bak}.yaml", "cilium-app.yaml"));
        assert!(!glob_match("{cilium,hubble}-app.yaml", "tetragon-app.yaml"));
        // Escapes; `,` `}` `]` are literal where they open nothing.
        assert!(glob_match("\\*-app.yaml", "*-app.yaml"));
        assert!(!glob_match("\\*-app.yaml", "cilium-app.yaml"));
        assert!(glob_match("a,b}]", "a,b}]"));
        assert!(glob_match("{a\\,b}", "a,b"));
        // What does not compile matches nothing, as in Argo CD.
        assert_eq!(compile("{a,b"), Err(PatternError::UnclosedGroup));
        assert_eq!(compile("[ab"), Err(PatternError::BadClass));
        assert_eq!(compile("[]"), Err(PatternError::BadClass));
        assert_eq!(compile("[a-z0]"), Err(PatternError::BadClass));
        assert_eq!(compile("a\\"), Err(PatternError::TrailingEscape));
        assert!(!glob_match("{cilium-app.yaml", "{cilium-app.yaml"));
    }
}
