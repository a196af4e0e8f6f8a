//! Links the cdylib as the library rsyslog asks for: soname
//! `libsystemd.so.0`, version node `LIBSYSTEMD_209` (libsystemd.map),
//! nothing left undefined.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=libsystemd.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsystemd.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/libsystemd.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-undefined");
}
