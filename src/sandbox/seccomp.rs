//! seccomp: Docker's JSON profile format, boxr's default profile (Docker's, rule for rule, see
//! `seccomp-default.json`), and compilation to a BPF program with libseccomp.
//!
//! A profile is compiled for the native architecture and its sub-architectures (x86_64: i386
//! and x32, so a 32-bit syscall cannot slip past a 64-bit-only filter), with the rules that
//! apply to the container's capabilities, architecture and kernel. In front of libseccomp's
//! program boxr puts a short stub that answers ENOSYS for syscall numbers above every number
//! the profile names (as runc does): a syscall newer than the profile then looks
//! unimplemented, and the C library falls back to an older one instead of failing with EPERM.
//!
//! Compiling takes milliseconds; [`program`] is handed a cache by its caller (the store's
//! `cached_artifact`), keyed per policy, so a container start or a build step only loads it.

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::Deserialize;

/// boxr's default profile, in Docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("seccomp-default.json");

/// A profile in Docker's format (`--security-opt seccomp=FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    /// The older form of `archMap`: a flat list.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// The older form: one name.
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub includes: Option<Condition>,
    #[serde(default)]
    pub excludes: Option<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// Where a filter is compiled for: the native architecture (Docker's names: `amd64`, `arm64`,
/// ...) and the kernel release.
#[derive(Debug, Clone)]
pub struct Target {
    pub arch: String,
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine.
    pub fn host() -> Target {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Target {
            arch: crate::platform::architecture().to_owned(),
            kernel: kernel_version(&release).unwrap_or((0, 0)),
        }
    }
}

/// `6.18.44-foo` → (6, 18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The libseccomp architectures a filter covers on `target`: the native one and its
/// sub-architectures.
fn arches(target: &Target) -> Vec<ScmpArch> {
    match target.arch.as_str() {
        "amd64" => vec![ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32],
        "arm64" => vec![ScmpArch::Aarch64, ScmpArch::Arm],
        "s390x" => vec![ScmpArch::S390X, ScmpArch::S390],
        "ppc64le" => vec![ScmpArch::Ppc64Le],
        "riscv64" => vec![ScmpArch::Riscv64],
        _ => vec![ScmpArch::native()],
    }
}

/// Why a seccomp profile could not become a program.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("invalid seccomp profile: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("SCMP_ACT_NOTIFY needs a seccomp agent, which boxr does not have")]
    Notify,
    #[error("unknown seccomp action `{0}`")]
    UnknownAction(String),
    #[error("unknown seccomp comparison `{0}`")]
    UnknownComparison(String),
    #[error("syscall argument index {0} is above 5")]
    ArgIndex(u32),
    #[error("seccomp rule for `{syscall}`: {source}")]
    Rule {
        syscall: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("libseccomp: {0}")]
    Lib(#[from] libseccomp::error::SeccompError),
    #[error("cannot export the seccomp program: {0}")]
    Export(#[source] std::io::Error),
}

fn action(name: &str, errno: Option<u32>, default_errno: u32) -> Result<ScmpAction, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(default_errno) as i32),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(0) as u16),
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(SeccompError::Notify);
        }
        other => return Err(SeccompError::UnknownAction(other.to_owned())),
    })
}

fn compare(arg: &Arg) -> Result<ScmpArgCompare, SeccompError> {
    let op = match arg.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        // Docker: `value` is the mask, `valueTwo` what the masked argument must equal.
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(arg.value),
        other => return Err(SeccompError::UnknownComparison(other.to_owned())),
    };
    let datum = if matches!(op, ScmpCompareOp::MaskedEqual(_)) {
        arg.value_two
    } else {
        arg.value
    };
    if arg.index > 5 {
        return Err(SeccompError::ArgIndex(arg.index));
    }
    Ok(ScmpArgCompare::new(arg.index, op, datum))
}

