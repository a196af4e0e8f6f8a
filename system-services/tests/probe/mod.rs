//! Probes for the seccomp filter: tiny static x86-64 programs, written
//! out as bytes here, that make one namespace system call and exit with
//! what it returned. busybox has `unshare` (the `unshare` system call) but
//! nothing that calls `clone` or `clone3` with namespace flags, and a
//! probe built from Rust would be a few hundred kB to carry into a guest.
//!
//! Exit status: [`CREATED`] when the call made the namespace (parent and
//! child both exit with it), otherwise the errno it failed with.
//! Shared by the host test (system-services/tests/seccomp_containerd.rs)
//! and the QEMU test (qemu-tests/tests/privileges.rs).

#![allow(dead_code, reason = "each test crate uses part of it")]

/// The exit status of a probe whose call succeeded.
pub const CREATED: i32 = 100;
/// `CLONE_NEWUSER` and `CLONE_NEWNET` (linux/sched.h).
pub const CLONE_NEWUSER: u32 = 0x1000_0000;
pub const CLONE_NEWNET: u32 = 0x4000_0000;
const SIGCHLD: u32 = 17;
/// Where the program is loaded (the usual non-PIE base).
const BASE: u64 = 0x40_0000;
/// ELF header and the one program header: where the code starts.
const CODE_OFFSET: u64 = 64 + 56;

/// `clone(flags | SIGCHLD, 0, 0, 0, 0)`, then the exit.
pub fn clone(flags: u32) -> Vec<u8> {
    let mut code = vec![0xb8, 56, 0, 0, 0]; // mov eax, SYS_clone
    code.push(0xbf); // mov edi, flags
    code.extend((flags | SIGCHLD).to_le_bytes());
    code.extend([0x31, 0xf6]); // xor esi, esi
    code.extend([0x31, 0xd2]); // xor edx, edx
    code.extend([0x45, 0x31, 0xd2]); // xor r10d, r10d
    code.extend([0x45, 0x31, 0xc0]); // xor r8d, r8d
    code.extend([0x0f, 0x05]); // syscall
    code.extend(EXIT_WITH_RESULT);
    elf(&code)
}

/// `clone3(&args, sizeof args)` with `args.flags = flags` and SIGCHLD as
/// the exit signal, then the exit. The 88-byte `struct clone_args`
/// follows the code.
pub fn clone3(flags: u64) -> Vec<u8> {
    let mut code = vec![0xb8, 0xb3, 0x01, 0, 0]; // mov eax, SYS_clone3 (435)
    // lea rdi, [rip + disp]: the arguments after the rest of the code.
    let rest = 5 + 2 + EXIT_WITH_RESULT.len();
    code.extend([0x48, 0x8d, 0x3d]);
    code.extend(u32::try_from(rest).unwrap_or(0).to_le_bytes());
    code.extend([0xbe, 88, 0, 0, 0]); // mov esi, 88
    code.extend([0x0f, 0x05]); // syscall
    code.extend(EXIT_WITH_RESULT);
    let mut args = [0u8; 88];
    args[..8].copy_from_slice(&flags.to_le_bytes());
    args[32..40].copy_from_slice(&u64::from(SIGCHLD).to_le_bytes());
    code.extend(args);
    elf(&code)
}

/// `rax` < 0: `exit_group(-rax)`; otherwise `exit_group(CREATED)`.
const EXIT_WITH_RESULT: [u8; 30] = [
    0x48, 0x89, 0xc7, // mov rdi, rax
    0x48, 0xf7, 0xdf, // neg rdi
    0x48, 0x85, 0xc0, // test rax, rax
    0x79, 0x07, // jns over the next two
    0xb8, 0xe7, 0, 0, 0, // mov eax, SYS_exit_group
    0x0f, 0x05, // syscall
    0xbf, 100, 0, 0, 0, // mov edi, CREATED
    0xb8, 0xe7, 0, 0, 0, // mov eax, SYS_exit_group
    0x0f, 0x05, // syscall
];

/// A static ELF64 executable: one loadable segment, the headers and
/// `code`, entered at the code.
fn elf(code: &[u8]) -> Vec<u8> {
    let size = CODE_OFFSET + code.len() as u64;
    let mut out = Vec::new();
    out.extend(b"\x7fELF");
    out.extend([2, 1, 1, 0]); // 64-bit, little endian, version 1, System V
    out.extend([0u8; 8]);
    out.extend(2u16.to_le_bytes()); // ET_EXEC
    out.extend(62u16.to_le_bytes()); // EM_X86_64
    out.extend(1u32.to_le_bytes());
    out.extend((BASE + CODE_OFFSET).to_le_bytes()); // entry
    out.extend(64u64.to_le_bytes()); // program headers right after this one
    out.extend(0u64.to_le_bytes()); // no section headers
    out.extend(0u32.to_le_bytes());
    out.extend(64u16.to_le_bytes()); // ELF header size
    out.extend(56u16.to_le_bytes()); // program header size
    out.extend(1u16.to_le_bytes());
    out.extend([0u8; 6]); // no section headers, no names
    // PT_LOAD, read + execute, the whole file at BASE.
    out.extend(1u32.to_le_bytes());
    out.extend(5u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend(BASE.to_le_bytes());
    out.extend(BASE.to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(0x1000u64.to_le_bytes());
    out.extend(code);
    out
}
