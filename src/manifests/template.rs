//! A deliberately tiny template language for the files in `assets/templates/`: `{{name}}`
//! substitutions and whole-line `{{#if flag}}` / `{{#unless flag}}` … `{{/if}}` / `{{/unless}}`
//! blocks. Unknown names are errors (a typo must never render as an empty string).

use std::collections::BTreeMap;

/// Template values: strings for `{{name}}`, booleans for blocks.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    pub text: BTreeMap<&'static str, String>,
    pub flags: BTreeMap<&'static str, bool>,
}

impl Vars {
    pub fn set(&mut self, k: &'static str, v: impl Into<String>) -> &mut Self {
        self.text.insert(k, v.into());
        self
    }

    pub fn flag(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.flags.insert(k, v);
        self
    }
}

/// A template problem, with the template name and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template}:{line}: {message}")]
pub struct TemplateError {
    pub template: String,
    pub line: usize,
    pub message: String,
}

/// Renders `src`. Lines holding only a block tag are dropped.
pub fn render(name: &str, src: &str, vars: &Vars) -> Result<String, TemplateError> {
    let err = |line: usize, message: String| TemplateError { template: name.to_string(), line, message };
    let mut out = String::with_capacity(src.len());
    // Stack of (tag, condition, line): a line is emitted only if every enclosing block holds.
    let mut stack: Vec<(&str, bool, usize)> = Vec::new();
    for (i, line) in src.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let t = line.trim();
        if let Some(inner) = t.strip_prefix("{{#").and_then(|r| r.strip_suffix("}}")) {
            let (tag, flag) = inner.split_once(' ').ok_or_else(|| err(n, format!("block {t:?} needs a flag")))?;
            let value =
                *vars.flags.get(flag.trim()).ok_or_else(|| err(n, format!("unknown flag {:?}", flag.trim())))?;
            let cond = match tag {
                "if" => value,
                "unless" => !value,
                _ => return Err(err(n, format!("unknown block {tag:?}"))),
            };
            stack.push((if tag == "if" { "if" } else { "unless" }, cond, n));
            continue;
        }
        if let Some(tag) = t.strip_prefix("{{/").and_then(|r| r.strip_suffix("}}")) {
            match stack.pop() {
                Some((open, _, _)) if open == tag => continue,
                Some((open, _, l)) => {
                    return Err(err(n, format!("{{{{/{tag}}}}} closes {{{{#{open}}}}} from line {l}")));
                }
                None => return Err(err(n, format!("{{{{/{tag}}}}} without an open block"))),
            }
        }
        if stack.iter().all(|(_, c, _)| *c) {
            out.push_str(&substitute(line, vars).map_err(|m| err(n, m))?);
        }
    }
    if let Some((open, _, l)) = stack.pop() {
        return Err(err(l, format!("{{{{#{open}}}}} is never closed")));
    }
    Ok(out)
}

fn substitute(line: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "unclosed {{".to_string())?;
        let name = after[..end].trim();
        let value = vars.text.get(name).ok_or_else(|| format!("unknown variable {name:?}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set("name", "cilium").flag("on", true).flag("off", false);
        v
    }

    #[test]
    fn substitutes_and_blocks() {
        let src = "a: {{name}}\n{{#if on}}\nb: {{ name }}\n{{#if off}}\nc: 1\n{{/if}}\n{{/if}}\n{{#unless off}}\nd: 2\n{{/unless}}\n";
        assert_eq!(render("t", src, &vars()).expect("renders"), "a: cilium\nb: cilium\nd: 2\n");
    }

    #[test]
    fn errors_name_template_and_line() {
        let e = render("t.yaml", "a: 1\nb: {{nope}}\n", &vars()).expect_err("unknown");
        assert_eq!((e.template.as_str(), e.line), ("t.yaml", 2));
        assert!(render("t", "{{#if on}}\n", &vars()).is_err());
        assert!(render("t", "{{/if}}\n", &vars()).is_err());
        assert!(render("t", "{{#if nope}}\n{{/if}}\n", &vars()).is_err());
        assert!(render("t", "{{#if on}}\n{{/unless}}\n", &vars()).is_err());
    }
}
