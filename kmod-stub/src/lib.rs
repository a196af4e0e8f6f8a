//! A stand-in `libkmod.so.2` for udev on a kernel built without modules.
//!
//! systemd-udevd and udevadm link libkmod for one builtin, `kmod load`,
//! which the rules run for every device with a `MODALIAS`. Debian's
//! libkmod brings libcrypto (module signatures), liblzma and libzstd
//! (compressed modules): 5.8 MB, the bulk of the udev image, for a kernel
//! that has no modules to load. This library exports the thirteen libkmod
//! functions udev imports (`objdump -T /bin/udevadm`), under the same
//! soname and symbol version (`LIBKMOD_5`, see `build.rs` and
//! `libkmod.map`), and behaves as libkmod does on a machine with an empty
//! `/lib/modules`: a context that loads and validates fine, and lookups
//! that find nothing. udev then logs at debug level that it found no
//! module for the alias and goes on, as on any modules-free kernel.
//!
//! Nothing here allocates: the context is one static object (udev never
//! looks inside it), lists are always empty (NULL, as in libkmod) and no
//! module object is ever handed out, so the functions taking one only
//! ever see NULL and answer as libkmod does for NULL.
//!
//! Built with `panic = "abort"` (image-build builds it in release) the
//! library is `no_std` and needs nothing from libc; with unwinding (tests,
//! debug builds) std provides the panic runtime.

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
#![cfg_attr(panic = "abort", no_std)]

use core::ffi::{c_char, c_int, c_uint, c_void};

/// `ENOENT`: what libkmod returns for a missing module or context.
const ENOENT: c_int = 2;
/// `ENOSYS`: libkmod's answer to a misused output argument.
const ENOSYS: c_int = 38;
/// `KMOD_RESOURCES_OK` of `enum kmod_resources`.
pub const KMOD_RESOURCES_OK: c_int = 0;

/// The library context (`struct kmod_ctx`), opaque to callers.
#[repr(C)]
#[derive(Debug)]
pub struct KmodCtx {
    _private: u8,
}

/// A list node (`struct kmod_list`); never created here.
#[repr(C)]
#[derive(Debug)]
pub struct KmodList {
    _private: u8,
}

/// A module (`struct kmod_module`); never created here.
#[repr(C)]
#[derive(Debug)]
pub struct KmodModule {
    _private: u8,
}

/// libkmod's logging callback type; the stub has nothing to log.
pub type LogFn = Option<
    unsafe extern "C" fn(
        data: *mut c_void,
        priority: c_int,
        file: *const c_char,
        line: c_int,
        function: *const c_char,
        format: *const c_char,
        args: *mut c_void,
    ),
>;

/// The one context every `kmod_new` returns: it holds no state, so one
/// object serves every caller and reference counting has nothing to free.
static CONTEXT: KmodCtx = KmodCtx { _private: 0 };

/// Creates a context. The module directory and configuration paths are
/// ignored: there are no modules to index.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_new(
    _dirname: *const c_char,
    _config_paths: *const *const c_char,
) -> *mut KmodCtx {
    // udev only passes the pointer back to this library, which never
    // writes through it.
    (&raw const CONTEXT).cast_mut()
}

/// Drops a reference; like libkmod, returns NULL once the context is gone
/// (which, holding nothing, it always is).
#[unsafe(no_mangle)]
pub extern "C" fn kmod_unref(_ctx: *mut KmodCtx) -> *mut KmodCtx {
    core::ptr::null_mut()
}

/// Sets the logging callback: nothing here logs, so it is not kept.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_set_log_fn(_ctx: *mut KmodCtx, _log_fn: LogFn, _data: *const c_void) {}

/// Loads the module indexes: there are none, which is not an error (as
/// libkmod with an empty module directory).
#[unsafe(no_mangle)]
pub extern "C" fn kmod_load_resources(ctx: *mut KmodCtx) -> c_int {
    if ctx.is_null() { -ENOENT } else { 0 }
}

/// Whether the loaded indexes are still current: always, so udev never
/// reloads them.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_validate_resources(_ctx: *mut KmodCtx) -> c_int {
    KMOD_RESOURCES_OK
}

/// Looks up the modules for an alias: finds none, leaving `*list` NULL
/// (the empty list) and returning 0, as libkmod does for an unknown alias.
///
/// # Safety
/// `list` is NULL or points to a readable `*mut KmodList`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kmod_module_new_from_lookup(
    ctx: *mut KmodCtx,
    alias: *const c_char,
    list: *mut *mut KmodList,
) -> c_int {
    if ctx.is_null() || alias.is_null() {
        return -ENOENT;
    }
    // SAFETY: the caller passes NULL or a valid pointer to a list head.
    if list.is_null() || !unsafe { *list }.is_null() {
        // libkmod refuses an output list that is missing or not empty.
        return -ENOSYS;
    }
    0
}

/// The node after `current`: lists here are empty, so there is none.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_list_next(
    _list: *const KmodList,
    _current: *const KmodList,
) -> *mut KmodList {
    core::ptr::null_mut()
}

/// Frees a module list: the only list is the empty one.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_unref_list(_list: *mut KmodList) -> c_int {
    0
}

/// The module a list node holds: no node, no module.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_get_module(_entry: *const KmodList) -> *mut KmodModule {
    core::ptr::null_mut()
}

