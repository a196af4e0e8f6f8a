//! A file tree being assembled for the image: files taken from unpacked
//! Debian packages (symlink chains kept, ELF libraries followed), files
//! from the repository, directories.

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use image_build::elf;

/// Where the dynamic loader looks for libraries, relative to a root.
const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// The unpacked packages files are taken from, searched in order.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    roots: Vec<PathBuf>,
}

impl Pool {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self { roots }
    }

    /// The first root holding `path` (a file or a symlink).
    fn find(&self, path: &Path) -> Option<PathBuf> {
        self.roots
            .iter()
            .map(|root| root.join(path))
            .find(|p| p.symlink_metadata().is_ok())
    }

    fn find_library(&self, soname: &str) -> Option<PathBuf> {
        LIBRARY_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(soname))
            .find(|p| self.find(p).is_some())
    }
}

/// A directory that becomes a root file system.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    copied: BTreeSet<PathBuf>,
}

/// `path` without its leading `/`.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl Tree {
    /// Starts an empty tree at `root` (anything there is removed).
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        if root.exists() {
            std::fs::remove_dir_all(root)
                .with_context(|| format!("clearing {}", root.display()))?;
        }
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            copied: BTreeSet::new(),
        })
    }

    /// A tree assembled before, to look at.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            root.is_dir(),
            "{} does not exist: build the rootfs step first",
            root.display()
        );
        Ok(Self {
            root: root.to_path_buf(),
            copied: BTreeSet::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dirs(&self, paths: &[&str]) -> anyhow::Result<()> {
        for path in paths {
            std::fs::create_dir_all(self.root.join(relative(Path::new(path))))?;
        }
        Ok(())
    }

    pub fn symlink(&self, target: &str, path: &str) -> anyhow::Result<()> {
        let link = self.root.join(relative(Path::new(path)));
        std::fs::create_dir_all(link.parent().unwrap_or(&self.root))?;
        if link.symlink_metadata().is_err() {
            symlink(target, &link).with_context(|| format!("linking {}", link.display()))?;
        }
        Ok(())
    }

    /// Copies a program from the pool, with every library it needs.
    pub fn program(&mut self, pool: &Pool, path: &str) -> anyhow::Result<()> {
        self.copy(pool, &relative(Path::new(path)), true)
    }

    /// Copies every file of a repository directory into the tree, keeping
    /// modes; ELF files among them get their libraries from the pool.
    pub fn overlay(&mut self, source: &Path) -> anyhow::Result<()> {
        for entry in walk(source)? {
            let rel = entry.strip_prefix(source)?.to_path_buf();
            let target = self.root.join(&rel);
            let meta = entry.symlink_metadata()?;
            if meta.is_dir() {
                std::fs::create_dir_all(&target)?;
            } else if meta.file_type().is_symlink() {
                std::fs::create_dir_all(target.parent().unwrap_or(&self.root))?;
                let _ = std::fs::remove_file(&target);
                symlink(std::fs::read_link(&entry)?, &target)?;
            } else {
                std::fs::create_dir_all(target.parent().unwrap_or(&self.root))?;
                std::fs::copy(&entry, &target)
                    .with_context(|| format!("copying {}", entry.display()))?;
            }
        }
        Ok(())
    }

    /// Copies `rel` from the pool: a symlink is recreated and its target
    /// copied too; an ELF file brings its interpreter and libraries.
    fn copy(&mut self, pool: &Pool, rel: &Path, follow_libraries: bool) -> anyhow::Result<()> {
        if !self.copied.insert(rel.to_path_buf()) {
            return Ok(());
        }
        let Some(source) = pool.find(rel) else {
            bail!("/{} is in none of the unpacked packages", rel.display());
        };
        let target = self.root.join(rel);
        std::fs::create_dir_all(target.parent().unwrap_or(&self.root))?;
        let meta = source.symlink_metadata()?;
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&source)?;
            let _ = std::fs::remove_file(&target);
            symlink(&link, &target)?;
            let resolved = if link.is_absolute() {
                relative(&link)
            } else {
                normalize(&rel.parent().unwrap_or(Path::new("")).join(&link))
            };
            return self.copy(pool, &resolved, follow_libraries);
        }
        std::fs::copy(&source, &target).with_context(|| format!("copying {}", source.display()))?;
        if follow_libraries && let Some(needs) = elf::needs(&source)? {
            if let Some(interpreter) = needs.interpreter {
                let loader = relative(Path::new(&interpreter));
                if pool.find(&loader).is_none() {
                    bail!(
                        "{interpreter}, the loader of /{}, is in none of the unpacked packages",
                        rel.display()
                    );
                }
                self.copy(pool, &loader, false)?;
            }
            for soname in needs.libraries {
                let Some(library) = pool.find_library(&soname) else {
                    bail!(
                        "{soname}, needed by /{}, is in none of the unpacked packages",
                        rel.display()
                    );
                };
                self.copy(pool, &library, true)?;
            }
        }
        Ok(())
    }

    /// Every regular file with its size, largest first.
    pub fn files_by_size(&self) -> anyhow::Result<Vec<(u64, PathBuf)>> {
        let mut files = Vec::new();
        for path in walk(&self.root)? {
            let meta = path.symlink_metadata()?;
            if meta.is_file() {
                files.push((
                    meta.len(),
                    Path::new("/").join(path.strip_prefix(&self.root)?),
                ));
            }
        }
        files.sort_by(|a, b| b.cmp(a));
        Ok(files)
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

/// Every path below `dir`, parents before children.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&current)
            .with_context(|| format!("reading {}", current.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.symlink_metadata()?.is_dir() {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_parent_components() {
        assert_eq!(
            normalize(Path::new("lib64/../lib/x86_64-linux-gnu/ld.so")),
            PathBuf::from("lib/x86_64-linux-gnu/ld.so")
        );
        assert_eq!(
            relative(Path::new("/usr/bin/x")),
            PathBuf::from("usr/bin/x")
        );
    }

    /// A pool like libc6's: a program, its library behind a symlink chain,
    /// and the loader behind an absolute symlink.
    fn pool(dir: &Path) -> Pool {
        let pkg = dir.join("pkg");
        std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
        std::fs::create_dir_all(pkg.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(pkg.join("lib64")).unwrap();
        std::fs::copy("/bin/ls", pkg.join("usr/bin/ls")).unwrap();
        for lib in elf::needs(Path::new("/bin/ls")).unwrap().unwrap().libraries {
            let real = format!("{lib}.real");
            std::fs::copy("/bin/busybox", pkg.join("lib/x86_64-linux-gnu").join(&real)).unwrap();
            symlink(&real, pkg.join("lib/x86_64-linux-gnu").join(&lib)).unwrap();
        }
        std::fs::write(
            pkg.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            "loader",
        )
        .unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            pkg.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        Pool::new(vec![pkg])
    }

    #[test]
    fn a_program_brings_its_libraries_and_loader_with_symlinks_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path());
        let mut tree = Tree::create(&dir.path().join("tree")).unwrap();
        tree.program(&pool, "/usr/bin/ls").unwrap();
        let root = tree.root();
        assert!(root.join("usr/bin/ls").is_file());
        assert_eq!(
            std::fs::read_link(root.join("lib64/ld-linux-x86-64.so.2")).unwrap(),
            PathBuf::from("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert!(
            root.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
                .is_file()
        );
        let libc = root.join("lib/x86_64-linux-gnu/libc.so.6");
        assert!(libc.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(root.join("lib/x86_64-linux-gnu/libc.so.6.real").is_file());
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it_and_its_user() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg/usr/bin");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::copy("/bin/ls", pkg.join("ls")).unwrap();
        let pool = Pool::new(vec![dir.path().join("pkg")]);
        let mut tree = Tree::create(&dir.path().join("tree")).unwrap();
        let err = tree.program(&pool, "/usr/bin/ls").unwrap_err().to_string();
        assert_eq!(
            err,
            "/lib64/ld-linux-x86-64.so.2, the loader of /usr/bin/ls, is in none of the unpacked packages"
        );

        std::fs::create_dir_all(dir.path().join("pkg/lib64")).unwrap();
        std::fs::write(dir.path().join("pkg/lib64/ld-linux-x86-64.so.2"), "loader").unwrap();
        let mut tree = Tree::create(&dir.path().join("tree")).unwrap();
        let err = tree.program(&pool, "/usr/bin/ls").unwrap_err().to_string();
        assert!(
            err.ends_with("needed by /usr/bin/ls, is in none of the unpacked packages"),
            "{err}"
        );
    }

    #[test]
    fn files_are_listed_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::create(&dir.path().join("tree")).unwrap();
        tree.dirs(&["etc"]).unwrap();
        std::fs::write(tree.root().join("a"), "1").unwrap();
        std::fs::write(tree.root().join("etc/b"), "123").unwrap();
        tree.symlink("a", "/c").unwrap();
        let files = tree.files_by_size().unwrap();
        assert_eq!(
            files,
            vec![(3, PathBuf::from("/etc/b")), (1, PathBuf::from("/a"))]
        );
    }
}
