//! Property tests of the manifest parser:
//! - the fast KDL reader agrees with the `kdl` crate (the reference) on every document it
//!   accepts, spans included, and accepts the ordinary ones;
//! - nothing a user can type makes `boxr check`'s parser panic.

use std::collections::BTreeMap;

use boxr::manifest::{self, syntax};
use boxr::plan;
use boxr::reference::ImageRef;

struct NoStore;
impl plan::ImageResolver for NoStore {
    fn resolve(&self, _: &ImageRef) -> Option<String> {
        None
    }
}
use proptest::prelude::*;

fn bare_ident() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("from".to_owned()),
        Just("run".to_owned()),
        Just("x-y".to_owned()),
        Just("a.b".to_owned()),
        Just("-a".to_owned()),
        Just("+a".to_owned()),
        Just(".a".to_owned()),
        Just("a1".to_owned()),
        Just("_".to_owned()),
        Just("-".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("1a".to_owned()),
        Just("é".to_owned()),
        Just("a:b".to_owned()),
        "[a-z][a-z0-9_.:-]{0,8}",
    ]
}

fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ a-zA-Z0-9_./:${}-]{0,6}",
        1 => Just("\\n".to_owned()),
        1 => Just("\\t".to_owned()),
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
        1 => Just("\\s".to_owned()),
        1 => Just("\\u{41}".to_owned()),
        1 => Just("\\u{1F600}".to_owned()),
        1 => Just("\\u{D800}".to_owned()),
        1 => Just("\\x".to_owned()),
        1 => Just("é日本".to_owned()),
        1 => Just("\\\n   ".to_owned()),
    ]
}

fn quoted() -> impl Strategy<Value = String> {
    prop::collection::vec(string_piece(), 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        Just("1_000".to_owned()),
        Just("+7".to_owned()),
        Just("-0".to_owned()),
        Just("1.5".to_owned()),
        Just("-2.0e3".to_owned()),
        Just("1e10".to_owned()),
        Just("1.".to_owned()),
        Just("0x1F".to_owned()),
        Just("0o755".to_owned()),
        Just("1_2.3_4".to_owned()),
        Just("99999999999999999999999999999999999999999".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => quoted(),
        2 => bare_ident(),
        2 => number(),
        1 => Just("#true".to_owned()),
        1 => Just("#false".to_owned()),
        1 => Just("#null".to_owned()),
        1 => Just("#inf".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("#\"raw\"#".to_owned()),
        1 => Just("(t)1".to_owned()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => value(),
        2 => (prop_oneof![bare_ident(), quoted()], prop_oneof![Just("="), Just(" = "), Just("= ")], value())
            .prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
    ]
}

fn sep() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(" "),
        1 => Just("\t"),
        1 => Just(" /* c */ "),
        1 => Just(" /- "),
        1 => Just("  "),
        1 => Just(""),
    ]
}

fn terminator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("\n"),
        1 => Just(";"),
        1 => Just("; "),
        1 => Just(" // note\n"),
        1 => Just("\r\n"),
        1 => Just(""),
    ]
}

fn node(depth: u32) -> BoxedStrategy<String> {
    let entries = prop::collection::vec((sep(), entry()), 0..4).prop_map(|es| {
        es.into_iter()
            .map(|(s, e)| format!("{s}{e}"))
            .collect::<String>()
    });
    let name = prop_oneof![4 => bare_ident(), 1 => quoted()];
    let children = if depth == 0 {
        Just(None).boxed()
    } else {
        prop::option::of(prop::collection::vec(node(depth - 1), 0..3)).boxed()
    };
    (
        name,
        entries,
        children,
        prop_oneof![Just(" "), Just(""), Just(" /- ")],
        terminator(),
    )
        .prop_map(|(n, e, c, before, t)| match c {
            Some(kids) => format!("{n}{e}{before}{{\n{}}}{t}", kids.concat()),
            None => format!("{n}{e}{t}"),
        })
        .boxed()
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![4 => Just(""), 1 => Just("\n"), 1 => Just("// c\n"), 1 => Just("/* a /* b */ */\n"), 1 => Just("/- ")],
            node(2),
        ),
        0..5,
    )
    .prop_map(|ns| {
        ns.into_iter()
            .map(|(pre, n)| {
                // Make sure consecutive nodes are separated, as a person would write them.
                if n.ends_with(['\n', ';']) {
                    format!("{pre}{n}")
                } else {
                    format!("{pre}{n}\n")
                }
            })
            .collect()
    })
}

