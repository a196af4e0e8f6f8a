//! `sudo` for the console: RancherOS let the `rancher` user become root
//! without a password (`rancher ALL=(ALL) NOPASSWD: ALL`); this does the
//! same for every member of the `sudo` group, and nothing more.
//!
//! It is installed setuid root in the console image. The steps: parse the
//! arguments (only `-i`, `-s`, `-u root`, `-n` and `--`; any other option is
//! refused by name), check the caller (root, or a member of the group
//! named [`SUDO_GROUP`] in the root-owned `/etc/group`), switch every id to
//! root, and exec the command, a shell or a login shell with a clean
//! environment. It never forks: the command takes over this process.

// Shipped code returns errors instead of panicking (tests may: clippy.toml):
// locked in while this crate is clean.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use nix::unistd::{Gid, Uid, User, getgroups, setgroups, setresgid, setresuid};

/// The group whose members may run commands as root.
pub const SUDO_GROUP: &str = "sudo";
/// Where that group is looked up; trusted only when root owns it and no
/// one else may write it.
const GROUP_FILE: &str = "/etc/group";
/// The shell of `-i`, `-s` and root.
const SHELL: &str = "/bin/sh";
/// root's home, where `-i` starts.
const ROOT_HOME: &str = "/root";
/// The search path commands get, whatever the caller had.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USAGE: &str = "usage: sudo [-n] [-i | -s] [-u root] [--] [COMMAND [ARG...]]";

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `sudo CMD ARGS…`.
    Command(Vec<OsString>),
    /// `sudo -s [CMD…]`: a shell, here, or the command through it.
    Shell(Vec<OsString>),
    /// `sudo -i [CMD…]`: root's login shell in root's home, or the command
    /// through it.
    Login(Vec<OsString>),
    /// `sudo -h`.
    Help,
}

/// Why the arguments were refused (exit 1, as sudo does).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("option {0} is not supported here\n{USAGE}")]
    Unsupported(String),
    #[error("option -u needs a user\n{USAGE}")]
    MissingUser,
    #[error("only root can be the target user here, not {0:?}")]
    OtherUser(String),
    #[error("-i and -s cannot be used together\n{USAGE}")]
    ShellAndLogin,
    #[error("{USAGE}")]
    NoCommand,
}

/// Parses the arguments after argv0.
pub fn parse(args: &[OsString]) -> Result<Request, UsageError> {
    let (mut shell, mut login) = (false, false);
    let mut rest = args.iter();
    let mut command = Vec::new();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            break;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            command.push(arg.clone());
            break;
        }
        let user = match bytes {
            b"-i" | b"--login" => {
                login = true;
                continue;
            }
            b"-s" | b"--shell" => {
                shell = true;
                continue;
            }
            b"-h" | b"--help" => return Ok(Request::Help),
            // It never asks for a password: non-interactive holds anyway.
            b"-n" | b"--non-interactive" => continue,
            b"-u" | b"--user" => rest.next().cloned().ok_or(UsageError::MissingUser)?,
            _ if bytes.starts_with(b"--user=") => OsStr::from_bytes(&bytes[7..]).to_owned(),
            _ if bytes.starts_with(b"-u") => OsStr::from_bytes(&bytes[2..]).to_owned(),
            _ => return Err(UsageError::Unsupported(arg.to_string_lossy().into_owned())),
        };
        if user != "root" && user != "#0" {
            return Err(UsageError::OtherUser(user.to_string_lossy().into_owned()));
        }
    }
    command.extend(rest.cloned());
    match (shell, login) {
        (true, true) => Err(UsageError::ShellAndLogin),
        (false, true) => Ok(Request::Login(command)),
        (true, false) => Ok(Request::Shell(command)),
        (false, false) if command.is_empty() => Err(UsageError::NoCommand),
        (false, false) => Ok(Request::Command(command)),
    }
}

/// The gid of `name` in the text of an `/etc/group` file.
pub fn group_id(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.trim().parse().ok()
    })
}

/// Whether a caller with these ids may become root.
pub fn allowed(uid: u32, gid: u32, groups: &[u32], sudo_gid: Option<u32>) -> bool {
    uid == 0 || sudo_gid.is_some_and(|sudo| gid == sudo || groups.contains(&sudo))
}

