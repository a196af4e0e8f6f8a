//! `rancher.autologin`: the terminals where `rancher` is logged in without
//! a password (`tty1`, `ttyS0`; `/dev/` may be written). Every other
//! terminal shows a login prompt.

use os_config::schema::StringOrList;

/// A terminal name as the console script knows it (`ttyS0`).
fn normalize(name: &str) -> &str {
    let name = name.trim();
    name.strip_prefix("/dev/").unwrap_or(name)
}

/// The terminals `rancher.autologin` names.
pub fn terminals(setting: Option<&StringOrList>) -> Vec<String> {
    setting
        .map(StringOrList::to_list)
        .unwrap_or_default()
        .iter()
        // `rancher.autologin=tty1,ttyS0` is one string on the command line.
        .flat_map(|entry| entry.split([',', ' ']))
        .map(normalize)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `tty` logs in by itself.
pub fn asked_for(setting: Option<&StringOrList>, tty: &str) -> bool {
    let tty = normalize(tty);
    terminals(setting).iter().any(|name| name == tty)
}

/// Warnings for named terminals that have no console (nothing runs a getty
/// there, so nothing logs in). `active` is `/sys/class/tty/console/active`.
pub fn warnings(setting: Option<&StringOrList>, active: &str) -> Vec<String> {
    let consoles: Vec<&str> = active
        .split_whitespace()
        // tty0 is "the current virtual terminal", tty1 at boot.
        .map(|tty| if tty == "tty0" { "tty1" } else { tty })
        .collect();
    terminals(setting)
        .into_iter()
        .filter(|name| !consoles.contains(&name.as_str()))
        .map(|name| {
            format!(
                "rancher.autologin: {name} is not a console (console= on the kernel command line: {}); nothing logs in there",
                consoles.join(" ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> StringOrList {
        StringOrList::List(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn only_the_named_terminals_log_in_by_themselves() {
        let setting = list(&["tty1", "/dev/ttyS0"]);
        assert!(asked_for(Some(&setting), "ttyS0"));
        assert!(asked_for(Some(&setting), "tty1"));
        assert!(!asked_for(Some(&setting), "tty2"));
        assert!(!asked_for(None, "ttyS0"));
        let one = StringOrList::String("ttyS0".into());
        assert!(asked_for(Some(&one), "/dev/ttyS0"));
        assert!(!asked_for(Some(&one), "tty1"));
        let joined = StringOrList::String("tty1,ttyS0".into());
        assert_eq!(terminals(Some(&joined)), ["tty1", "ttyS0"]);
    }

    #[test]
    fn a_terminal_without_a_console_is_warned_about() {
        let setting = list(&["tty1", "ttyS1"]);
        let warned = warnings(Some(&setting), "tty0 ttyS0\n");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("rancher.autologin: ttyS1 is not a console"));
        assert!(warnings(None, "ttyS0").is_empty());
    }
}
