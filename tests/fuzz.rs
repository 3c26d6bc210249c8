//! The fuzz targets (`boxr::fuzzing`, run under libFuzzer from `fuzz/`) on stable, in CI: each
//! over its seed corpus and deterministic mutations of every seed (bit flips, byte changes,
//! insertions, deletions, duplicated runs, splices of two seeds, truncation). A panic, a stack
//! overflow or a hang fails the test. Crashes found by longer fuzzing runs go into the corpus
//! (`fuzz/corpus/TARGET/`), so they are checked here from then on.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use boxr::fuzzing;

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the formats: KDL and JSON punctuation, tar and gzip magic.
const INTERESTING: &[u8] = b"{}[]()\"\\/=;#*-:,.\n\r\t 0\x00\xff\x1f\x8b/$@";

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let run: Vec<u8> = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                for _ in 0..1 + rng.below(8) {
                    v.splice(at..at, run.iter().copied());
                }
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 => {
                v.truncate(rng.below(len + 1));
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

/// The seeds of `target`: its corpus directory in `fuzz/corpus`, plus `extra`.
fn seeds(target: &str, extra: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = extra;
    if let Ok(rd) = fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            out.push(fs::read(f).unwrap());
        }
    }
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

fn run(target: &str, seeds: &[Vec<u8>], per_seed: usize, mut body: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for (i, seed) in seeds.iter().enumerate() {
        body(seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..per_seed {
            body(&mutate(seed, other, &mut rng));
        }
    }
}

fn files_under(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == ext) {
            out.push(fs::read(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn manifest_readers_and_lowering() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut extra = files_under(&root.join("manifests"), "kdl");
    extra.extend(files_under(&root.join("examples"), "kdl"));
    extra.extend(files_under(&root.join("tests/data/invalid"), "kdl"));
    let seeds = seeds("manifest", extra);
    run("manifest", &seeds, 150, fuzzing::manifest);
}

#[test]
fn image_references() {
    let extra: Vec<Vec<u8>> = [
        "debian",
        "debian:12",
        "docker.io/library/debian:12",
        "localhost:5000/team/app:1.2",
        "127.0.0.1:5000/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "quay.io/x/y:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "index.docker.io/team/app",
        "[::1]:5000/a",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let seeds = seeds("reference", extra);
    run("reference", &seeds, 400, fuzzing::reference);
}

#[test]
fn oci_json() {
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let extra = vec![
        format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":1,"annotations":{{"a":"b"}}}}]}}"#).into_bytes(),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":7,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#).into_bytes(),
        format!(r#"{{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{{"Env":["A=1"],"Cmd":["sh"],"ExposedPorts":{{"80/tcp":{{}}}},"Healthcheck":{{"Test":["CMD","true"],"Interval":1000}}}},"rootfs":{{"type":"layers","diff_ids":["{d}"]}},"history":[{{"created_by":"x","empty_layer":true}}]}}"#).into_bytes(),
    ];
    let seeds = seeds("oci_json", extra);
    run("oci_json", &seeds, 400, fuzzing::oci_json);
}

/// Small tars of every entry type apply handles, and the hostile shapes it must refuse.
fn tar_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let header = |path: &str, kind: tar::EntryType, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).ok();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o755);
        h.set_cksum();
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header("etc/", tar::EntryType::Directory, 0), &[][..])
        .unwrap();
    b.append(
        &header("etc/passwd", tar::EntryType::Regular, 5),
        &b"root\n"[..],
    )
    .unwrap();
    let mut l = header("etc/link", tar::EntryType::Symlink, 0);
    l.set_link_name("passwd").unwrap();
    l.set_cksum();
    b.append(&l, &[][..]).unwrap();
    let mut hl = header("etc/hard", tar::EntryType::Link, 0);
    hl.set_link_name("etc/passwd").unwrap();
    hl.set_cksum();
    b.append(&hl, &[][..]).unwrap();
    b.append(&header("etc/.wh.gone", tar::EntryType::Regular, 0), &[][..])
        .unwrap();
    b.append(
        &header("var/.wh..wh..opq", tar::EntryType::Regular, 0),
        &[][..],
    )
    .unwrap();
    out.push(b.into_inner().unwrap());
    // A symlink out of the root, then a file written through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut l = header("escape", tar::EntryType::Symlink, 0);
    l.set_link_name("/").unwrap();
    l.set_cksum();
    b.append(&l, &[][..]).unwrap();
    b.append(
        &header("escape/canary", tar::EntryType::Regular, 3),
        &b"bad"[..],
    )
    .unwrap();
    out.push(b.into_inner().unwrap());
    // `..` in a path, set on the raw header (the tar crate refuses to write it).
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../canary");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(b"bad");
    raw.resize(512 * 2, 0);
    raw.extend_from_slice(&[0u8; 1024]);
    out.push(raw);
    // A gzip of the first.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &out[0]).unwrap();
    out.push(gz.finish().unwrap());
    out
}

#[test]
fn layer_apply() {
    if !support::privileged("layer_apply") {
        return;
    }
    let seeds = seeds("layer_apply", tar_seeds());
    let w = tempfile::tempdir().unwrap();
    let mut n = 0;
    run("layer_apply", &seeds, 60, |data| {
        n += 1;
        let work = w.path().join(n.to_string());
        fs::create_dir(&work).unwrap();
        fuzzing::layer_apply(data, &work);
        let _ = boxr::store::remove_dir_tree(&work);
    });
}
