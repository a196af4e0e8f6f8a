//! Values given on the command line (`ros config set KEY VALUE`) and the
//! kernel cmdline (`rancher.network.dns.nameservers=[8.8.8.8,1.1.1.1]`):
//! a YAML scalar or a flow list of them.
//!
//! Plain words follow the YAML 1.2 core schema for `true`/`false`/`null` and
//! decimal integers. Numbers with a leading zero (`0644`) stay strings, so
//! file modes keep their octal meaning; `yes`/`on` stay strings and the
//! schema's boolean reader accepts them where RancherOS did.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{is_not, take_while},
    character::complete::{char, multispace0},
    combinator::{all_consuming, map, value},
    multi::{fold_many0, separated_list0},
    sequence::{delimited, preceded, terminated},
};
use serde_norway::Value;

/// A value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value `{input}`: expected a scalar, a \"quoted string\" or a list like [a,b]")]
pub struct ValueError {
    /// What was given.
    pub input: String,
}

/// Parses one value. Surrounding whitespace is ignored; an empty input is
/// the empty string.
pub fn parse_value(input: &str) -> Result<Value, ValueError> {
    let trimmed = input.trim();
    let starts_structured = trimmed.starts_with(['[', '"', '\'']);
    if !starts_structured {
        return Ok(plain_scalar(trimmed));
    }
    all_consuming(delimited(multispace0, item, multispace0))
        .parse(trimmed)
        .map(|(_, value)| value)
        .map_err(|_| ValueError {
            input: input.to_owned(),
        })
}

/// A word without quotes, typed as YAML 1.2 core would type it.
pub fn plain_scalar(word: &str) -> Value {
    match word {
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        "null" | "Null" | "NULL" | "~" => Value::Null,
        _ => decimal_integer(word).unwrap_or_else(|| Value::String(word.to_owned())),
    }
}

fn decimal_integer(word: &str) -> Option<Value> {
    let digits = word.strip_prefix(['-', '+']).unwrap_or(word);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return None;
    }
    if let Ok(n) = word.parse::<i64>() {
        return Some(Value::Number(n.into()));
    }
    word.parse::<u64>().ok().map(|n| Value::Number(n.into()))
}

fn item(input: &str) -> IResult<&str, Value> {
    alt((
        flow_list,
        map(double_quoted, Value::String),
        map(single_quoted, Value::String),
    ))
    .parse(input)
}

fn list_item(input: &str) -> IResult<&str, Value> {
    delimited(
        multispace0,
        alt((
            item,
            map(is_not(",[]\"'"), |word: &str| plain_scalar(word.trim())),
        )),
        multispace0,
    )
    .parse(input)
}

fn flow_list(input: &str) -> IResult<&str, Value> {
    let (rest, items) = delimited(
        terminated(char('['), multispace0),
        separated_list0(char(','), list_item),
        preceded(multispace0, char(']')),
    )
    .parse(input)?;
    Ok((rest, Value::Sequence(items)))
}

fn double_quoted(input: &str) -> IResult<&str, String> {
    let escaped = preceded(
        char('\\'),
        alt((
            value('"', char('"')),
            value('\\', char('\\')),
            value('\n', char('n')),
            value('\t', char('t')),
        )),
    );
    let piece = alt((
        map(is_not("\"\\"), str::to_owned),
        map(escaped, String::from),
    ));
    delimited(
        char('"'),
        fold_many0(piece, String::new, |mut acc, part| {
            acc.push_str(&part);
            acc
        }),
        char('"'),
    )
    .parse(input)
}

fn single_quoted(input: &str) -> IResult<&str, String> {
    // YAML single quotes: `''` is one quote, nothing else is special.
    let (mut rest, _) = char('\'').parse(input)?;
    let mut text = String::new();
    loop {
        let (after, part) = take_while(|c| c != '\'').parse(rest)?;
        text.push_str(part);
        if let Some(after_pair) = after.strip_prefix("''") {
            text.push('\'');
            rest = after_pair;
            continue;
        }
        let (after, _) = char('\'').parse(after)?;
        return Ok((after, text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn types_scalars_like_yaml_core() {
        let cases = [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
            ("1500", Value::Number(1500.into())),
            ("-3", Value::Number((-3).into())),
            ("18446744073709551615", Value::Number(u64::MAX.into())),
            ("0", Value::Number(0.into())),
            ("0644", s("0644")),
            ("yes", s("yes")),
            ("8.8.8.8", s("8.8.8.8")),
            ("1.5", s("1.5")),
            ("", s("")),
            ("  spaced out  ", s("spaced out")),
            ("a=b=c", s("a=b=c")),
            ("\"quoted true\"", s("quoted true")),
            ("\"1500\"", s("1500")),
            ("\"esc \\\" \\\\ \\n\"", s("esc \" \\ \n")),
            ("'it''s'", s("it's")),
            ("''", s("")),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_value(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn parses_flow_lists() {
        let cases = [
            (
                "[8.8.8.8,1.1.1.1]",
                Value::Sequence(vec![s("8.8.8.8"), s("1.1.1.1")]),
            ),
            (
                "[ a , \"b,c\" , 3, true ]",
                Value::Sequence(vec![
                    s("a"),
                    s("b,c"),
                    Value::Number(3.into()),
                    Value::Bool(true),
                ]),
            ),
            ("[]", Value::Sequence(vec![])),
            (
                "[[1,2],[x]]",
                Value::Sequence(vec![
                    Value::Sequence(vec![Value::Number(1.into()), Value::Number(2.into())]),
                    Value::Sequence(vec![s("x")]),
                ]),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_value(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_unbalanced_input() {
        for input in [
            "[a,b", "\"open", "'open", "[a]]", "[a]x", "\"a\"b", "[a,[b]",
        ] {
            assert_eq!(
                parse_value(input),
                Err(ValueError {
                    input: input.to_owned()
                }),
                "{input}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,64}") {
            let _ = parse_value(&input);
        }

        #[test]
        fn plain_words_without_specials_are_never_rejected(input in "[a-zA-Z0-9./:=_-]{0,32}") {
            prop_assert!(parse_value(&input).is_ok());
        }

        #[test]
        fn lists_of_simple_words_round_trip(words in proptest::collection::vec("[a-z][a-z0-9.]{0,8}", 0..6)) {
            let text = format!("[{}]", words.join(","));
            let expected = Value::Sequence(words.iter().map(|w| plain_scalar(w)).collect());
            prop_assert_eq!(parse_value(&text), Ok(expected));
        }
    }
}
