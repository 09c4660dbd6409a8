//! `${NAME}` substitution for configuration files, so that secrets (keys,
//! RPC URLs with tokens) stay in the environment rather than in the file.

/// Why a string could not be substituted. `at` names where the string is
/// (e.g. `chains[0].rpc_urls[1]`), for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvSubstError {
    /// `${NAME}` names a variable that is not set.
    #[error("environment variable {name} (used at {at}) is not set")]
    Missing {
        /// The variable.
        name: String,
        /// Where it is used.
        at: String,
    },
    /// A malformed reference (`${` without `}`, or an invalid name).
    #[error("bad ${{...}} reference at {at}: {detail}")]
    BadReference {
        /// Where it is.
        at: String,
        /// What is wrong.
        detail: String,
    },
}

/// Replaces every `${NAME}` in `text` with `env(NAME)`; `$${` is a literal
/// `${`, and a `$` not followed by `{` stays as it is. Names are
/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn substitute(
    text: &str,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, EnvSubstError> {
    let bad = |detail: String| EnvSubstError::BadReference {
        at: at.to_owned(),
        detail,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| bad("missing closing }".into()))?;
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(bad(format!(
                    "{name:?} is not a valid environment variable name"
                )));
            }
            let value = env(name).ok_or_else(|| EnvSubstError::Missing {
                name: name.to_owned(),
                at: at.to_owned(),
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes every string in a parsed TOML value, in place; `at` names
/// the value (`chains[0].rpc_urls[1]` in errors). Keys are left alone.
#[cfg(feature = "toml")]
pub fn substitute_toml(
    value: &mut toml::Value,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), EnvSubstError> {
    match value {
        toml::Value::String(text) => *text = substitute(text, at, env)?,
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_toml(item, &format!("{at}[{index}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                substitute_toml(item, &format!("{at}.{key}"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "secret".to_owned())
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(substitute("a ${KEY} b", "x", &env).unwrap(), "a secret b");
        assert_eq!(substitute("$${KEY} $5", "x", &env).unwrap(), "${KEY} $5");
        assert_eq!(
            substitute("${NOPE}", "chains[0]", &env),
            Err(EnvSubstError::Missing {
                name: "NOPE".into(),
                at: "chains[0]".into()
            })
        );
        assert!(matches!(
            substitute("${KEY", "x", &env),
            Err(EnvSubstError::BadReference { .. })
        ));
        assert!(matches!(
            substitute("${1A}", "x", &env),
            Err(EnvSubstError::BadReference { .. })
        ));
        assert!(matches!(
            substitute("${}", "x", &env),
            Err(EnvSubstError::BadReference { .. })
        ));
    }
}
