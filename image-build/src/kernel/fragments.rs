//! Config fragments (`kernel-config/*.config`) and the check that every
//! option they ask for survived `olddefconfig`.
//!
//! Kconfig silently drops an option whose dependencies are not met, so a
//! fragment saying `CONFIG_X=y` proves nothing until the final `.config` is
//! read back.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One `kernel-config/*.config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// File name, e.g. `net.config`.
    pub name: String,
    pub path: PathBuf,
    pub contents: String,
}

/// What a fragment asks for one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `CONFIG_X=value` (`y`, a number, a quoted string).
    Value(String),
    /// `# CONFIG_X is not set`.
    NotSet,
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(value) => write!(f, "={value}"),
            Self::NotSet => f.write_str(" is not set"),
        }
    }
}

/// An option a fragment asked for that the final `.config` does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub option: String,
    pub wanted: Want,
    /// The final value; `None` when it is not set or absent.
    pub got: Option<String>,
    pub fragment: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} ({}): ", self.option, self.wanted, self.fragment)?;
        match &self.got {
            Some(value) => write!(f, "the final .config has {}={value}", self.option),
            None => f.write_str("not set in the final .config"),
        }
    }
}

/// Reads every `*.config` in `dir`, sorted by name so the order (and the
/// cache key) does not depend on the directory listing.
pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Fragment>> {
    let mut fragments = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "config") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has a non-UTF-8 name", path.display()))?
            .to_owned();
        let contents = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        fragments.push(Fragment {
            name,
            path,
            contents,
        });
    }
    fragments.sort_by(|a, b| a.name.cmp(&b.name));
    if fragments.is_empty() {
        bail!("no *.config fragments in {}", dir.display());
    }
    // Parse now so a typo fails before a ten-minute build, not after it.
    wanted_options(&fragments)?;
    Ok(fragments)
}

/// Every option the fragments set, with the fragment that sets it. An option
/// may appear in one fragment only: two fragments disagreeing would make the
/// result depend on their order.
pub fn wanted_options(fragments: &[Fragment]) -> anyhow::Result<Vec<(String, Want, &str)>> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut wanted = Vec::new();
    for fragment in fragments {
        for (number, line) in fragment.contents.lines().enumerate() {
            let Some((option, want)) = parse_line(line).with_context(|| {
                format!("{}:{}: cannot parse {line:?}", fragment.name, number + 1)
            })?
            else {
                continue;
            };
            if let Some(first) = seen.insert(option.clone(), &fragment.name) {
                bail!(
                    "{option} is set in both {first} and {}; keep it in one fragment",
                    fragment.name
                );
            }
            wanted.push((option, want, fragment.name.as_str()));
        }
    }
    Ok(wanted)
}

/// Parses one line of a fragment or a `.config`: `Ok(None)` for blank lines
/// and plain comments, an error for anything Kconfig would not understand.
fn parse_line(line: &str) -> anyhow::Result<Option<(String, Want)>> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = line.strip_prefix('#') {
        let not_set = comment
            .trim()
            .strip_suffix(" is not set")
            .filter(|option| is_option_name(option));
        return Ok(not_set.map(|option| (option.to_owned(), Want::NotSet)));
    }
    match line.split_once('=') {
        Some((option, value)) if is_option_name(option) && !value.is_empty() => {
            Ok(Some((option.to_owned(), Want::Value(value.to_owned()))))
        }
        _ => bail!("expected CONFIG_NAME=value or # CONFIG_NAME is not set"),
    }
}

