//! `ticket-bench compare` on two fixture runs (real runs against nginx, trimmed to the files
//! compare reads): the table with ratios, and a well-formed SVG with one line per run.

mod support;

use std::path::PathBuf;

use ticket_bench::compare::compare;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runs")
        .join(name)
}

/// The tags of an XML document, checked for balance: returns each element's name in document
/// order. Panics on unbalanced or malformed tags. Enough XML for what compare writes (no
/// CDATA, no comments, no `>` inside attribute values).
fn try_elements(xml: &str) -> Result<Vec<String>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = xml.trim();
    check(rest.starts_with('<'), || {
        "text before the root element".into()
    })?;
    while let Some(open) = rest.find('<') {
        check(!rest[..open].contains('>'), || {
            "stray '>' before a tag".into()
        })?;
        let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
        let tag = &rest[open + 1..close];
        check(tag.matches('"').count().is_multiple_of(2), || {
            format!("unbalanced quotes in <{tag}>")
        })?;
        if let Some(name) = tag.strip_prefix('/') {
            check(stack.pop().as_deref() == Some(name.trim()), || {
                format!("mismatched </{name}>")
            })?;
        } else {
            let name: String = tag
                .trim_end_matches('/')
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            check(name.chars().all(|c| c.is_ascii_alphanumeric()), || {
                format!("bad name {name:?}")
            })?;
            if stack.is_empty() {
                check(names.is_empty(), || "more than one root element".into())?;
            }
            names.push(name.clone());
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        // Text between tags must not hold a bare '&' that is not an entity.
        let next = rest[close + 1..]
            .find('<')
            .map_or(rest.len(), |n| n + close + 1);
        let text = &rest[close + 1..next];
        for (i, _) in text.match_indices('&') {
            check(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#"]
                    .iter()
                    .any(|e| text[i..].starts_with(e)),
                || format!("bare & in {text:?}"),
            )?;
        }
        rest = &rest[close + 1..];
    }
    check(stack.is_empty(), || format!("unclosed {stack:?}"))?;
    check(rest.trim().is_empty(), || {
        "text after the root element".into()
    })?;
    Ok(names)
}

/// `Err(why())` unless `ok`.
fn check(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

/// The element names of a well-formed document, in order; panics with the fault otherwise.
fn elements(xml: &str) -> Vec<String> {
    try_elements(xml).unwrap_or_else(|why| panic!("{why}"))
}

/// compare.md has one row per run with ratios against the first; compare.svg is well formed,
/// rooted in <svg>, with one polyline per run, labelled axes and a legend naming each run.
#[test]
fn compare_two_runs() {
    let out = support::scratch("compare");
    let runs = [fixture("nginx-c64"), fixture("nginx-c8")];
    let dir = compare(&runs, Some(&out)).unwrap();
    assert_eq!(dir, out);

    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| run | scenario | req/s | p50 | p99 | p99.9 | max | errors |"));
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| nginx-")).collect();
    assert_eq!(rows.len(), 2, "{md}");
    assert!(
        rows[0].starts_with("| nginx-c64 | available | 44,300 (1.00×) |"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("| nginx-c8 | available | 45,915 (1.04×) | 0.050 (0.10×) |"),
        "{}",
        rows[1]
    );
    assert!(md.contains("![latency by percentile](compare.svg)"));

    let svg = std::fs::read_to_string(out.join("compare.svg")).unwrap();
    let names = elements(&svg);
    assert_eq!(names[0], "svg");
    let lines = names
        .iter()
        .filter(|n| *n == "polyline" || *n == "path")
        .count();
    assert_eq!(lines, 2);
    for label in [
        "0%",
        "90%",
        "99%",
        "99.9%",
        "99.99%",
        "Percentile",
        "Latency (milliseconds)",
    ] {
        assert!(
            svg.contains(&format!(">{label}</text>")),
            "no axis label {label}"
        );
    }
    assert!(svg.contains(">nginx-c64 (44,300 req/s)</text>"));
    assert!(svg.contains(">nginx-c8 (45,915 req/s)</text>"));
    std::fs::remove_dir_all(out).unwrap();
}

/// A folder that is not a run is refused with its path in the message.
#[test]
fn not_a_run() {
    let empty = support::scratch("not-a-run");
    let err = compare(std::slice::from_ref(&empty), Some(&empty)).unwrap_err();
    assert!(err.to_string().contains("summary.json"), "{err}");
    std::fs::remove_dir_all(empty).unwrap();
}

/// The checker itself rejects what it should (so a pass of the SVG test above means something).
#[test]
fn checker_rejects_malformed_documents() {
    let table: &[(&str, &str)] = &[
        ("<svg><g><text>x</g></text></svg>", "mismatched"),
        ("<svg><g></svg>", "mismatched"),
        ("<svg><g>", "unclosed"),
        ("<svg a=\"1></svg>", "unbalanced quotes"),
        ("<svg>a & b</svg>", "bare &"),
        ("<svg></svg><svg></svg>", "more than one root"),
        ("x<svg></svg>", "text before"),
    ];
    for &(xml, want) in table {
        let why = try_elements(xml).expect_err(xml);
        assert!(why.contains(want), "{xml}: {why}");
    }
    assert_eq!(
        try_elements("<svg><g/><text>a &amp; b</text></svg>").unwrap(),
        ["svg", "g", "text"]
    );
}
