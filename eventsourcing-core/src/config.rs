use std::{
    collections::HashMap, fmt, ops::RangeInclusive, str::FromStr, sync::Arc, time::Duration,
};

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

    /// `var`'s value is not `expected` (say, "a yes/no value"). The reason shows the value
    /// trimmed, with control characters escaped and anything past 64 characters cut, so a
    /// stray NUL or a pasted file stays readable. Never use it for a secret's value.
    pub fn invalid(var: impl Into<String>, value: &str, expected: impl fmt::Display) -> Self {
        ConfigError::new(var, format!("`{}` is not {expected}", shown(value)))
    }

    fn render(&self) -> String {
        format!("invalid setting `{}`: {}", self.var, self.reason)
    }
}

type Source = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builder methods of a store's config builder (a struct whose `config` field holds the config
/// being built) that store their argument in the config field of the same name, as it is; each
/// with its docs. The store crates' builders share it:
///
/// ```
/// #[derive(Default)]
/// pub struct MyConfig {
///     create_table: bool,
/// }
///
/// #[derive(Default)]
/// pub struct MyConfigBuilder {
///     config: MyConfig,
/// }
///
/// impl MyConfigBuilder {
///     eventsourcing_core::config_setters! {
///         /// Whether opening the store applies the migrations.
///         create_table: bool;
///     }
/// }
///
/// assert!(MyConfigBuilder::default().create_table(true).config.create_table);
/// ```
#[macro_export]
macro_rules! config_setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $field(mut self, $field: $ty) -> Self {
            self.config.$field = $field;
            self
        }
    )*};
}

