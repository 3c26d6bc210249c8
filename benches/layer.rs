//! Commit and apply of a large layer, side by side with their floors, interleaved in one run:
//! - commit: `layer::diff_id` (the tar stream of a directory through SHA-256, writing nothing)
//!   vs `tar -c DIR | openssl dgst -sha256`;
//! - apply: `layer::apply` of that tar into an empty directory vs `tar -x`.
//!
//! usage: cargo bench --bench layer -- DIR [RUNS]   (benches/layer.sh makes DIR: 200 MB in
//! 2,000 files of random data)

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use boxr::layer::{self, WriteOptions};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn shell(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = Path::new(args.first().expect("usage: layer DIR [RUNS]"));
    let runs: usize = args.get(1).map_or(10, |r| r.parse().unwrap());
    let data = dir.join("data");
    let scratch = dir.join("scratch");
    let opts = WriteOptions {
        clamp_mtime: Some(0),
    };
    let tar_path = dir.join("layer.tar");
    let (stats, _) = layer::write_tar(&data, opts, fs::File::create(&tar_path).unwrap()).unwrap();
    println!(
        "layer: {} entries, {:.0} MB tar, diff_id {}",
        stats.entries,
        stats.size as f64 / 1e6,
        stats.diff_id
    );
    let (mut c_floor, mut c_boxr, mut a_floor, mut a_boxr) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        shell(&format!(
            "tar -C {} -cf - . | openssl dgst -sha256 >/dev/null",
            data.display()
        ));
        c_floor.push(t.elapsed());

        let t = Instant::now();
        let s = layer::diff_id(&data, opts).unwrap();
        c_boxr.push(t.elapsed());
        assert_eq!(s.diff_id, stats.diff_id);

        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir(&scratch).unwrap();
        let t = Instant::now();
        shell(&format!(
            "tar -C {} -xf {}",
            scratch.display(),
            tar_path.display()
        ));
        a_floor.push(t.elapsed());

        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir(&scratch).unwrap();
        let t = Instant::now();
        layer::apply(fs::File::open(&tar_path).unwrap(), &scratch, &[]).unwrap();
        a_boxr.push(t.elapsed());
    }
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_file(&tar_path);
    let (cf, cb, af, ab) = (
        median(c_floor),
        median(c_boxr),
        median(a_floor),
        median(a_boxr),
    );
    println!("\n{runs} runs each, interleaved; medians:\n");
    println!("| operation | boxr | floor | boxr / floor | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| commit (DiffID of the upper dir) | {:.0} ms | {:.0} ms (`tar -c \\| openssl dgst -sha256`) | {:.2}x | ≤ 1.5x |",
        ms(cb),
        ms(cf),
        cb.as_secs_f64() / cf.as_secs_f64()
    );
    println!(
        "| apply (tar → overlay-format dir) | {:.0} ms | {:.0} ms (`tar -x`) | {:.2}x | ≤ 1.5x |",
        ms(ab),
        ms(af),
        ab.as_secs_f64() / af.as_secs_f64()
    );
}