/// The environment the command gets: nothing of the caller's but a sane
/// `TERM`, and who called in `SUDO_*`.
pub fn environment(
    term: Option<&OsStr>,
    caller: &str,
    uid: u32,
    gid: u32,
) -> Vec<(String, OsString)> {
    let mut env = vec![
        ("PATH".to_owned(), OsString::from(PATH)),
        ("HOME".to_owned(), OsString::from(ROOT_HOME)),
        ("USER".to_owned(), OsString::from("root")),
        ("LOGNAME".to_owned(), OsString::from("root")),
        ("SHELL".to_owned(), OsString::from(SHELL)),
        ("SUDO_USER".to_owned(), OsString::from(caller)),
        ("SUDO_UID".to_owned(), OsString::from(uid.to_string())),
        ("SUDO_GID".to_owned(), OsString::from(gid.to_string())),
    ];
    // A terminal type is a short name; anything else is not passed on.
    if let Some(term) = term.filter(|t| {
        !t.is_empty()
            && t.len() < 64
            && t.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(b))
    }) {
        env.push(("TERM".to_owned(), term.to_owned()));
    }
    env
}

/// One shell word for `arg`: quoted unless plainly safe.
fn shell_word(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The program, argv0 and arguments to exec for a request.
pub fn argv(request: &Request) -> Option<(OsString, OsString, Vec<OsString>)> {
    let through_shell = |arg0: &str, command: &[OsString]| {
        let mut args = Vec::new();
        if !command.is_empty() {
            let line: Vec<String> = command.iter().map(|a| shell_word(a)).collect();
            args = vec![OsString::from("-c"), OsString::from(line.join(" "))];
        }
        (OsString::from(SHELL), OsString::from(arg0), args)
    };
    match request {
        Request::Help => None,
        Request::Command(command) => {
            let (program, args) = command.split_first()?;
            Some((program.clone(), program.clone(), args.to_vec()))
        }
        Request::Shell(command) => Some(through_shell("sh", command)),
        // A leading dash makes the shell a login shell (it reads /etc/profile).
        Request::Login(command) => Some(through_shell("-sh", command)),
    }
}

/// What stops the command from running (exit 1).
#[derive(Debug, thiserror::Error)]
enum SudoError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("{0} is not allowed to run sudo")]
    NotAllowed(String),
    #[error("{GROUP_FILE} is not owned by root or is writable by others: not trusted")]
    UntrustedGroupFile,
    #[error("cannot read {GROUP_FILE}: {0}")]
    GroupFile(std::io::Error),
    #[error("cannot read the caller's groups: {0}")]
    Groups(nix::Error),
    #[error("cannot become root ({0}): is sudo installed setuid root?")]
    BecomeRoot(nix::Error),
    #[error("cannot enter {ROOT_HOME}: {0}")]
    Home(std::io::Error),
    #[error("{}: {error}", program.to_string_lossy())]
    Exec {
        program: OsString,
        error: std::io::Error,
    },
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sudo: {error}");
            ExitCode::from(1)
        }
    }
}

