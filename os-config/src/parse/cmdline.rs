//! The kernel command line: every `key[=value]` parameter, and the
//! configuration layer made from the `rancher.*` and `cc.*` ones.
//!
//! Quoting follows the kernel: double quotes group spaces into one
//! parameter (`rancher.password="a b"` and `"rancher.password=a b"`); as
//! RancherOS split it, brackets do too (`rancher.x=[a, b]`). A bare `--`
//! ends the kernel's own parameters: what follows is init's argv. RancherOS
//! read `rancher.*` and `cc.*` there too (its kernel hid them from
//! /proc/cmdline, for secrets like the password) and kept the whole of
//! init's argv as `rancher.environment.EXTRA_CMDLINE`; so does this.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{is_not, take_till},
    character::complete::{char, multispace0, multispace1},
    combinator::{opt, recognize},
    multi::{many1, separated_list0},
    sequence::preceded,
};
use serde_norway::Value;

use super::keypath::{KeyPath, Segment};
use super::value::parse_value;
use crate::tree;

/// One kernel parameter; `value` is `None` for a bare key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineParam {
    /// The text before the first `=`, with grouping quotes removed.
    pub key: String,
    /// The text after the first `=`, quotes kept so YAML can read them.
    pub value: Option<String>,
}

/// A `rancher.*`/`cc.*` parameter that could not become configuration; the
/// boot goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineProblem {
    /// The part after `rancher.`/`cc.` is not a key path.
    #[error("kernel parameter `{param}`: {source}")]
    BadKey {
        /// The parameter as written.
        param: String,
        /// Why its key does not parse.
        source: super::keypath::KeyPathError,
    },
    /// The key runs into an earlier parameter's scalar (`rancher.a=1 rancher.a.b=2`).
    #[error("kernel parameter `{param}`: {source}")]
    Conflict {
        /// The parameter as written.
        param: String,
        /// Where the paths collide.
        source: tree::TreeError,
    },
}

/// The configuration layer found on the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdlineConfig {
    /// A mapping shaped like a cloud-config document.
    pub value: Value,
    /// Parameters that were skipped, and why.
    pub problems: Vec<CmdlineProblem>,
}

/// Where RancherOS kept init's argv (`/init` and what follows `--`).
pub const EXTRA_CMDLINE: &str = "EXTRA_CMDLINE";

fn tokens(text: &str) -> Vec<&str> {
    // The grammar accepts every input, so the fallback is never taken; it
    // keeps a parser bug from turning into a panic in PID 1.
    match params(text) {
        Ok((_, tokens)) => tokens,
        Err(_) => Vec::new(),
    }
}

/// Splits a command line into parameters, those after `--` (init's
/// arguments) included, as RancherOS read them; the `--` itself is not one.
pub fn parse_cmdline(text: &str) -> Vec<CmdlineParam> {
    let mut seen_end = false;
    tokens(text)
        .into_iter()
        .filter(|token| {
            let end = *token == "--" && !seen_end;
            seen_end |= end;
            !end
        })
        .map(split_param)
        .collect()
}

/// The kernel's own parameters: those before `--`.
pub fn kernel_params(text: &str) -> Vec<CmdlineParam> {
    tokens(text)
        .into_iter()
        .take_while(|token| *token != "--")
        .map(split_param)
        .collect()
}

/// What follows the first `--` (init's arguments), as written; `None`
/// without a `--`.
pub fn init_args(text: &str) -> Option<Vec<String>> {
    let tokens = tokens(text);
    let end = tokens.iter().position(|token| *token == "--")?;
    Some(tokens[end + 1..].iter().map(|t| (*t).to_owned()).collect())
}

