//! Parser throughput on one manifest: the fast KDL reader, the kdl crate (the reference), and the
//! whole `manifest::parse` (syntax + lowering + checks). Run by benches/check.sh:
//!     cargo bench --bench parse -- FILE
//! Prints one line per parser: median and min over the runs, and MB/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use boxr::manifest::{self, syntax};

fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (samples[runs / 2], samples[0])
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .expect("usage: cargo bench --bench parse -- FILE");
    let src = std::fs::read_to_string(&path).unwrap();
    let mb = src.len() as f64 / 1e6;
    let args = BTreeMap::new();
    assert!(
        syntax::parse_fast(&src).is_some(),
        "the fast reader declined {path}"
    );
    println!("{path}: {:.0} KB", src.len() as f64 / 1e3);
    println!("| parser | median | min | MB/s |");
    println!("|---|---|---|---|");
    type Row<'a> = (&'a str, usize, Box<dyn Fn() + 'a>);
    let rows: [Row; 3] = [
        (
            "fast KDL reader",
            30,
            Box::new(|| drop(syntax::parse_fast(&src))),
        ),
        (
            "kdl crate 6 (v2)",
            5,
            Box::new(|| drop(syntax::parse_kdl_v2(&src))),
        ),
        (
            "manifest::parse (all checks)",
            30,
            Box::new(|| drop(manifest::parse("b.kdl", &src, &args))),
        ),
    ];
    for (name, runs, f) in rows {
        let (median, min) = time(runs, f);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} |",
            median.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            mb / median.as_secs_f64()
        );
    }
}
