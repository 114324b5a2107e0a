//! The report as text (checks in order, each subject worst first with every evidence line) and as
//! JUnit XML (one testsuite `cutover-validate`, a testcase per check × subject: `<failure>` for
//! red, `<skipped>` for unknown and for checks that did not run). JSON is the report's serde form.

use std::fmt::Write;

use super::{Report, State};

/// The text report.
///
/// ```text
/// red      cross-node-flows  Flows between pods on different nodes are forwarded, none dropped
///   red      homelab-w1 → homelab-w2  (2s)
///              14 dropped (STALE_OR_UNROUTABLE_IP ×14), 0 forwarded
///   green    homelab-cp1 → homelab-w1  (2s)
///              120 forwarded, none dropped
///            note: 2931 flow(s) read in 2s
/// skipped  probe-clusterip  A probe Service … — --passive
/// ```
pub fn text(report: &Report) -> String {
    let mut s = String::new();
    let flows = match report.flows_seen {
        Some(n) => format!(", {n} flow(s) read"),
        None => String::new(),
    };
    let _ = writeln!(s, "cutover validate: passive checks, flow window {}{flows}", super::checks::secs(report.window));
    for c in &report.checks {
        let _ = writeln!(s, "{:<8} {}  {}", c.state.as_str(), c.id, c.title);
        for r in &c.results {
            let _ = writeln!(s, "  {:<8} {}  ({})", r.state.as_str(), r.subject, super::checks::secs(r.duration));
            for e in &r.evidence {
                let _ = writeln!(s, "             {e}");
            }
        }
        for n in &c.notes {
            let _ = writeln!(s, "           note: {n}");
        }
    }
    for k in &report.skipped {
        let _ = writeln!(s, "{:<8} {}  {} — {}", "skipped", k.id, k.title, k.reason);
    }
    let count = |st: State| report.checks.iter().filter(|c| c.state == st).count();
    let _ = writeln!(
        s,
        "{} green, {} red, {} unknown, {} skipped",
        count(State::Green),
        count(State::Red),
        count(State::Unknown),
        report.skipped.len()
    );
    s
}

/// Escapes text for XML attributes and character data; characters XML 1.0 cannot carry (most
/// C0 controls) become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// JUnit XML for CI: one `<testsuite name="cutover-validate">` inside `<testsuites>`.
pub fn junit(report: &Report) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures, mut skipped) = (0usize, 0usize, 0usize);
    for c in &report.checks {
        for r in &c.results {
            tests += 1;
            let body = xml_escape(&r.evidence.join("\n"));
            let first = xml_escape(r.evidence.first().map(String::as_str).unwrap_or(""));
            let _ = writeln!(
                cases,
                "    <testcase classname=\"cutover-validate.{}\" name=\"{}\" time=\"{}\">",
                xml_escape(&c.id),
                xml_escape(&format!("{}: {}", c.id, r.subject)),
                seconds(r.duration)
            );
            match r.state {
                State::Red => {
                    failures += 1;
                    let _ = writeln!(cases, "      <failure message=\"red: {first}\" type=\"red\">{body}</failure>");
                }
                State::Unknown => {
                    skipped += 1;
                    let _ = writeln!(cases, "      <skipped message=\"unknown: {first}\"/>");
                    let _ = writeln!(cases, "      <system-out>{body}</system-out>");
                }
                State::Green => {
                    let _ = writeln!(cases, "      <system-out>{body}</system-out>");
                }
            }
            if !c.notes.is_empty() {
                let _ = writeln!(cases, "      <system-err>{}</system-err>", xml_escape(&c.notes.join("\n")));
            }
            cases.push_str("    </testcase>\n");
        }
    }
    for k in &report.skipped {
        tests += 1;
        skipped += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"cutover-validate.{id}\" name=\"{id}\" time=\"0.000\">\n      <skipped message=\"{reason}\"/>\n    </testcase>\n",
            id = xml_escape(&k.id),
            reason = xml_escape(&k.reason)
        );
    }
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"cutover validate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{t}\">",
        t = seconds(report.elapsed)
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"cutover-validate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{t}\">",
        t = seconds(report.elapsed)
    );
    s.push_str(&cases);
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::validate::{CheckResult, PassiveCheck, Skipped, SubResult};

    fn report() -> Report {
        let sub = |subject: &str, state, ev: &[&str]| SubResult {
            subject: subject.into(),
            state,
            evidence: ev.iter().map(|e| e.to_string()).collect(),
            duration: Duration::from_millis(1500),
        };
        Report {
            checks: vec![
                CheckResult::new(
                    PassiveCheck::CrossNodeFlows,
                    vec![
                        sub(
                            "a → b",
                            State::Red,
                            &["3 dropped (STALE_OR_UNROUTABLE_IP ×3)", "x <> y & \"z\" <'q'>\u{1}"],
                        ),
                        sub("b → a", State::Green, &["9 forwarded"]),
                    ],
                    vec!["no traffic: a → c".into()],
                ),
                CheckResult::new(PassiveCheck::DnsAnswers, vec![sub("c", State::Unknown, &["no DNS traffic"])], vec![]),
            ],
            skipped: vec![Skipped { id: "probe-clusterip".into(), title: "t".into(), reason: "--passive".into() }],
            window: Duration::from_secs(2),
            flows_seen: Some(42),
            elapsed: Duration::from_millis(2100),
        }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let xml = junit(&report());
        assert!(
            xml.contains("<testsuite name=\"cutover-validate\" tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\" time=\"2.100\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"cross-node-flows: a → b\""), "{xml}");
        assert!(xml.contains("x &lt;&gt; y &amp; &quot;z&quot; &lt;&apos;q&apos;&gt;\u{FFFD}"), "{xml}");
        assert!(xml.contains("<skipped message=\"unknown: no DNS traffic\"/>"), "{xml}");
        assert!(xml.contains("<skipped message=\"--passive\"/>"), "{xml}");
        assert!(xml.contains("<failure message=\"red: 3 dropped (STALE_OR_UNROUTABLE_IP ×3)\" type=\"red\">"), "{xml}");
        assert!(!xml.contains('\u{1}'));
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert_eq!(xml.matches("</testcase>").count(), 4);
    }

    #[test]
    fn text_lists_every_subject_and_the_skipped() {
        let t = text(&report());
        assert!(t.starts_with("cutover validate: passive checks, flow window 2s, 42 flow(s) read\n"), "{t}");
        assert!(t.contains("red      cross-node-flows  "), "{t}");
        assert!(t.contains("\n  red      a → b  (1.5s)\n             3 dropped"), "{t}");
        assert!(t.contains("note: no traffic: a → c"), "{t}");
        assert!(t.contains("skipped  probe-clusterip  t — --passive"), "{t}");
        assert!(t.ends_with("0 green, 1 red, 1 unknown, 1 skipped\n"), "{t}");
    }
}
