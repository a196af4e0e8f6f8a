//! Links the cdylib as the library udev asks for: soname `libkmod.so.2`,
//! version node `LIBKMOD_5` (libkmod.map), nothing left undefined.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=libkmod.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkmod.so.2");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/libkmod.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-undefined");
}
