//! Link flags for the `phased` binary: relative relocations packed (DT_RELR), so the
//! loader reads a few KiB instead of ~900 KiB of relocations at every start, and the
//! binary stays position-independent. Every command (and every `watch` redeploy)
//! pays its start-up (see the README's performance section).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
