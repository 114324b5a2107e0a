//! How the simulator reads YAML: the Git repo's manifests and values files, k3s' config.yaml and
//! server-side-apply request bodies, all into `serde_json::Value` (the store's object form).
//!
//! One set of options for all of them, so a value means the same wherever it is read.

use serde_json::Value;

/// YAML 1.2 core schema scalars, as the serde_yaml family read them before: only
/// `true`/`false` are booleans (`yes`, `on` stay strings), zero-padded and underscored numbers
/// (`0644`, `1_000`) stay strings instead of becoming numbers, and `.inf`/`.nan` are accepted
/// (JSON has no such number: they become `null`). Errors come without the source snippet, since
/// they end up inside one-line messages (Argo conditions, API `Status` bodies). The same options
/// as the values linter's, so the sim and `cutover lint` read a file alike.
pub fn options() -> serde_saphyr::Options {
    crate::manifests::lint::values::options()
}

/// An error as a client or operator reads it, on one line: what is wrong, then where
/// (`unclosed bracket '[' at line 1, column 4`), in serde-saphyr's user-facing wording (without
/// its hints to the programmer, such as which function reads several documents).
pub fn message(e: &serde_saphyr::Error) -> String {
    e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
}

/// One YAML document into JSON. Errors carry the parser's message with its line and column.
pub fn to_json(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| message(&e))
}

/// `to_json` on raw bytes (a request body); bytes that are not UTF-8 are an error too.
pub fn slice_to_json(bytes: &[u8]) -> Result<Value, String> {
    serde_saphyr::from_slice_with_options(bytes, options()).map_err(|e| message(&e))
}

/// Every document of a multi-document stream (`---`) into JSON. Empty and `null` documents are
/// skipped, as `kubectl apply -f` skips them.
pub fn docs_to_json(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| message(&e))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_1_2_scalars() {
        let v = to_json("a: yes\nb: on\nc: 0644\nd: 1_000\ne: true\nf: 1.5\ng: 0x1f\nh: ~\ni: \"0644\"\nj: .inf\n")
            .expect("parses");
        assert_eq!(
            v,
            json!({"a": "yes", "b": "on", "c": "0644", "d": "1_000", "e": true, "f": 1.5, "g": 31, "h": null,
                   "i": "0644", "j": null})
        );
        assert_eq!(to_json("").expect("empty"), Value::Null);
    }

    #[test]
    fn documents_and_errors() {
        let docs = docs_to_json("a: 1\n---\n---\n# only a comment\n---\nb: 2\n").expect("parses");
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(docs_to_json("").expect("empty"), Vec::<Value>::new());
        let e = docs_to_json("a: 1\n---\nb: [\n").expect_err("malformed");
        assert!(e.contains("line 3") && !e.contains('\n'), "{e}");
        let e = to_json("a: 1\na: 2\n").expect_err("duplicate");
        assert!(e.contains("duplicate") && !e.contains("DuplicateKeyPolicy") && !e.contains('\n'), "{e}");
        assert!(to_json("a: 1\n---\nb: 2\n").is_err(), "one document expected");
        assert!(slice_to_json(b"a: \xff\n").is_err());
        assert_eq!(slice_to_json(b"a: [1, x]\n").expect("parses"), json!({"a": [1, "x"]}));
    }

    #[test]
    fn written_yaml_reads_back() {
        let v = json!({"s": ["yes", "0644", "1.0", "", "a: b", "- c", "multi\nline\n", "null", "~"], "n": null,
                       "e": {}, "l": [], "y": "true", "num": 1.5});
        let text = serde_saphyr::to_string(&v).expect("writes");
        assert_eq!(to_json(&text).expect("reads"), v, "{text}");
    }
}