/// Settings read from environment variables, the way the Python `eventsourcing` library reads
/// them: with an application name `WIDGETS`, `WIDGETS_POSTGRES_HOST` wins over `POSTGRES_HOST`.
///
/// Several spellings of one setting can be given (`["POSTGRES_POOL_SIZE", "POOL_SIZE"]`); the
/// prefixed forms of all spellings are tried first, then the plain ones, each in the order given.
///
/// A scope ([`within`](Self::within), say a tenant shard `EU2`) adds a more specific prefix in
/// front: `WIDGETS_EU2_POSTGRES_HOST`, then `WIDGETS_POSTGRES_HOST`, then `POSTGRES_HOST`.
#[derive(Clone)]
pub struct Env {
    /// The prefixes, the most specific first.
    prefixes: Vec<String>,
    source: Source,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("prefixes", &self.prefixes)
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
            prefixes: Vec::new(),
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
            prefixes: Vec::new(),
            source: Arc::new(move |key| map.get(key).cloned()),
        }
    }

    /// Looks every setting up under `<NAME>_` first (the name is upper-cased, `-` and spaces
    /// become `_`).
    /// (Replaces any prefix and scope given before.)
    pub fn with_app_name(mut self, name: &str) -> Self {
        let prefix = prefix_of(name);
        self.prefixes = if prefix.is_empty() {
            Vec::new()
        } else {
            vec![prefix]
        };
        self
    }

    /// These settings within scope `name` (a tenant shard, say): every setting is looked up
    /// under `<PREFIX>_<NAME>_` first (`<NAME>_` without an application name), then as
    /// before. `name` is upper-cased, `-`, `.` and spaces become `_`.
    pub fn within(&self, name: &str) -> Env {
        let scope = prefix_of(name);
        let mut env = self.clone();
        if !scope.is_empty() {
            let first = match self.prefixes.first() {
                Some(p) => format!("{p}_{scope}"),
                None => scope,
            };
            env.prefixes.insert(0, first);
        }
        env
    }

    /// The most specific prefix, if any (the application's, or its scope's).
    pub fn app_prefix(&self) -> Option<&str> {
        self.prefixes.first().map(String::as_str)
    }

    /// The variables [`lookup`](Self::lookup) tries for `keys`, in its order: every prefixed
    /// spelling, the most specific prefix first, then the plain ones.
    pub fn candidates(&self, keys: &[&str]) -> Vec<String> {
        self.prefixes
            .iter()
            .flat_map(|p| keys.iter().map(move |k| format!("{p}_{k}")))
            .chain(keys.iter().map(|k| (*k).to_owned()))
            .collect()
    }

    /// How specific the variable `name` is among the spellings of `keys`: 0 for the most
    /// specific prefix, one more for each less specific one, the number of prefixes for a
    /// plain name (and for a name that is none of them).
    pub fn precedence(&self, name: &str, keys: &[&str]) -> usize {
        self.prefixes
            .iter()
            .position(|p| keys.iter().any(|k| name == format!("{p}_{k}")))
            .unwrap_or(self.prefixes.len())
    }

    /// The first variable that is set among `keys`, as `(name, value)`. Empty values count as
    /// unset.
    pub fn lookup(&self, keys: &[&str]) -> Option<(String, String)> {
        self.candidates(keys)
            .into_iter()
            .find_map(|name| match (self.source)(&name) {
                Some(v) if !v.trim().is_empty() => Some((name, v)),
                _ => None,
            })
    }

    /// A string setting.
    pub fn string(&self, keys: &[&str]) -> Option<String> {
        self.lookup(keys).map(|(_, v)| v)
    }

    /// Like [`lookup`](Self::lookup), but a value holding a NUL character is an error naming
    /// the variable: no operating system passes one, no setting can hold one, and drivers
    /// would refuse it only later (or cut the value short). The error never shows the value,
    /// so this is the lookup for secrets too.
    pub fn text(&self, keys: &[&str]) -> Result<Option<(String, String)>, ConfigError> {
        match self.lookup(keys) {
            Some((name, value)) if value.contains('\0') => {
                Err(ConfigError::new(name, "contains a NUL character"))
            }
            found => Ok(found),
        }
    }

    /// The setting among `keys`, its trimmed text read by `read` (the value, or what it should
    /// have been); `None` when unset. A malformed value is an error naming the variable and
    /// saying what was expected.
    fn read<T, E: fmt::Display>(
        &self,
        keys: &[&str],
        read: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((name, value)) = self.lookup(keys) else {
            return Ok(None);
        };
        read(value.trim())
            .map(Some)
            .map_err(|expected| ConfigError::invalid(name, &value, expected))
    }

    /// A setting parsed with `FromStr`; a malformed value is an error naming the variable.
    pub fn parse<T: FromStr>(&self, keys: &[&str]) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.read(keys, |text| {
            text.parse::<T>().map_err(|e| format!("valid: {e}"))
        })
    }

    /// A whole number within `range`; anything else (a fraction, a sign where none is allowed,
    /// a number out of range) is an error naming the variable and the range.
    pub fn integer<T>(
        &self,
        keys: &[&str],
        range: RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        self.read(keys, |text| {
            text.parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| format!("a whole number from {} to {}", range.start(), range.end()))
        })
    }

    /// A yes/no setting: `y`, `yes`, `t`, `true`, `on`, `1` and `n`, `no`, `f`, `false`, `off`,
    /// `0`, in any case.
    pub fn flag(&self, keys: &[&str]) -> Result<Option<bool>, ConfigError> {
        self.read(keys, |text| {
            parse_flag(text).ok_or("a yes/no value (use y or n)")
        })
    }

    /// A duration in seconds (fractions allowed), from 0 to [`MAX_SECONDS`] (a year: longer
    /// waits are a typo, and would overflow clocks and the databases' own timeout settings).
    pub fn seconds(&self, keys: &[&str]) -> Result<Option<Duration>, ConfigError> {
        self.seconds_up_to(keys, Duration::from_secs_f64(MAX_SECONDS))
    }

    /// A duration in seconds (fractions allowed), from 0 to `max`, for settings that end up
    /// where a year does not fit (PostgreSQL's and SQLite's timeouts are `int` milliseconds).
    pub fn seconds_up_to(
        &self,
        keys: &[&str],
        max: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        self.read(keys, |text| {
            text.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && (0.0..=max.as_secs_f64()).contains(s))
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                // The f64 comparison may let a value within rounding of `max` through.
                .map(|d| d.min(max))
                .ok_or_else(|| format!("a number of seconds from 0 to {}", max.as_secs_f64()))
        })
    }
}

