//! The template engine, set up so that a profile value can never become
//! code: templates whose name ends in `.sh` (or `.sh.j2`) shell-quote every
//! value they print, templates ending in `.yaml` print every value as a YAML
//! (JSON) scalar, and undefined variables are errors.

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

/// The auto-escape name for shell templates.
const SHELL: &str = "shell";

/// Which escaping a template gets, from its file name.
pub fn escape_for(name: &str) -> AutoEscape {
    let name = name.strip_suffix(".j2").unwrap_or(name);
    let ext = name.rsplit('.').next().unwrap_or("");
    match ext {
        "sh" | "bash" => AutoEscape::Custom(SHELL.into()),
        "yaml" | "yml" | "json" => AutoEscape::Json,
        _ => AutoEscape::None,
    }
}

/// A template environment with bootforge's rules.
pub fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    // minijinja keeps what names an undefined value only in debug mode,
    // which it turns on for debug builds alone: the release binary users
    // run must word its errors as the tests see them.
    env.set_debug(true);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(escape_for);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), AutoEscape::Custom(name) if name == SHELL) {
            let text = shell_format(state, value)?;
            out.write_str(&text).map_err(Error::from)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("shell_quote", |value: Value| -> Result<String, Error> {
        shell_words(&value)
    });
    // `{% if path is under(mount_point) %}`: the same rule validation uses.
    env.add_test("under", |path: &str, dir: &str| {
        crate::compile::paths::is_under(path, dir)
    });
    env
}

fn shell_format(state: &State, value: &Value) -> Result<String, Error> {
    if value.is_safe() {
        return Ok(value.to_string());
    }
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("undefined value printed in shell template {}", state.name()),
        ));
    }
    shell_words(value)
}

/// A value as shell words: strings quoted, lists as one quoted word per item.
fn shell_words(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::Number | ValueKind::Bool => Ok(value.to_string()),
        ValueKind::String => Ok(quote(value.as_str().unwrap_or_default())),
        ValueKind::Seq => {
            let mut words = Vec::new();
            for item in value.try_iter()? {
                words.push(shell_words(&item)?);
            }
            Ok(words.join(" "))
        }
        ValueKind::None => Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value that is not set (none) cannot be printed into a shell script; test it with `{% if x is not none %}` first",
        )),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("a {kind} cannot be printed into a shell script; print its fields one by one"),
        )),
    }
}

/// Quotes `s` as one shell word. Words made only of characters no shell
/// treats specially stay bare, everything else goes in single quotes.
///
/// ```
/// assert_eq!(bootforge::shell_quote("/home/ec2-user"), "/home/ec2-user");
/// assert_eq!(bootforge::shell_quote("it's $(x)"), r#"'it'\''s $(x)'"#);
/// assert_eq!(bootforge::shell_quote(""), "''");
/// ```
pub fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:@%+,-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// One line of context for a template error: the line and its message.
pub fn describe(err: &Error) -> (Option<usize>, String) {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        let _ = write!(message, ": {detail}");
    }
    (err.line(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(name: &str, src: &str, ctx: Value) -> Result<String, Error> {
        let mut env = environment();
        env.add_template_owned(name.to_string(), src.to_string())?;
        env.get_template(name)?.render(ctx)
    }

    #[test]
    fn shell_templates_quote_every_value() {
        let hostile = "x'; rm -rf / #$(id)`id`\n*";
        let out = render("a.sh", "echo {{ v }}\n", context! { v => hostile }).unwrap();
        assert_eq!(out, "echo 'x'\\''; rm -rf / #$(id)`id`\n*'\n");
        let out = render(
            "a.sh.j2",
            "run {{ args }} {{ n }}",
            context! { args => vec!["a b", "c"], n => 3 },
        )
        .unwrap();
        assert_eq!(out, "run 'a b' c 3");
    }

    #[test]
    fn trusted_values_are_marked_explicitly() {
        let out = render("a.sh", "{{ v | safe }}", context! { v => "$HOME" }).unwrap();
        assert_eq!(out, "$HOME");
    }

    #[test]
    fn yaml_templates_print_scalars_as_json() {
        let out = render("c.yaml", "k: {{ v }}", context! { v => "a: b\n- c" }).unwrap();
        assert_eq!(out, "k: \"a: b\\n- c\"");
        let out = render(
            "c.yaml",
            "k: {{ 'sh -c ' ~ (v | shell_quote) }}",
            context! { v => "it's" },
        )
        .unwrap();
        assert_eq!(out, "k: \"sh -c 'it'\\\\''s'\"");
    }

    #[test]
    fn undefined_is_an_error() {
        let err = render("a.sh", "{{ nope }}", context! {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
        let err = render(
            "a.txt",
            "{{ job.nope }}",
            context! { job => context!{ id => 1 } },
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn maps_and_none_do_not_reach_a_shell() {
        assert!(render("a.sh", "{{ m }}", context! { m => context!{ a => 1 } }).is_err());
        assert!(render("a.sh", "{{ n }}", context! { n => Value::from(()) }).is_err());
    }
}
