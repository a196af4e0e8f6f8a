//! What an ELF file needs at run time: its interpreter and its DT_NEEDED
//! libraries. That is how an image gets exactly the libraries it uses.

use std::path::Path;

use anyhow::Context;

/// The dynamic-linking needs of one ELF file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`), if any.
    pub interpreter: Option<String>,
    /// Library sonames, in order.
    pub libraries: Vec<String>,
}

/// `Some(needs)` for an ELF file, `None` for anything else.
pub fn needs(path: &Path) -> anyhow::Result<Option<Needs>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(&bytes)
        .with_context(|| format!("parsing ELF {}", path.display()))?;
    Ok(Some(Needs {
        interpreter: elf.interpreter.map(str::to_string),
        libraries: elf.libraries.iter().map(|l| (*l).to_string()).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_needs_libc_and_the_loader() {
        let needs = needs(Path::new("/bin/ls")).unwrap().unwrap();
        assert_eq!(
            needs.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(
            needs.libraries.iter().any(|l| l == "libc.so.6"),
            "{needs:?}"
        );
    }

    #[test]
    fn a_static_program_needs_nothing() {
        let needs = needs(Path::new("/bin/busybox")).unwrap().unwrap();
        assert_eq!(needs, Needs::default());
    }

    #[test]
    fn a_script_is_not_elf() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(needs(&script).unwrap(), None);
    }
}
