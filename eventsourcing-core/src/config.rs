use std::{collections::HashMap, fmt, str::FromStr, sync::Arc, time::Duration};

/// A setting that is missing or malformed. Names the variable; never shows a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The variable (as looked up, including any application prefix).
    pub var: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A setting error for `var`.
    pub fn new(var: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            var: var.into(),
            reason: reason.into(),
        }
    }

    fn render(&self) -> String {
        format!("invalid setting `{}`: {}", self.var, self.reason)
    }
}

type Source = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Settings read from environment variables, the way the Python `eventsourcing` library reads
/// them: with an application name `WIDGETS`, `WIDGETS_POSTGRES_HOST` wins over `POSTGRES_HOST`.
///
/// Several spellings of one setting can be given (`["POSTGRES_POOL_SIZE", "POOL_SIZE"]`); the
/// prefixed forms of all spellings are tried first, then the plain ones, each in the order given.
#[derive(Clone)]
pub struct Env {
    prefix: Option<String>,
    source: Source,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::from_process()
    }
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Env {
            prefix: None,
            source: Arc::new(|key| std::env::var(key).ok()),
        }
    }

    /// Reads from a fixed map (for tests, or settings from a file).
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env {
            prefix: None,
            source: Arc::new(move |key| map.get(key).cloned()),
        }
    }

    /// Looks every setting up under `<NAME>_` first (the name is upper-cased, `-` and spaces
    /// become `_`).
    pub fn with_app_name(mut self, name: &str) -> Self {
        let prefix: String = name
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' | '.' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// The application prefix, if any.
    pub fn app_prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The first variable that is set among `keys`, as `(name, value)`. Empty values count as
    /// unset.
    pub fn lookup(&self, keys: &[&str]) -> Option<(String, String)> {
        let prefixed = self
            .prefix
            .iter()
            .flat_map(|p| keys.iter().map(move |k| format!("{p}_{k}")));
        let plain = keys.iter().map(|k| (*k).to_owned());
        prefixed
            .chain(plain)
            .find_map(|name| match (self.source)(&name) {
                Some(v) if !v.trim().is_empty() => Some((name, v)),
                _ => None,
            })
    }

    /// A string setting.
    pub fn string(&self, keys: &[&str]) -> Option<String> {
        self.lookup(keys).map(|(_, v)| v)
    }

    /// A setting parsed with `FromStr`; a malformed value is an error naming the variable.
    pub fn parse<T: FromStr>(&self, keys: &[&str]) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.lookup(keys) {
            None => Ok(None),
            Some((name, value)) => value.trim().parse::<T>().map(Some).map_err(|e| {
                ConfigError::new(name, format!("`{}` is not valid: {e}", value.trim()))
            }),
        }
    }

    /// A yes/no setting: `y`, `yes`, `t`, `true`, `on`, `1` and `n`, `no`, `f`, `false`, `off`,
    /// `0`, in any case.
    pub fn flag(&self, keys: &[&str]) -> Result<Option<bool>, ConfigError> {
        match self.lookup(keys) {
            None => Ok(None),
            Some((name, value)) => parse_flag(&value).map(Some).ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("`{}` is not a yes/no value (use y or n)", value.trim()),
                )
            }),
        }
    }

    /// A duration in seconds (fractions allowed), from 0 to [`MAX_SECONDS`] (a year: longer
    /// waits are a typo, and would overflow clocks and the databases' own timeout settings).
    pub fn seconds(&self, keys: &[&str]) -> Result<Option<Duration>, ConfigError> {
        match self.lookup(keys) {
            None => Ok(None),
            Some((name, value)) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && (0.0..=MAX_SECONDS).contains(s))
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::new(
                        name,
                        format!(
                            "`{}` is not a number of seconds from 0 to {MAX_SECONDS}",
                            value.trim()
                        ),
                    )
                }),
        }
    }
}

/// The longest duration a setting in seconds may give: 365 days.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixed_name_wins_over_plain_and_aliases_keep_order() {
        let env = Env::from_map([
            ("POSTGRES_HOST", "plain"),
            ("WIDGETS_POSTGRES_HOST", "prefixed"),
            ("POOL_SIZE", "7"),
            ("POSTGRES_POOL_SIZE", "9"),
        ])
        .with_app_name("widgets");
        assert_eq!(env.string(&["POSTGRES_HOST"]).as_deref(), Some("prefixed"));
        assert_eq!(
            env.parse::<u32>(&["POSTGRES_POOL_SIZE", "POOL_SIZE"])
                .unwrap(),
            Some(9)
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let env = Env::from_map([("POSTGRES_PORT", "54x"), ("CREATE_TABLE", "maybe")]);
        let err = env.parse::<u16>(&["POSTGRES_PORT"]).unwrap_err();
        assert_eq!(err.var, "POSTGRES_PORT");
        assert!(err.to_string().contains("`54x`"), "{err}");
        let err = env.flag(&["CREATE_TABLE"]).unwrap_err();
        assert!(err.to_string().contains("CREATE_TABLE"), "{err}");
    }

    #[test]
    fn flags_and_seconds() {
        let env = Env::from_map([("A", "Yes"), ("B", "n"), ("T", "2.5"), ("E", " ")]);
        assert_eq!(env.flag(&["A"]).unwrap(), Some(true));
        assert_eq!(env.flag(&["B"]).unwrap(), Some(false));
        assert_eq!(env.flag(&["E"]).unwrap(), None);
        assert_eq!(
            env.seconds(&["T"]).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert!(env.seconds(&["A"]).is_err());
    }

    #[test]
    fn out_of_range_seconds_are_errors_naming_the_variable_not_panics() {
        for bad in [
            "1e20", "1e300", "inf", "NaN", "-1", "-0.5", "31536001", "1e9",
        ] {
            let env = Env::from_map([("POOL_TIMEOUT", bad)]);
            let err = env.seconds(&["POOL_TIMEOUT"]).unwrap_err().to_string();
            assert!(
                err.contains("POOL_TIMEOUT") && err.contains(bad),
                "{bad}: {err}"
            );
        }
        let env = Env::from_map([("T", "31536000")]);
        assert_eq!(
            env.seconds(&["T"]).unwrap(),
            Some(Duration::from_secs(31_536_000))
        );
    }
}