/// A byte-level mutation: delete, insert or replace one character.
fn mutate(doc: String, pos: usize, op: u8, ch: char) -> String {
    let mut chars: Vec<char> = doc.chars().collect();
    if chars.is_empty() {
        return ch.to_string();
    }
    let i = pos % chars.len();
    match op % 3 {
        0 => {
            chars.remove(i);
        }
        1 => chars.insert(i, ch),
        _ => chars[i] = ch,
    }
    chars.into_iter().collect()
}

fn special_char() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('"'),
        Just('{'),
        Just('}'),
        Just(';'),
        Just('='),
        Just('#'),
        Just('/'),
        Just('*'),
        Just('\\'),
        Just('\n'),
        Just(' '),
        Just('('),
        Just('-'),
        Just('.'),
        Just('1'),
        Just('\u{a0}'),
        Just('\u{0}'),
        any::<char>(),
    ]
}

fn agree(src: &str) -> Result<(), TestCaseError> {
    if let Some(fast) = syntax::parse_fast(src) {
        let reference = syntax::parse_kdl_v2(src);
        prop_assert!(
            reference.is_ok(),
            "fast reader accepted what kdl rejects: {src:?}\n{reference:?}"
        );
        prop_assert_eq!(fast, reference.unwrap(), "trees differ for {:?}", src);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fast_reader_agrees_with_kdl(doc in document()) {
        agree(&doc)?;
    }

    #[test]
    fn fast_reader_agrees_on_mutations(doc in document(), pos in any::<usize>(), op in any::<u8>(), ch in special_char()) {
        agree(&mutate(doc, pos, op, ch))?;
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(src in any::<String>()) {
        let _ = manifest::parse("fuzz.kdl", &src, &BTreeMap::new());
    }

    #[test]
    fn parser_never_panics_on_kdl_shaped_text(doc in document(), pos in any::<usize>(), op in any::<u8>(), ch in special_char()) {
        let _ = manifest::parse("fuzz.kdl", &doc, &BTreeMap::new());
        let _ = manifest::parse("fuzz.kdl", &mutate(doc, pos, op, ch), &BTreeMap::new());
    }
}

/// Mutations of a real manifest (every core form), for the lowering code's error paths.
#[test]
fn parser_never_panics_on_mutated_manifests() {
    let base = include_str!("../manifests/full.kdl");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Makefile"), "all:").unwrap();
    let opts = plan::PlanOptions {
        context: ctx.path(),
        manifest_dir: ctx.path(),
        targets: &[],
        resolver: &NoStore,
        hashes: None,
    };
    let chars: Vec<char> = base.chars().collect();
    let specials = [
        '"', '{', '}', ';', '=', '#', '/', '\\', '\n', ' ', '$', '1', 'x', ':',
    ];
    // Every 5th position (the kdl fallback that errors take is slow; this still takes every
    // node and value of the file through several broken shapes).
    for i in (0..chars.len()).step_by(5) {
        for (k, ch) in specials.iter().enumerate() {
            let s = mutate(base.to_owned(), i, (i + k) as u8, *ch);
            if let Ok(m) = manifest::parse("m.kdl", &s, &BTreeMap::new()) {
                // And the planner copes with whatever parses (missing inputs, failed parents).
                let _ = plan::plan(&m, &opts);
            }
        }
    }
}

/// The fast reader accepts every valid KDL v2 fixture, so they take the fast path, and agrees
/// with kdl. (kdl-v1.kdl is KDL v1, which only the kdl crate reads.)
#[test]
fn fixtures_take_the_fast_path() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests")).unwrap() {
        let path = entry.unwrap().path();
        let v1 = path.to_str().unwrap().contains("v1");
        if path.extension().is_some_and(|e| e == "kdl") && !v1 {
            let src = std::fs::read_to_string(&path).unwrap();
            let fast = syntax::parse_fast(&src);
            assert!(
                fast.is_some(),
                "{} declined by the fast reader",
                path.display()
            );
            assert_eq!(
                fast.unwrap(),
                syntax::parse_kdl_v2(&src).unwrap(),
                "{}",
                path.display()
            );
        }
    }
}
