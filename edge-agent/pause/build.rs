//! Links kedge-pause statically, so that it runs in a container whose rootfs holds
//! nothing but itself, with a plain `cargo build` (no RUSTFLAGS, no config file).
//!
//! rustc links glibc statically only with `-C target-feature=+crt-static`, which cargo
//! cannot set for one package, and setting it for the workspace would break proc-macros.
//! So, for linux-gnu targets, this script:
//! - passes `-static-pie` to the linker (a static, position-independent executable, as
//!   crt-static gives; plain `-static` on 32-bit ARM, where glibc has no static-pie);
//! - puts first on the linker's search path a directory of one-line linker scripts named
//!   like the shared libraries rustc asks for (`-lgcc_s -lutil -lrt -lpthread -lm -ldl
//!   -lc`), each pointing at the static archive instead (`libgcc_s.so` → `libgcc_eh.a`).
//!
//! Both are link arguments of the binary only (`rustc-link-arg-bins`), so the crate's
//! tests and build scripts link as usual. It works the same for cross builds
//! (aarch64/armv7 with `-Zbuild-std`, bfd or lld), and it is harmless when crt-static is
//! on anyway (rustc then asks for the archives itself). musl targets are static already.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shims = out.join("static-libs");
    std::fs::create_dir_all(&shims).expect("create the linker-script directory in OUT_DIR");
    let scripts: &[(&str, &str)] = &[
        ("gcc_s", "INPUT(-l:libgcc_eh.a)"),
        ("util", "INPUT(-l:libutil.a)"),
        ("rt", "INPUT(-l:librt.a)"),
        ("pthread", "INPUT(-l:libpthread.a)"),
        ("m", "INPUT(-l:libm.a)"),
        ("dl", "INPUT(-l:libdl.a)"),
        // libc and libgcc need each other: one group, searched until nothing changes
        ("c", "GROUP(-l:libc.a -l:libgcc_eh.a -l:libgcc.a)"),
    ];
    for (name, script) in scripts {
        let path = shims.join(format!("lib{name}.so"));
        std::fs::write(
            &path,
            format!("/* kedge-pause: link {name} statically */\n{script}\n"),
        )
        .expect("write a linker script in OUT_DIR");
    }
    println!("cargo:rustc-link-arg-bins=-L{}", shims.display());
    // glibc ships rcrt1.o (static-pie) for x86_64 and aarch64, not for armhf
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let flag = if arch == "arm" {
        "-static"
    } else {
        "-static-pie"
    };
    println!("cargo:rustc-link-arg-bins={flag}");
}