/// Whether a rule's `includes`/`excludes` let it apply to a container with `caps` on
/// `target`.
fn applies(rule: &Rule, caps: &BTreeSet<String>, target: &Target) -> bool {
    let native = target.arch.as_str();
    // Docker matches arches against the native architecture only.
    if let Some(inc) = &rule.includes {
        if let Some(c) = &inc.caps
            && !c.iter().all(|c| caps.contains(c))
        {
            return false;
        }
        if let Some(a) = &inc.arches
            && !a.iter().any(|a| a == native)
        {
            return false;
        }
        if let Some(k) = &inc.min_kernel
            && let Some(min) = kernel_version(k)
            && target.kernel < min
        {
            return false;
        }
    }
    if let Some(exc) = &rule.excludes {
        if let Some(c) = &exc.caps
            && c.iter().any(|c| caps.contains(c))
        {
            return false;
        }
        if let Some(a) = &exc.arches
            && a.iter().any(|a| a == native)
        {
            return false;
        }
        if let Some(k) = &exc.min_kernel
            && let Some(min) = kernel_version(k)
            && target.kernel >= min
        {
            return false;
        }
    }
    true
}

/// What a compiled program depends on, as a cache key: the profile's bytes, the
/// capabilities, the target, and the versions of libseccomp and of this compiler.
pub fn cache_key(profile_json: &[u8], caps: &[String], target: &Target) -> String {
    use sha2::Digest as _;
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut caps = caps.to_vec();
    caps.sort();
    let mut h = sha2::Sha256::new();
    for part in [
        "boxr-seccomp/v2".as_bytes(),
        profile_json,
        caps.join(",").as_bytes(),
        target.arch.as_bytes(),
        format!("{}.{}", target.kernel.0, target.kernel.1).as_bytes(),
        v.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The compiled program (hex, as a `SecuritySpec` carries it) for a profile in Docker's format
/// and a capability set, on this host. `cache(key, make)` returns the program kept under `key`,
/// or makes it with `make` (and may keep it): the caller owns where programs are kept.
pub fn program(
    profile_json: &[u8],
    caps: &[String],
    cache: impl FnOnce(
        &str,
        &dyn Fn() -> Result<Vec<u8>, SeccompError>,
    ) -> Result<Vec<u8>, SeccompError>,
) -> Result<String, SeccompError> {
    let target = Target::host();
    let key = cache_key(profile_json, caps, &target);
    let make = || compile(&parse(profile_json)?, caps, &target);
    Ok(hex::encode(cache(&key, &make)?))
}

/// Parses a profile (Docker's JSON format).
pub fn parse(json: &[u8]) -> Result<Profile, SeccompError> {
    serde_json::from_slice(json).map_err(SeccompError::Parse)
}

/// Compiles `profile` for a container with the capabilities `caps` (`CAP_…` names) on
/// `target`: the raw BPF program (`struct sock_filter` array) to load.
pub fn compile(
    profile: &Profile,
    caps: &[String],
    target: &Target,
) -> Result<Vec<u8>, SeccompError> {
    let caps: BTreeSet<String> = caps.iter().cloned().collect();
    let default_errno = profile.default_errno_ret.unwrap_or(1);
    let default = action(&profile.default_action, None, default_errno)?;
    let mut ctx = ScmpFilterContext::new(default)?;
    // Syscalls of an architecture the filter does not know are refused outright.
    ctx.set_act_badarch(ScmpAction::KillProcess)?;
    // no_new_privs is boxr's to set (it is an option, off by default, as in Docker).
    ctx.set_ctl_nnp(false)?;
    // A binary tree over syscall numbers instead of a linear list: every syscall of the
    // container runs this program, and Docker's profile names about 350.
    ctx.set_ctl_optimize(2)?;
    let arches = arches(target);
    for a in &arches {
        if *a != ScmpArch::native() {
            ctx.add_arch(*a)?;
        }
    }
    // The highest syscall number the profile names, per architecture (for the ENOSYS stub).
    let mut max: Vec<(ScmpArch, i32)> = arches.iter().map(|a| (*a, -1)).collect();
    for rule in profile.syscalls.iter().flatten() {
        let names: Vec<&String> = rule
            .names
            .iter()
            .flatten()
            .chain(rule.name.iter())
            .collect();
        for (a, m) in max.iter_mut() {
            for n in &names {
                if let Ok(sys) = ScmpSyscall::from_name_by_arch(n, *a) {
                    let nr = i32::from(sys);
                    if nr >= 0 {
                        *m = (*m).max(nr);
                    }
                }
            }
        }
        if !applies(rule, &caps, target) {
            continue;
        }
        let act = action(&rule.action, rule.errno_ret, default_errno)?;
        if act == default {
            continue; // libseccomp refuses rules that repeat the default
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args
            .iter()
            .flatten()
            .map(compare)
            .collect::<Result<_, _>>()?;
        for n in names {
            // A name this libseccomp (or this architecture) does not know is skipped, as runc
            // does: the stub below makes its number ENOSYS if it is newer than the rest.
            let Ok(sys) = ScmpSyscall::from_name(n) else {
                continue;
            };
            let r = if conds.is_empty() {
                ctx.add_rule(act, sys)
            } else {
                ctx.add_rule_conditional(act, sys, &conds)
            };
            r.map_err(|source| SeccompError::Rule {
                syscall: n.clone(),
                source,
            })?;
        }
    }
    // The stub stands in for the default action for syscalls newer than the profile; a
    // profile that allows what it does not name needs none.
    let mut program = if matches!(default, ScmpAction::Allow | ScmpAction::Log) {
        Vec::new()
    } else {
        enosys_stub(&max)
    };
    program.extend(export(&ctx)?);
    Ok(program)
}

/// The program libseccomp built, as raw `struct sock_filter` bytes.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let f = nix::sys::memfd::memfd_create("boxr-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(f);
    ctx.export_bpf(&file)?;
    let mut buf = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut buf))
        .map_err(SeccompError::Export)?;
    Ok(buf)
}

