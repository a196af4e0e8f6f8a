//! The kernel command line as one typed value, parsed once.
//!
//! PID 1 reads `/proc/cmdline` at the start of the boot and hands this
//! value on: the configuration layers take its `rancher.*`/`cc.*` layer
//! ([`Cmdline::config`]) instead of parsing the text again at each load,
//! and `ros service` requests reuse the same value. The grammar itself is
//! in [`crate::parse::cmdline`].

use std::path::Path;

use crate::parse::cmdline::{CmdlineConfig, CmdlineParam, config_from_cmdline, parse_cmdline};

/// The kernel command line: its text, its parameters and the configuration
/// layer it makes, all computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmdline {
    text: String,
    params: Vec<CmdlineParam>,
    config: CmdlineConfig,
}

impl Default for Cmdline {
    fn default() -> Self {
        Self::parse("")
    }
}

impl Cmdline {
    /// Parses `text` (trailing whitespace and the newline ignored).
    pub fn parse(text: &str) -> Self {
        let text = text.trim_end().to_owned();
        Self {
            params: parse_cmdline(&text),
            config: config_from_cmdline(&text),
            text,
        }
    }

    /// Reads and parses a command line file (`/proc/cmdline`).
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// The command line as the kernel gave it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every `key[=value]` parameter, those after `--` included.
    pub fn params(&self) -> &[CmdlineParam] {
        &self.params
    }

    /// The configuration layer of its `rancher.*` and `cc.*` parameters.
    pub fn config(&self) -> &CmdlineConfig {
        &self.config
    }

    /// The value of the last parameter named `key` (`Some(None)` for a
    /// bare key), or `None` when it is not there.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .rev()
            .find(|param| param.key == key)
            .map(|param| param.value.as_deref())
    }

    /// Whether `rancher.debug` is on: the last one decides; bare, or with
    /// a value RancherOS read as true (`yes`, `true`, `on`). Read
    /// here, before the configuration exists, because it sets PID 1's log
    /// level; the configuration layer reads it the same way.
    pub fn debug(&self) -> bool {
        self.get("rancher.debug").is_some_and(|value| {
            value.is_none_or(|word| crate::schema::scalar::parse_bool_word(word) == Some(true))
        })
    }

    /// Whether the kernel's console log level is the user's to keep: set
    /// by `loglevel=`, `quiet`, `debug` or `ignore_loglevel`, or asked
    /// for debug lines with `rancher.debug`. Otherwise PID 1 quiets the
    /// console once the machine is ready.
    pub fn sets_console_log_level(&self) -> bool {
        ["loglevel", "quiet", "debug", "ignore_loglevel"]
            .iter()
            .any(|key| self.get(key).is_some())
            || self.debug()
    }
}

impl std::fmt::Display for Cmdline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_is_parsed_once_into_params_and_a_layer() {
        let cmdline = Cmdline::parse("console=ttyS0 rancher.debug cc.hostname=box\n");
        assert_eq!(
            cmdline.text(),
            "console=ttyS0 rancher.debug cc.hostname=box"
        );
        assert_eq!(cmdline.params().len(), 3);
        assert_eq!(cmdline.get("console"), Some(Some("ttyS0")));
        assert_eq!(cmdline.get("rancher.debug"), Some(None));
        assert_eq!(cmdline.get("quiet"), None);
        let layer = &cmdline.config().value;
        assert_eq!(layer["hostname"], serde_norway::Value::from("box"));
        assert_eq!(layer["rancher"]["debug"], serde_norway::Value::Bool(true));
    }

    #[test]
    fn the_last_of_a_repeated_parameter_wins() {
        let cmdline = Cmdline::parse("a=1 a=2");
        assert_eq!(cmdline.get("a"), Some(Some("2")));
    }

    #[test]
    fn the_console_log_level_is_the_users_when_the_command_line_sets_it() {
        let sets = |text: &str| Cmdline::parse(text).sets_console_log_level();
        assert!(!sets(
            "console=tty1 console=ttyS0,115200n8 rancher.autologin=[tty1,ttyS0]"
        ));
        assert!(sets("console=ttyS0 loglevel=3"));
        assert!(sets("quiet"));
        assert!(sets("debug"));
        assert!(sets("ignore_loglevel"));
        assert!(sets("rancher.debug"));
        assert!(!sets("rancher.debug=false"));
    }

    #[test]
    fn debug_is_read_as_the_configuration_reads_it() {
        let debug = |text: &str| Cmdline::parse(text).debug();
        assert!(debug("quiet rancher.debug console=ttyS0"));
        assert!(debug("rancher.debug=yes"));
        // Not a YAML 1.1 boolean: the configuration refuses it too.
        assert!(!debug("rancher.debug=1"));
        assert!(!debug("rancher.debug=false"));
        assert!(!debug("rancher.debug=no"));
        assert!(!debug("rancher.debug=true rancher.debug=off"));
        assert!(debug("rancher.debug=off rancher.debug"));
        // As on RancherOS, what follows `--` is configuration too.
        assert!(debug("rancher.debugging -- rancher.debug"));
        assert!(!debug("rancher.debugging"));
        assert!(!debug(""));
        // The configuration made from the same command line agrees.
        for text in ["rancher.debug", "rancher.debug=yes", "rancher.debug=off"] {
            let cmdline = Cmdline::parse(text);
            let checked = crate::check::check_value_dropping(cmdline.config().value.clone())
                .unwrap_or_else(|errors| panic!("{text}: {errors}"));
            assert_eq!(checked.config.rancher.debug, cmdline.debug(), "{text}");
        }
    }

    #[test]
    fn an_empty_command_line_has_no_params_and_an_empty_layer() {
        let cmdline = Cmdline::default();
        assert!(cmdline.params().is_empty());
        assert_eq!(cmdline.config().problems, vec![]);
        assert_eq!(cmdline.to_string(), "");
    }
}