/// Returns only when nothing was executed: help, or an error.
fn run(args: &[OsString]) -> Result<(), SudoError> {
    let request = parse(args)?;
    let Some((program, arg0, rest)) = argv(&request) else {
        println!("{USAGE}\nRuns COMMAND (or a shell: -s, a login shell: -i) as root.");
        return Ok(());
    };
    let (uid, gid) = (Uid::current(), Gid::current());
    let caller = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name);
    let groups: Vec<u32> = getgroups()
        .map_err(SudoError::Groups)?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    let sudo_gid = if uid.is_root() {
        None
    } else {
        let meta = std::fs::metadata(GROUP_FILE).map_err(SudoError::GroupFile)?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(SudoError::UntrustedGroupFile);
        }
        let text = std::fs::read_to_string(GROUP_FILE).map_err(SudoError::GroupFile)?;
        group_id(&text, SUDO_GROUP)
    };
    if !allowed(uid.as_raw(), gid.as_raw(), &groups, sudo_gid) {
        return Err(SudoError::NotAllowed(caller));
    }
    let root = Gid::from_raw(0);
    setgroups(&[root]).map_err(SudoError::BecomeRoot)?;
    setresgid(root, root, root).map_err(SudoError::BecomeRoot)?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(SudoError::BecomeRoot)?;
    if matches!(request, Request::Login(_)) {
        std::env::set_current_dir(Path::new(ROOT_HOME)).map_err(SudoError::Home)?;
    }
    let term = std::env::var_os("TERM");
    let error = Command::new(&program)
        .arg0(arg0)
        .args(rest)
        .env_clear()
        .envs(environment(
            term.as_deref(),
            &caller,
            uid.as_raw(),
            gid.as_raw(),
        ))
        .exec();
    Err(SudoError::Exec { program, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn parsed(list: &[&str]) -> Result<Request, UsageError> {
        parse(&args(list))
    }

    #[test]
    fn a_command_and_its_options_pass_through_untouched() {
        assert_eq!(
            parsed(&["id", "-u"]),
            Ok(Request::Command(args(&["id", "-u"])))
        );
        assert_eq!(
            parsed(&["-u", "root", "--", "ls", "-l"]),
            Ok(Request::Command(args(&["ls", "-l"])))
        );
        assert_eq!(
            parsed(&["-n", "-uroot", "true"]),
            Ok(Request::Command(args(&["true"])))
        );
        assert_eq!(
            parsed(&["--user=root", "true"]),
            Ok(Request::Command(args(&["true"])))
        );
    }

    #[test]
    fn dash_i_and_dash_s_ask_for_shells_with_or_without_a_command() {
        assert_eq!(parsed(&["-i"]), Ok(Request::Login(vec![])));
        assert_eq!(parsed(&["-s"]), Ok(Request::Shell(vec![])));
        assert_eq!(
            parsed(&["-i", "echo", "a b"]),
            Ok(Request::Login(args(&["echo", "a b"])))
        );
        assert_eq!(parsed(&["-i", "-s"]), Err(UsageError::ShellAndLogin));
    }

    #[test]
    fn other_options_and_other_users_are_refused_by_name() {
        assert_eq!(
            parsed(&["-E", "id"]),
            Err(UsageError::Unsupported("-E".into()))
        );
        assert_eq!(
            parsed(&["--preserve-env", "id"]),
            Err(UsageError::Unsupported("--preserve-env".into()))
        );
        assert_eq!(
            parsed(&["-u", "rancher", "id"]),
            Err(UsageError::OtherUser("rancher".into()))
        );
        assert_eq!(parsed(&["-u"]), Err(UsageError::MissingUser));
        assert_eq!(parsed(&[]), Err(UsageError::NoCommand));
        assert!(
            UsageError::Unsupported("-E".into())
                .to_string()
                .starts_with("option -E is not supported")
        );
    }

    #[test]
    fn only_root_and_members_of_the_sudo_group_are_allowed() {
        let groups = "root:x:0:\nrancher:x:1100:\ndocker:x:1101:rancher\nsudo:x:27:rancher\n";
        let sudo = group_id(groups, SUDO_GROUP);
        assert_eq!(sudo, Some(27));
        assert!(allowed(1100, 1100, &[1100, 1101, 27], sudo));
        assert!(allowed(1200, 27, &[], sudo), "primary group counts");
        assert!(!allowed(1200, 1200, &[1200, 1101], sudo));
        assert!(allowed(0, 0, &[], None), "root needs no group");
        assert!(!allowed(1100, 1100, &[27], None), "no sudo group, no one");
        assert_eq!(group_id("sudoers:x:5:\nsudo:x:oops:\n", SUDO_GROUP), None);
    }

    #[test]
    fn the_environment_is_clean_and_keeps_only_a_sane_term() {
        let env = environment(Some(OsStr::new("xterm-256color")), "rancher", 1100, 1100);
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("HOME").as_deref(), Some("/root"));
        assert_eq!(get("USER").as_deref(), Some("root"));
        assert_eq!(get("LOGNAME").as_deref(), Some("root"));
        assert_eq!(get("SHELL").as_deref(), Some("/bin/sh"));
        assert_eq!(get("PATH").as_deref(), Some(PATH));
        assert_eq!(get("TERM").as_deref(), Some("xterm-256color"));
        assert_eq!(get("SUDO_USER").as_deref(), Some("rancher"));
        assert_eq!(get("LD_PRELOAD"), None);
        let odd = environment(Some(OsStr::new("x;rm -rf /")), "rancher", 1100, 1100);
        assert!(odd.iter().all(|(k, _)| k != "TERM"));
    }

    #[test]
    fn shells_get_the_command_as_one_quoted_line() {
        let (program, arg0, rest) = argv(&Request::Login(args(&["echo", "it's", "a b"]))).unwrap();
        assert_eq!(
            (program.as_os_str(), arg0.as_os_str()),
            (OsStr::new("/bin/sh"), OsStr::new("-sh"))
        );
        assert_eq!(rest, args(&["-c", r"echo 'it'\''s' 'a b'"]));
        let (_, arg0, rest) = argv(&Request::Shell(vec![])).unwrap();
        assert_eq!((arg0.as_os_str(), rest.len()), (OsStr::new("sh"), 0));
        let (program, _, rest) = argv(&Request::Command(args(&["id", "-u"]))).unwrap();
        assert_eq!((program, rest), (OsString::from("id"), args(&["-u"])));
        assert_eq!(argv(&Request::Help), None);
    }
}