// Classic BPF, as seccomp runs it.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const BPF_JMP_JA: u16 = 0x05;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const ENOSYS: u32 = 38;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&code.to_ne_bytes());
    b[2] = jt;
    b[3] = jf;
    b[4..8].copy_from_slice(&k.to_ne_bytes());
    b
}

/// `AUDIT_ARCH_*` of an architecture.
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X8664 | ScmpArch::X32 => 0xC000_003E,
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::Aarch64 => 0xC000_00B7,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Riscv64 => 0xC000_00F3,
        ScmpArch::Ppc64Le => 0xC000_0015,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::S390 => 0x0000_0016,
        _ => return None,
    })
}

/// The prefix that answers ENOSYS for syscall numbers above `max` of their architecture, and
/// otherwise falls through to the program after it. x32 shares x86_64's AUDIT_ARCH and is told
/// apart by bit 30 of the number.
///
/// Layout: one block per architecture, then `ja +1`, then `ret ERRNO(ENOSYS)`, then (after the
/// stub) libseccomp's program. A block whose architecture does not match falls through to the
/// next block; after the last one the `ja` skips the ENOSYS return.
fn enosys_stub(max: &[(ScmpArch, i32)]) -> Vec<u8> {
    let x32 = max
        .iter()
        .find(|(a, _)| *a == ScmpArch::X32)
        .map(|(_, m)| *m)
        .filter(|m| *m >= 0);
    let mut blocks: Vec<Vec<[u8; 8]>> = Vec::new();
    for (a, m) in max {
        if *a == ScmpArch::X32 || *m < 0 {
            continue;
        }
        let Some(arch) = audit_arch(*a) else {
            continue;
        };
        let x = if *a == ScmpArch::X8664 { x32 } else { None };
        blocks.push(arch_block(arch, *m as u32, x));
    }
    let total: usize = blocks.iter().map(Vec::len).sum();
    let mut out: Vec<[u8; 8]> = Vec::with_capacity(total + 2);
    let mut before = 0usize;
    for b in &blocks {
        let after = total - before - b.len();
        for (i, ins) in b.iter().enumerate() {
            let mut ins = *ins;
            let rest = b.len() - i - 1;
            for j in [2usize, 3] {
                ins[j] = match ins[j] {
                    NEXT_BLOCK => rest as u8,
                    TO_ENOSYS => (rest + after + 1) as u8,
                    TO_PROGRAM => (rest + after + 2) as u8,
                    v => v,
                };
            }
            out.push(ins);
        }
        before += b.len();
    }
    out.push(insn(BPF_JMP_JA, 0, 0, 1));
    out.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS));
    out.concat()
}

// Jump placeholders of [`arch_block`], resolved by [`enosys_stub`].
const NEXT_BLOCK: u8 = 0xFD;
const TO_ENOSYS: u8 = 0xFE;
const TO_PROGRAM: u8 = 0xFF;