/// A name as a variable prefix: trimmed, upper-cased, `-`, `.` and spaces as `_`.
fn prefix_of(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A value for an error message: trimmed, control characters escaped, at most 64 characters.
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let value = value.trim();
    let mut out = String::new();
    for c in value.chars().take(MAX_CHARS) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    let total = value.chars().count();
    if total > MAX_CHARS {
        out.push_str(&format!("… ({total} characters)"));
    }
    out
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
    fn a_scope_wins_over_its_application_which_wins_over_plain() {
        let vars = [
            ("POSTGRES_HOST", "plain"),
            ("WIDGETS_POSTGRES_HOST", "app"),
            ("WIDGETS_EU_2_POSTGRES_HOST", "shard"),
            ("POSTGRES_PORT", "5432"),
            ("EU_2_POSTGRES_DBNAME", "eu2"),
        ];
        let app = Env::from_map(vars).with_app_name("widgets");
        let shard = app.within("eu-2");
        assert_eq!(shard.string(&["POSTGRES_HOST"]).as_deref(), Some("shard"));
        assert_eq!(shard.string(&["POSTGRES_PORT"]).as_deref(), Some("5432"));
        assert_eq!(app.string(&["POSTGRES_HOST"]).as_deref(), Some("app"));
        // Under an application name, a shard's own variables carry that name too.
        assert_eq!(shard.string(&["POSTGRES_DBNAME"]), None);
        assert_eq!(
            shard.candidates(&["POSTGRES_DBNAME"]),
            [
                "WIDGETS_EU_2_POSTGRES_DBNAME",
                "WIDGETS_POSTGRES_DBNAME",
                "POSTGRES_DBNAME"
            ]
        );
        let keys = &["POSTGRES_HOST"];
        assert_eq!(shard.precedence("WIDGETS_EU_2_POSTGRES_HOST", keys), 0);
        assert_eq!(shard.precedence("WIDGETS_POSTGRES_HOST", keys), 1);
        assert_eq!(shard.precedence("POSTGRES_HOST", keys), 2);
        let plain = Env::from_map(vars).within("eu-2");
        assert_eq!(plain.string(&["POSTGRES_DBNAME"]).as_deref(), Some("eu2"));
        assert_eq!(plain.string(&["POSTGRES_HOST"]).as_deref(), Some("plain"));
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

    #[test]
    fn whole_numbers_within_a_range() {
        let env = Env::from_map([("N", " 7 "), ("F", "1.5"), ("BIG", "300"), ("NEG", "-1")]);
        assert_eq!(env.integer(&["N"], 1u32..=10).unwrap(), Some(7));
        assert_eq!(env.integer(&["UNSET"], 1u32..=10).unwrap(), None);
        for var in ["F", "BIG", "NEG"] {
            let err = env.integer(&[var], 0u32..=255).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains("from 0 to 255"), "{err}");
        }
    }

    #[test]
    fn seconds_up_to_a_limit() {
        let max = Duration::from_millis(i32::MAX as u64);
        let env = Env::from_map([("OK", "2147483.647"), ("OVER", "2147483.648")]);
        assert_eq!(env.seconds_up_to(&["OK"], max).unwrap(), Some(max));
        let err = env.seconds_up_to(&["OVER"], max).unwrap_err();
        assert!(err.to_string().contains("2147483.647"), "{err}");
    }

    #[test]
    fn text_refuses_nul_without_showing_the_value() {
        let env = Env::from_map([("PW", "sec\0ret"), ("OK", "fine")]);
        let err = env.text(&["PW"]).unwrap_err();
        assert_eq!(err.var, "PW");
        assert!(!format!("{err} {err:?}").contains("sec"), "{err:?}");
        assert_eq!(
            env.text(&["OK"]).unwrap(),
            Some(("OK".to_owned(), "fine".to_owned()))
        );
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown(" a\0b\nc "), "a\\0b\\nc");
        let long = shown(&"x".repeat(100_000));
        assert!(
            long.len() < 100 && long.ends_with("(100000 characters)"),
            "{long}"
        );
    }
}
