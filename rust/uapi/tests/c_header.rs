//! Checks `include/dmapingpong.h` against the Rust definitions: a C program
//! compiled with the header prints every size, field offset, constant and
//! ioctl number, and each must equal its Rust counterpart. Also checks the
//! ioctl numbers against rustix's `_IOR`/`_IOW`/`_IOWR` equivalents.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use dmapingpong_uapi::*;
use rustix::ioctl::opcode;

/// `(name, value)` of every item the C program prints, from Rust.
fn rust_values() -> Vec<(&'static str, u64)> {
    macro_rules! layout {
        ($v:ident, $t:ty, $c:literal, [$($f:ident),*]) => {
            $v.push((concat!("sizeof ", $c), size_of::<$t>() as u64));
            $( $v.push((concat!("offsetof ", $c, ".", stringify!($f)), offset_of!($t, $f) as u64)); )*
        };
    }
    let mut v = Vec::new();
    layout!(
        v,
        DppInfo,
        "dpp_info",
        [
            version,
            page_size,
            pool_size,
            pool_used,
            buffers,
            fences_pending,
            reserved
        ]
    );
    layout!(v, DppAlloc, "dpp_alloc", [size, flags, fd, reserved]);
    layout!(
        v,
        DppFenceCreate,
        "dpp_fence_create",
        [
            dmabuf_fd,
            usage,
            flags,
            fence_fd,
            context,
            seqno,
            deadline_ms,
            pad,
            reserved
        ]
    );
    layout!(
        v,
        DppFenceSignal,
        "dpp_fence_signal",
        [fence_fd, error, reserved]
    );
    layout!(
        v,
        DppFenceWait,
        "dpp_fence_wait",
        [fence_fd, flags, timeout_ns, status, pad, reserved]
    );
    layout!(
        v,
        DppJob,
        "dpp_job",
        [
            op,
            flags,
            dst_fd,
            src_fd,
            dst_offset,
            src_offset,
            size,
            pattern,
            in_fence_fds,
            out_fence_fd,
            engine,
            context,
            seqno,
            reserved
        ]
    );
    v.extend([
        ("DPP_UAPI_VERSION", u64::from(DPP_UAPI_VERSION)),
        ("DPP_IOC_MAGIC", u64::from(DPP_IOC_MAGIC)),
        ("DPP_FD_NO_CLOEXEC", u64::from(DPP_FD_NO_CLOEXEC)),
        ("DPP_USAGE_NONE", u64::from(DPP_USAGE_NONE)),
        ("DPP_USAGE_WRITE", u64::from(DPP_USAGE_WRITE)),
        ("DPP_USAGE_READ", u64::from(DPP_USAGE_READ)),
        ("DPP_MAX_ERRNO", DPP_MAX_ERRNO as u64),
        (
            "DPP_FENCE_DEFAULT_DEADLINE_MS",
            u64::from(DPP_FENCE_DEFAULT_DEADLINE_MS),
        ),
        ("DPP_FENCE_MAX_PENDING", u64::from(DPP_FENCE_MAX_PENDING)),
        ("DPP_IOCTL_GET_INFO", u64::from(DPP_IOCTL_GET_INFO)),
        ("DPP_IOCTL_ALLOC", u64::from(DPP_IOCTL_ALLOC)),
        ("DPP_IOCTL_CREATE_FENCE", u64::from(DPP_IOCTL_CREATE_FENCE)),
        ("DPP_IOCTL_SIGNAL_FENCE", u64::from(DPP_IOCTL_SIGNAL_FENCE)),
        ("DPP_IOCTL_WAIT_FENCE", u64::from(DPP_IOCTL_WAIT_FENCE)),
        ("DPP_JOB_FILL", u64::from(DPP_JOB_FILL)),
        ("DPP_JOB_COPY", u64::from(DPP_JOB_COPY)),
        (
            "DPP_JOB_NO_IMPLICIT_SYNC",
            u64::from(DPP_JOB_NO_IMPLICIT_SYNC),
        ),
        ("DPP_JOB_MAX_IN_FENCES", DPP_JOB_MAX_IN_FENCES as u64),
        ("DPP_ENGINE_DMA", u64::from(DPP_ENGINE_DMA)),
        ("DPP_ENGINE_CPU", u64::from(DPP_ENGINE_CPU)),
        ("DPP_IOCTL_SUBMIT_JOB", u64::from(DPP_IOCTL_SUBMIT_JOB)),
    ]);
    v
}