fn is_option_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Compares what the fragments asked for with the final `.config` text and
/// returns every option that did not make it, in fragment order.
pub fn dropped_options(fragments: &[Fragment], final_config: &str) -> anyhow::Result<Vec<Dropped>> {
    let mut actual: HashMap<String, String> = HashMap::new();
    for line in final_config.lines() {
        // A .config only holds lines Kconfig wrote; skip anything odd
        // rather than fail on it.
        if let Ok(Some((option, Want::Value(value)))) = parse_line(line) {
            actual.insert(option, value);
        }
    }
    let dropped = wanted_options(fragments)?
        .into_iter()
        .filter_map(|(option, wanted, fragment)| {
            let got = actual.get(&option).cloned();
            let kept = match &wanted {
                Want::Value(value) => got.as_deref() == Some(value.as_str()),
                // "n" is how a tristate/bool reads when forced off.
                Want::NotSet => got.is_none() || got.as_deref() == Some("n"),
            };
            (!kept).then(|| Dropped {
                option,
                wanted,
                got,
                fragment: fragment.to_owned(),
            })
        })
        .collect();
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(name: &str, contents: &str) -> Fragment {
        Fragment {
            name: name.to_owned(),
            path: PathBuf::from(name),
            contents: contents.to_owned(),
        }
    }

    const FINAL: &str = "\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_NET=y
CONFIG_NR_CPUS=64
CONFIG_DEFAULT_HOSTNAME=\"(none)\"
# CONFIG_SLOB is not set
# CONFIG_RD_GZIP is not set
CONFIG_SLUB=y
";

    #[test]
    fn nothing_dropped_when_every_option_is_in_the_final_config() {
        let fragments = [
            fragment(
                "base.config",
                "# comment\nCONFIG_SLUB=y\n# CONFIG_SLOB is not set\nCONFIG_NR_CPUS=64\n",
            ),
            fragment(
                "net.config",
                "\nCONFIG_NET=y\nCONFIG_DEFAULT_HOSTNAME=\"(none)\"\n",
            ),
            // Absent from the final config entirely counts as not set.
            fragment(
                "fs.config",
                "# CONFIG_RD_GZIP is not set\n# CONFIG_RD_XZ is not set\n",
            ),
        ];
        assert_eq!(dropped_options(&fragments, FINAL).unwrap(), []);
    }

    #[test]
    fn an_option_in_two_fragments_is_an_error() {
        let fragments = [
            fragment("base.config", "CONFIG_SLUB=y\n"),
            fragment("net.config", "CONFIG_NET=y\n"),
            fragment("mem.config", "# CONFIG_SLUB is not set\n"),
        ];
        let err = dropped_options(&fragments, FINAL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CONFIG_SLUB is set in both base.config and mem.config; keep it in one fragment"
        );
    }

    #[test]
    fn every_dropped_option_is_listed_with_its_fragment() {
        let fragments = [
            fragment("base.config", "CONFIG_SLUB=y\nCONFIG_NR_CPUS=8\n"),
            fragment(
                "net.config",
                "CONFIG_NET=y\nCONFIG_BRIDGE_NETFILTER=y\n# CONFIG_SLOB is not set\n",
            ),
            fragment("tty.config", "# CONFIG_NET_X is not set\nCONFIG_TTY=y\n"),
        ];
        let dropped = dropped_options(&fragments, FINAL).unwrap();
        assert_eq!(
            dropped,
            [
                Dropped {
                    option: "CONFIG_NR_CPUS".into(),
                    wanted: Want::Value("8".into()),
                    got: Some("64".into()),
                    fragment: "base.config".into(),
                },
                Dropped {
                    option: "CONFIG_BRIDGE_NETFILTER".into(),
                    wanted: Want::Value("y".into()),
                    got: None,
                    fragment: "net.config".into(),
                },
                Dropped {
                    option: "CONFIG_TTY".into(),
                    wanted: Want::Value("y".into()),
                    got: None,
                    fragment: "tty.config".into(),
                },
            ]
        );
        assert_eq!(
            dropped[1].to_string(),
            "CONFIG_BRIDGE_NETFILTER=y (net.config): not set in the final .config"
        );
    }

    #[test]
    fn an_option_wanted_off_but_left_on_is_dropped() {
        let fragments = [fragment("base.config", "# CONFIG_SLUB is not set\n")];
        let dropped = dropped_options(&fragments, FINAL).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].got.as_deref(), Some("y"));
        assert_eq!(
            dropped[0].to_string(),
            "CONFIG_SLUB is not set (base.config): the final .config has CONFIG_SLUB=y"
        );
    }

    #[test]
    fn malformed_fragment_lines_are_errors_with_their_place() {
        for bad in [
            "CONFIG_NET",
            "NET=y",
            "CONFIG_NET=",
            "CONFIG_ NET=y",
            "CONFIG_=y",
        ] {
            let fragments = [fragment("net.config", &format!("CONFIG_INET=y\n{bad}\n"))];
            let err = wanted_options(&fragments).unwrap_err();
            assert!(
                err.to_string().starts_with("net.config:2: cannot parse"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn plain_comments_are_not_options() {
        let fragments = [fragment(
            "a.config",
            "# CONFIG_X is set by y.config\n#CONFIG_Y is not set\n",
        )];
        let wanted = wanted_options(&fragments).unwrap();
        assert_eq!(wanted, [("CONFIG_Y".to_owned(), Want::NotSet, "a.config")]);
    }
}
