//! Link settings for this package's binaries.
//!
//! On Linux with glibc, the binaries are linked with packed relative
//! relocations (`-z pack-relative-relocs`, DT_RELR): a position-independent
//! executable otherwise carries one 24-byte RELA entry per pointer the loader
//! fixes up (about 50,000 here, over 1 MB), which the loader reads at every
//! start and which then stays resident for the life of the process; packed,
//! the same fix-ups take a few kilobytes. ASLR is unchanged. Such a binary
//! needs glibc 2.36 or later at run time (Debian 12, Ubuntu 24.04, RHEL 10)
//! and GNU ld 2.38 / lld 15 to link; set `PAYWIRE_UNPACKED_RELOCS=1` when
//! building for an older glibc (e.g. Ubuntu 22.04's 2.35).

fn main() {
    println!("cargo:rerun-if-env-changed=PAYWIRE_UNPACKED_RELOCS");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let opted_out = std::env::var_os("PAYWIRE_UNPACKED_RELOCS").is_some_and(|v| v != "0");
    if linux_gnu && !opted_out {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