/// The C program: one `printf("<name> %llu\n", ...)` per item.
fn c_program(items: &[(&'static str, u64)]) -> String {
    let mut src = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"dmapingpong.h\"\nint main(void)\n{\n",
    );
    for (name, _) in items {
        let expr = if let Some(ty) = name.strip_prefix("sizeof ") {
            format!("sizeof(struct {ty})")
        } else if let Some(field) = name.strip_prefix("offsetof ") {
            let (ty, f) = field.split_once('.').expect("struct.field");
            format!("offsetof(struct {ty}, {f})")
        } else {
            name.to_string()
        };
        src += &format!("\tprintf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({expr}));\n");
    }
    src + "\treturn 0;\n}\n"
}

/// `$CC`, else the first of `cc` and `clang` that runs.
fn c_compiler() -> String {
    if let Ok(cc) = std::env::var("CC") {
        return cc;
    }
    ["cc", "clang"]
        .into_iter()
        .find(|cc| {
            Command::new(cc)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no C compiler: set CC or install cc or clang")
        .to_string()
}

/// A scratch directory of this test run, removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// The paths come from the environment at run time, not from `env!`: the
// test binary must not contain build paths (the Yocto recipe ships the test
// binaries in its ptest package, and OE's "buildpaths" QA check rejects
// them). `cargo test` sets CARGO_MANIFEST_DIR for the tests it runs; the
// ptest skips this test (there is no C compiler on the target).
#[test]
fn c_header_matches_rust() {
    let items = rust_values();
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("CARGO_MANIFEST_DIR is not set: run this test with cargo test");
    let dir = ScratchDir(std::env::temp_dir().join(format!("dpp-c-header-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let src = dir.0.join("layout.c");
    let exe = dir.0.join("layout");
    std::fs::write(&src, c_program(&items)).unwrap();
    let include = Path::new(&manifest_dir).join("include");
    let out = Command::new(c_compiler())
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "C compile failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("run the C program");
    assert!(out.status.success());
    let c: BTreeMap<String, u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(c.len(), items.len(), "duplicate names in the C output");
    let mismatches: Vec<String> = items
        .iter()
        .filter(|(name, value)| c.get(*name) != Some(value))
        .map(|(name, value)| match c.get(*name) {
            Some(cv) => format!("{name}: rust {value:#x}, C {cv:#x}"),
            None => format!("{name}: rust {value:#x}, missing in C"),
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "header and abi.rs differ:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn ioctl_numbers_match_rustix() {
    let m = DPP_IOC_MAGIC;
    assert_eq!(
        DPP_IOCTL_GET_INFO as u64,
        opcode::read::<DppInfo>(m, 0) as u64
    );
    assert_eq!(
        DPP_IOCTL_ALLOC as u64,
        opcode::read_write::<DppAlloc>(m, 1) as u64
    );
    assert_eq!(
        DPP_IOCTL_CREATE_FENCE as u64,
        opcode::read_write::<DppFenceCreate>(m, 2) as u64
    );
    assert_eq!(
        DPP_IOCTL_SIGNAL_FENCE as u64,
        opcode::write::<DppFenceSignal>(m, 3) as u64
    );
    assert_eq!(
        DPP_IOCTL_WAIT_FENCE as u64,
        opcode::read_write::<DppFenceWait>(m, 4) as u64
    );
    assert_eq!(
        DPP_IOCTL_SUBMIT_JOB as u64,
        opcode::read_write::<DppJob>(m, 5) as u64
    );
}

#[test]
fn structs_have_no_implicit_padding() {
    // Every struct is a multiple of 8 bytes and its fields tile it.
    assert_eq!(size_of::<DppInfo>(), 64);
    assert_eq!(size_of::<DppAlloc>(), 32);
    assert_eq!(size_of::<DppFenceCreate>(), 48);
    assert_eq!(size_of::<DppFenceSignal>(), 24);
    assert_eq!(size_of::<DppFenceWait>(), 40);
    assert_eq!(size_of::<DppJob>(), 104);
}