/// The `rancher.*` and `cc.*` parameters as one cloud-config mapping:
/// `rancher.a.b=v` sets `rancher.a.b`, `cc.hostname=x` sets `hostname`.
/// A bare key is `true`; later parameters win, so those after `--` win
/// over the kernel's. A value that is not YAML is kept as text, as
/// RancherOS kept it. With a `--`, `rancher.environment.EXTRA_CMDLINE` is
/// init's argv: `/init` and what follows.
pub fn config_from_cmdline(text: &str) -> CmdlineConfig {
    let mut value = Value::Mapping(Default::default());
    let mut problems = Vec::new();
    if let Some(args) = init_args(text) {
        let mut argv = vec!["/init".to_owned()];
        argv.extend(args);
        let path = KeyPath::root()
            .key("rancher")
            .key("environment")
            .key(EXTRA_CMDLINE);
        // A fresh tree: this cannot collide.
        let _ = tree::set(&mut value, &path, Value::String(argv.join(" ")));
    }
    for param in parse_cmdline(text) {
        let shown = match &param.value {
            Some(v) => format!("{}={v}", param.key),
            None => param.key.clone(),
        };
        let path = if let Some(rest) = param.key.strip_prefix("rancher.") {
            KeyPath::parse(rest).map(|path| {
                let mut segments = vec![Segment::Key("rancher".to_owned())];
                segments.extend(path.segments().iter().cloned());
                KeyPath::from_segments(segments)
            })
        } else if let Some(rest) = param.key.strip_prefix("cc.") {
            KeyPath::parse(rest)
        } else {
            continue;
        };
        let path = match path {
            Ok(path) => path,
            Err(source) => {
                problems.push(CmdlineProblem::BadKey {
                    param: shown,
                    source,
                });
                continue;
            }
        };
        let parsed = match &param.value {
            None => Value::Bool(true),
            Some(text) => parse_value(text).unwrap_or_else(|_| Value::String(text.clone())),
        };
        if let Err(source) = tree::set(&mut value, &path, parsed) {
            problems.push(CmdlineProblem::Conflict {
                param: shown,
                source,
            });
        }
    }
    CmdlineConfig { value, problems }
}

fn split_param(token: &str) -> CmdlineParam {
    // `"key=value with spaces"`: the quotes wrap the whole parameter.
    let token = match token.strip_prefix('"') {
        Some(inner)
            if !inner.is_empty()
                && token.ends_with('"')
                && !inner[..inner.len() - 1].contains('"') =>
        {
            &inner[..inner.len() - 1]
        }
        _ => token,
    };
    // Quotes inside the key stay: they quote key-path segments
    // (`rancher.sysctl."vm.swappiness"=10`).
    match token.split_once('=') {
        Some((key, value)) => CmdlineParam {
            key: key.to_owned(),
            value: Some(value.to_owned()),
        },
        None => CmdlineParam {
            key: token.to_owned(),
            value: None,
        },
    }
}

/// `"..."`, unterminated quotes running to the end of the line.
fn quoted_run(input: &str) -> IResult<&str, &str> {
    recognize((char('"'), take_till(|c| c == '"'), opt(char('"')))).parse(input)
}

/// `[...]`, spaces inside kept (RancherOS's `[a, b]`); unterminated runs
/// to the end of the line.
fn bracketed_run(input: &str) -> IResult<&str, &str> {
    recognize((char('['), take_till(|c| c == ']'), opt(char(']')))).parse(input)
}

fn token(input: &str) -> IResult<&str, &str> {
    recognize(many1(alt((
        quoted_run,
        bracketed_run,
        is_not(" \t\r\n\"["),
    ))))
    .parse(input)
}