/// One architecture's check: `ld arch; jeq ARCH ? on : next block; ld nr; jgt MAX ? ENOSYS :
/// program` (x86_64 with x32: `jset X32_BIT` picks which maximum applies).
fn arch_block(arch: u32, max: u32, x32: Option<i32>) -> Vec<[u8; 8]> {
    let mut b = vec![
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        insn(BPF_JMP_JEQ_K, 0, NEXT_BLOCK, arch),
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ];
    if let Some(x) = x32 {
        b.push(insn(BPF_JMP_JSET_K, 0, 1, X32_SYSCALL_BIT));
        b.push(insn(BPF_JMP_JGT_K, TO_ENOSYS, TO_PROGRAM, x as u32));
    }
    b.push(insn(BPF_JMP_JGT_K, TO_ENOSYS, TO_PROGRAM, max));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Target {
        Target {
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    #[test]
    fn the_default_profile_compiles() {
        let p = parse(DEFAULT_PROFILE.as_bytes()).unwrap();
        let caps: Vec<String> = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bpf = compile(&p, &caps, &host()).unwrap();
        assert_eq!(bpf.len() % 8, 0);
        assert!(bpf.len() > 100 * 8, "{} instructions", bpf.len() / 8);
    }

    #[test]
    fn conditions_follow_docker() {
        let p = parse(DEFAULT_PROFILE.as_bytes()).unwrap();
        let rules = p.syscalls.as_ref().unwrap();
        let find = |name: &str, with_args: bool| {
            rules
                .iter()
                .filter(|r| r.names.iter().flatten().any(|n| n == name))
                .filter(|r| r.args.is_some() == with_args)
                .collect::<Vec<_>>()
        };
        let none: BTreeSet<String> = BTreeSet::new();
        let admin: BTreeSet<String> = ["CAP_SYS_ADMIN".to_string()].into();
        // mount only with CAP_SYS_ADMIN.
        let mount = find("mount", false);
        assert!(mount.iter().any(|r| applies(r, &admin, &host())));
        assert!(!mount.iter().any(|r| applies(r, &none, &host())));
        // clone3 is ENOSYS without CAP_SYS_ADMIN.
        let clone3: Vec<_> = find("clone3", false)
            .into_iter()
            .filter(|r| r.action == "SCMP_ACT_ERRNO")
            .collect();
        assert!(applies(clone3[0], &none, &host()));
        assert!(!applies(clone3[0], &admin, &host()));
        // ptrace needs kernel 4.8.
        let old = Target {
            arch: "amd64".into(),
            kernel: (4, 4),
        };
        let ptrace = find("ptrace", false);
        assert!(ptrace.iter().any(|r| applies(r, &none, &host())));
        assert!(!ptrace.iter().any(|r| applies(r, &none, &old)));
        // arch_prctl on amd64 only.
        let ap = find("arch_prctl", false);
        let arm = Target {
            arch: "arm64".into(),
            kernel: (6, 1),
        };
        assert!(applies(ap[0], &none, &host()));
        assert!(!applies(ap[0], &none, &arm));
    }

    #[test]
    fn x32_numbers_carry_the_x32_bit() {
        let read = i32::from(ScmpSyscall::from_name_by_arch("read", ScmpArch::X32).unwrap());
        assert_eq!(read as u32 & X32_SYSCALL_BIT, X32_SYSCALL_BIT, "{read:#x}");
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(parse(b"{").is_err());
        let p = parse(br#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
        assert!(compile(&p, &[], &host()).is_err());
        let p = parse(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        assert!(compile(&p, &[], &host()).is_err());
    }

    #[test]
    fn the_stub_jumps_stay_in_bounds() {
        let stub = enosys_stub(&[
            (ScmpArch::X8664, 450),
            (ScmpArch::X86, 460),
            (ScmpArch::X32, 0x4000_0000 + 547),
        ]);
        let n = stub.len() / 8;
        for (i, ins) in stub.chunks(8).enumerate() {
            let code = u16::from_ne_bytes([ins[0], ins[1]]);
            if code & 0x07 == 0x05 && code != BPF_JMP_JA {
                // A jump: both targets within the stub or just past it (the program).
                assert!(i + 1 + ins[2] as usize <= n, "jt of {i} out of bounds");
                assert!(i + 1 + ins[3] as usize <= n, "jf of {i} out of bounds");
            }
        }
        // The last instruction returns ENOSYS.
        let last = &stub[stub.len() - 8..];
        assert_eq!(
            u32::from_ne_bytes([last[4], last[5], last[6], last[7]]),
            SECCOMP_RET_ERRNO | ENOSYS
        );
    }
}
