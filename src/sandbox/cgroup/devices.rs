//! The devices allowlist: its rules, Docker's default list, and the cgroup v2 form of it (an
//! eBPF program; v1 takes the rules as text, see `v1`).

use serde::{Deserialize, Serialize};

/// A device rule of the devices allowlist (`c 1:3 rwm`; `None` is `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// `c`, `b` or `a`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

impl DeviceRule {
    pub(super) fn v1(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_owned(), |v| v.to_string());
        if self.kind == 'a' {
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// The devices a container may use by default (Docker's list): create any device node, but
/// read and write only the standard ones.
pub fn default_devices() -> Vec<DeviceRule> {
    let c = |major: Option<u32>, minor: Option<u32>, access: &str| DeviceRule {
        kind: 'c',
        major,
        minor,
        access: access.into(),
    };
    vec![
        c(None, None, "m"),
        DeviceRule {
            kind: 'b',
            major: None,
            minor: None,
            access: "m".into(),
        },
        c(Some(1), Some(3), "rwm"), // null
        c(Some(1), Some(5), "rwm"), // zero
        c(Some(1), Some(7), "rwm"), // full
        c(Some(1), Some(8), "rwm"), // random
        c(Some(1), Some(9), "rwm"), // urandom
        c(Some(5), Some(0), "rwm"), // tty
        c(Some(5), Some(1), "rwm"), // console
        c(Some(5), Some(2), "rwm"), // ptmx
        c(Some(136), None, "rwm"),  // pts
    ]
}

// eBPF opcodes of the device program (32-bit ALU, 64-bit jumps).
const LDX_W: u8 = 0x61;
const AND_K: u8 = 0x54;
const RSH_K: u8 = 0x74;
const MOV_X: u8 = 0xbc;
const MOV_K: u8 = 0xb4;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn ebpf(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    // struct bpf_insn: dst_reg in the low nibble, src_reg in the high one.
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The devices allowlist as a `BPF_PROG_TYPE_CGROUP_DEVICE` program, as runc builds it: the
/// context is `{access_type: (access << 16) | type, major, minor}`; each rule is a block that
/// returns 1 (allow) when the device matches it and the access asked for is within the rule's,
/// else jumps to the next block; after the last, 0 (deny).
pub fn device_program(rules: &[DeviceRule]) -> Vec<[u8; 8]> {
    let mut p = vec![
        ebpf(LDX_W, 2, 1, 0, 0), // r2 = type
        ebpf(AND_K, 2, 0, 0, 0xffff),
        ebpf(LDX_W, 3, 1, 0, 0), // r3 = access
        ebpf(RSH_K, 3, 0, 0, 16),
        ebpf(LDX_W, 4, 1, 4, 0), // r4 = major
        ebpf(LDX_W, 5, 1, 8, 0), // r5 = minor
    ];
    for r in rules {
        // Each check jumps to the end of the block when it fails; NEXT marks that.
        const NEXT: i16 = i16::MIN;
        let mut block = Vec::new();
        match r.kind {
            'c' => block.push(ebpf(JNE_K, 2, 0, NEXT, 2)),
            'b' => block.push(ebpf(JNE_K, 2, 0, NEXT, 1)),
            _ => {}
        }
        let mask: i32 = r
            .access
            .chars()
            .map(|c| match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            })
            .sum();
        if r.kind != 'a' && mask != 7 {
            block.push(ebpf(MOV_X, 1, 3, 0, 0));
            block.push(ebpf(AND_K, 1, 0, 0, mask));
            block.push(ebpf(JNE_X, 1, 3, NEXT, 0));
        }
        if let Some(m) = r.major {
            block.push(ebpf(JNE_K, 4, 0, NEXT, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ebpf(JNE_K, 5, 0, NEXT, m as i32));
        }
        block.push(ebpf(MOV_K, 0, 0, 0, 1));
        block.push(ebpf(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if i16::from_ne_bytes([ins[2], ins[3]]) == NEXT {
                let off = (len - i - 1) as i16;
                ins[2..4].copy_from_slice(&off.to_ne_bytes());
            }
        }
        p.extend(block);
    }
    p.push(ebpf(MOV_K, 0, 0, 0, 0));
    p.push(ebpf(EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_program_jumps_stay_in_bounds() {
        let p = device_program(&default_devices());
        let n = p.len() as i64;
        for (i, ins) in p.iter().enumerate() {
            if ins[0] == JNE_K || ins[0] == JNE_X {
                let off = i16::from_ne_bytes([ins[2], ins[3]]) as i64;
                let target = i as i64 + 1 + off;
                assert!(off > 0 && target < n, "jump at {i} to {target} of {n}");
                // Every jump lands right after an exit: the start of the next block.
                assert_eq!(p[target as usize - 1][0], EXIT, "jump at {i}");
            }
        }
        assert_eq!(p.last().unwrap()[0], EXIT);
    }
}