fn params(input: &str) -> IResult<&str, Vec<&str>> {
    preceded(multispace0, separated_list0(multispace1, token)).parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn param(key: &str, value: Option<&str>) -> CmdlineParam {
        CmdlineParam {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn splits_parameters_like_the_kernel() {
        let line = "BOOT_IMAGE=/vmlinuz console=ttyS0,115200n8 quiet rancher.password=\"a b\" \"rancher.motd=x y=z\" rancher.debug -- single rancher.init=1\n";
        let kernel = vec![
            param("BOOT_IMAGE", Some("/vmlinuz")),
            param("console", Some("ttyS0,115200n8")),
            param("quiet", None),
            param("rancher.password", Some("\"a b\"")),
            param("rancher.motd", Some("x y=z")),
            param("rancher.debug", None),
        ];
        assert_eq!(kernel_params(line), kernel);
        let mut all = kernel;
        all.extend([param("single", None), param("rancher.init", Some("1"))]);
        assert_eq!(parse_cmdline(line), all);
        assert_eq!(
            init_args(line),
            Some(vec!["single".to_owned(), "rancher.init=1".to_owned()])
        );
        assert_eq!(init_args("quiet"), None);
    }

    #[test]
    fn brackets_group_spaces_as_rancheros_split_them() {
        assert_eq!(
            parse_cmdline("rancher.network.dns.nameservers=[8.8.8.8, 1.1.1.1] quiet"),
            vec![
                param(
                    "rancher.network.dns.nameservers",
                    Some("[8.8.8.8, 1.1.1.1]")
                ),
                param("quiet", None)
            ]
        );
    }

    #[test]
    fn what_follows_the_double_dash_is_read_as_rancheros_read_it() {
        // RancherOS's TestElideCmdLine: `--append "cc.something=yes
        // rancher.password=two" --append-init "cc.hostname=nope
        // rancher.password=three"`.
        let layer = config_from_cmdline(
            "console=ttyS0 cc.something=yes rancher.password=two -- cc.hostname=nope rancher.password=three",
        );
        assert_eq!(layer.problems, vec![]);
        let expected: Value = serde_norway::from_str(
            r#"
rancher:
  environment: {EXTRA_CMDLINE: /init cc.hostname=nope rancher.password=three}
  password: three
something: "yes"
hostname: nope
"#,
        )
        .unwrap();
        assert_eq!(layer.value, expected);
    }

    #[test]
    fn empty_and_blank_lines_have_no_parameters() {
        assert_eq!(parse_cmdline(""), vec![]);
        assert_eq!(parse_cmdline("  \n\t"), vec![]);
        assert_eq!(parse_cmdline("--"), vec![]);
        assert_eq!(init_args("--"), Some(vec![]));
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        assert_eq!(
            parse_cmdline("a=\"x y z"),
            vec![param("a", Some("\"x y z"))]
        );
    }

    #[test]
    fn builds_a_layer_from_rancher_and_cc_parameters() {
        let line = "quiet rancher.network.dns.nameservers=[8.8.8.8,1.1.1.1] rancher.debug \
                    rancher.ssh.port=2222 rancher.password=\"a b\" cc.hostname=node1 \
                    rancher.state.dev=LABEL=RANCHER_STATE rancher.environment.EMPTY= \
                    rancher.sysctl.\"vm.swappiness\"=10";
        let layer = config_from_cmdline(line);
        assert_eq!(layer.problems, vec![]);
        let expected: Value = serde_norway::from_str(
            r#"
rancher:
  network: {dns: {nameservers: [8.8.8.8, 1.1.1.1]}}
  debug: true
  ssh: {port: 2222}
  password: a b
  state: {dev: LABEL=RANCHER_STATE}
  environment: {EMPTY: ""}
  sysctl: {vm.swappiness: 10}
hostname: node1
"#,
        )
        .unwrap();
        assert_eq!(layer.value, expected);
    }

    #[test]
    fn later_parameters_win() {
        let layer = config_from_cmdline("rancher.debug=false rancher.debug=true");
        let expected: Value = serde_norway::from_str("rancher: {debug: true}").unwrap();
        assert_eq!(layer.value, expected);
    }

    #[test]
    fn reports_and_skips_bad_parameters() {
        let layer = config_from_cmdline(
            "rancher.a..b=1 rancher.text={x rancher.x=1 rancher.x.y=2 rancher.ok=1 rancher.list=[x,y",
        );
        assert!(
            matches!(&layer.problems[0], CmdlineProblem::BadKey { param, .. } if param == "rancher.a..b=1")
        );
        assert!(
            matches!(&layer.problems[1], CmdlineProblem::Conflict { param, .. } if param == "rancher.x.y=2")
        );
        assert_eq!(layer.problems.len(), 2);
        // A value that is not YAML is text, as RancherOS kept it.
        let expected: Value =
            serde_norway::from_str("rancher: {text: '{x', x: 1, ok: 1, list: '[x,y'}").unwrap();
        assert_eq!(layer.value, expected);
    }

    proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,128}") {
            let _ = config_from_cmdline(&input);
        }

        #[test]
        fn every_simple_parameter_is_found(
            words in proptest::collection::vec("[a-z][a-z0-9_.]{0,8}(=[a-z0-9,]{0,8})?", 0..8),
            gaps in proptest::collection::vec("[ \t]{1,3}", 8),
        ) {
            let mut line = String::new();
            for (word, gap) in words.iter().zip(&gaps) {
                line.push_str(word);
                line.push_str(gap);
            }
            let found = parse_cmdline(&line);
            prop_assert_eq!(found.len(), words.len());
            for (param, word) in found.iter().zip(&words) {
                prop_assert!(word.starts_with(&param.key));
            }
        }
    }
}