/// A module's name: no module is ever handed out, so NULL.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_get_name(_module: *const KmodModule) -> *const c_char {
    core::ptr::null()
}

/// A module's state in the kernel: libkmod's answer for no module.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_get_initstate(_module: *const KmodModule) -> c_int {
    -ENOENT
}

/// Loads a module with its dependencies: there is none to load; libkmod
/// answers a NULL module with `-ENOENT`.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_probe_insert_module(
    _module: *mut KmodModule,
    _flags: c_uint,
    _extra_options: *const c_char,
    _run_install: *const c_void,
    _data: *const c_void,
    _print_action: *const c_void,
) -> c_int {
    -ENOENT
}

/// Drops a module reference: returns NULL, as libkmod does once freed.
#[unsafe(no_mangle)]
pub extern "C" fn kmod_module_unref(_module: *mut KmodModule) -> *mut KmodModule {
    core::ptr::null_mut()
}

// Binds each export to libkmod's version node, as udevadm's imports name
// them (`kmod_new@LIBKMOD_5`); the node itself is defined in libkmod.map.
core::arch::global_asm!(
    ".symver kmod_new, kmod_new@@LIBKMOD_5",
    ".symver kmod_unref, kmod_unref@@LIBKMOD_5",
    ".symver kmod_set_log_fn, kmod_set_log_fn@@LIBKMOD_5",
    ".symver kmod_load_resources, kmod_load_resources@@LIBKMOD_5",
    ".symver kmod_validate_resources, kmod_validate_resources@@LIBKMOD_5",
    ".symver kmod_module_new_from_lookup, kmod_module_new_from_lookup@@LIBKMOD_5",
    ".symver kmod_list_next, kmod_list_next@@LIBKMOD_5",
    ".symver kmod_module_unref_list, kmod_module_unref_list@@LIBKMOD_5",
    ".symver kmod_module_get_module, kmod_module_get_module@@LIBKMOD_5",
    ".symver kmod_module_get_name, kmod_module_get_name@@LIBKMOD_5",
    ".symver kmod_module_get_initstate, kmod_module_get_initstate@@LIBKMOD_5",
    ".symver kmod_module_probe_insert_module, kmod_module_probe_insert_module@@LIBKMOD_5",
    ".symver kmod_module_unref, kmod_module_unref@@LIBKMOD_5",
);

/// Without unwinding there is nothing to do on a panic but stop; nothing
/// above can panic.
#[cfg(all(panic = "abort", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_loads_and_validates_its_empty_indexes() {
        let ctx = kmod_new(core::ptr::null(), core::ptr::null());
        assert!(!ctx.is_null(), "udev treats NULL as out of memory");
        kmod_set_log_fn(ctx, None, core::ptr::null());
        assert_eq!(kmod_load_resources(ctx), 0);
        assert_eq!(kmod_validate_resources(ctx), KMOD_RESOURCES_OK);
        assert!(kmod_unref(ctx).is_null());
        assert_eq!(kmod_load_resources(core::ptr::null_mut()), -ENOENT);
    }

    #[test]
    fn every_alias_lookup_finds_no_module() {
        let ctx = kmod_new(core::ptr::null(), core::ptr::null());
        let mut list: *mut KmodList = core::ptr::null_mut();
        for alias in [c"pci:v00008086d00007010sv*", c"virtio:d00000001v*", c"ext4"] {
            // SAFETY: `list` is a valid, empty list head.
            let found = unsafe { kmod_module_new_from_lookup(ctx, alias.as_ptr(), &mut list) };
            assert_eq!(found, 0, "{alias:?}");
            assert!(list.is_null(), "the empty list for {alias:?}");
        }
        assert!(kmod_list_next(list, list).is_null());
        assert_eq!(kmod_module_unref_list(list), 0);
    }

    #[test]
    fn misused_lookups_get_libkmods_errors() {
        let ctx = kmod_new(core::ptr::null(), core::ptr::null());
        let mut list: *mut KmodList = core::ptr::null_mut();
        // SAFETY: each call passes NULL or a valid list head.
        unsafe {
            assert_eq!(
                kmod_module_new_from_lookup(core::ptr::null_mut(), c"x".as_ptr(), &mut list),
                -ENOENT
            );
            assert_eq!(
                kmod_module_new_from_lookup(ctx, core::ptr::null(), &mut list),
                -ENOENT
            );
            assert_eq!(
                kmod_module_new_from_lookup(ctx, c"x".as_ptr(), core::ptr::null_mut()),
                -ENOSYS
            );
            let mut not_empty = (&raw const CONTEXT).cast::<KmodList>().cast_mut();
            assert_eq!(
                kmod_module_new_from_lookup(ctx, c"x".as_ptr(), &mut not_empty),
                -ENOSYS
            );
        }
    }

    #[test]
    fn the_absent_module_answers_as_libkmod_does_for_null() {
        let module = kmod_module_get_module(core::ptr::null());
        assert!(module.is_null());
        assert!(kmod_module_get_name(module).is_null());
        assert_eq!(kmod_module_get_initstate(module), -ENOENT);
        let inserted = kmod_module_probe_insert_module(
            module,
            0,
            core::ptr::null(),
            core::ptr::null(),
            core::ptr::null(),
            core::ptr::null(),
        );
        assert_eq!(inserted, -ENOENT);
        assert!(kmod_module_unref(module).is_null());
    }
}
