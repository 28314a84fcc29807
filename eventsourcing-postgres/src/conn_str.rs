//! Connection strings: libpq's `key=value` pairs and `postgres://` URLs, as
//! [`PostgresConfig`]'s [`FromStr`] and `DATABASE_URL` give them.

use std::str::FromStr;

use eventsourcing_core::ConfigError;

use crate::{
    config::{Names, PostgresConfig, DEFAULT_POOL_TIMEOUT},
    tls::{RootCerts, UnknownSslMode},
};

impl FromStr for PostgresConfig {
    type Err = ConfigError;

    /// Parses `key=value` pairs (`host=localhost user=app dbname=widgets sslmode=verify-full`)
    /// or a URL (`postgresql://app:secret@localhost:5432/widgets?sslmode=require`). Besides the
    /// keys tokio-postgres knows, `sslmode` accepts `verify-ca` and `verify-full`, and
    /// `sslrootcert` names a PEM file of trusted roots. Errors never show the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_conninfo(s, "connection string")?
            .config
            .validate(&Names::CONNECTION_STRING)
    }
}

/// A parsed connection string, and which of our own keys it gave (they win over the
/// environment's `POSTGRES_SSLMODE` / `POSTGRES_SSLROOTCERT`).
pub(crate) struct Conninfo {
    pub(crate) config: PostgresConfig,
    pub(crate) gave_sslmode: bool,
    pub(crate) gave_sslrootcert: bool,
}

/// Parses a connection string: our own keys (`sslmode` with the verify modes, `sslrootcert`)
/// are taken out, the rest goes to tokio-postgres. `var` names the source in errors; the
/// string itself never appears in them (it may hold a password).
pub(crate) fn parse_conninfo(s: &str, var: &str) -> Result<Conninfo, ConfigError> {
    let s = s.trim();
    let split = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        split_url(s, var)?
    } else {
        split_key_values(s, var)?
    };
    let mut pg = tokio_postgres::Config::from_str(&split.rest)
        .map_err(|e| ConfigError::new(var, sanitize_parse_error(&e.to_string())))?;
    let mut config = PostgresConfig::default();
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_POOL_TIMEOUT);
    }
    config.pg = pg;
    let gave_sslmode = split.sslmode.is_some();
    if let Some(mode) = split.sslmode {
        config.ssl_mode = mode
            .parse()
            .map_err(|e: UnknownSslMode| ConfigError::new(var, format!("sslmode: {e}")))?;
    }
    let gave_sslrootcert = split.sslrootcert.is_some();
    if split
        .sslrootcert
        .as_deref()
        .is_some_and(|p| p.contains('\0'))
    {
        return Err(ConfigError::new(
            var,
            "sslrootcert contains a NUL character",
        ));
    }
    config.root_certs = split.sslrootcert.as_deref().map(RootCerts::from_setting);
    refuse_nul(&config.pg, var)?;
    Ok(Conninfo {
        config,
        gave_sslmode,
        gave_sslrootcert,
    })
}

/// A NUL character (`%00` in a URL) in a value the server gets would be refused only when
/// connecting, or cut the value short. The value is never shown: it may be the password.
fn refuse_nul(pg: &tokio_postgres::Config, var: &str) -> Result<(), ConfigError> {
    let hosts_nul = pg.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => name.contains('\0'),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => path.to_string_lossy().contains('\0'),
    });
    let with_nul = [
        ("host", hosts_nul),
        ("user", pg.get_user().is_some_and(|u| u.contains('\0'))),
        (
            "password",
            pg.get_password().is_some_and(|p| p.contains(&0)),
        ),
        ("dbname", pg.get_dbname().is_some_and(|d| d.contains('\0'))),
        (
            "options",
            pg.get_options().is_some_and(|o| o.contains('\0')),
        ),
        (
            "application_name",
            pg.get_application_name().is_some_and(|a| a.contains('\0')),
        ),
    ];
    match with_nul.iter().find(|(_, nul)| *nul) {
        Some((key, _)) => Err(ConfigError::new(
            var,
            format!("malformed connection string: the {key} contains a NUL character"),
        )),
        None => Ok(()),
    }
}

/// A password may hold an unencoded `@` (`postgresql://app:p@ss@host/db`): as in the WHATWG
/// URL standard, the user info ends at the LAST `@` of the authority, so the `@`s before it are
/// percent-encoded here. Otherwise the rest of the password would be taken for the host, and
/// shown wherever the host is (`Debug`, connection errors).
fn encode_userinfo_ats(base: &str) -> String {
    let Some(scheme_end) = base.find("://").map(|i| i + 3) else {
        return base.to_owned();
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let authority = &base[scheme_end..authority_end];
    match authority.rfind('@') {
        Some(last) if authority[..last].contains('@') => format!(
            "{}{}{}",
            &base[..scheme_end],
            authority[..last].replace('@', "%40"),
            &base[scheme_end + last..]
        ),
        _ => base.to_owned(),
    }
}

/// tokio-postgres' "unexpected character ... got `x`" could show one character of a password.
fn sanitize_parse_error(message: &str) -> String {
    let message = match message.find(" but got") {
        Some(at) => &message[..at],
        None => message,
    };
    format!("malformed connection string: {message}")
}

struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_url(url: &str, var: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        // Without `=`, tokio-postgres would take the text up to the next `=` for a key and
        // show it in its "unknown option" error: it could be a pasted password.
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                var,
                "malformed connection string: a query parameter without `=`",
            ));
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| {
                    ConfigError::new(var, "malformed connection string: invalid percent-encoding")
                })
        };
        match decode(key)?.as_str() {
            "sslmode" => split.sslmode = Some(decode(value)?),
            "sslrootcert" => split.sslrootcert = Some(decode(value)?),
            _ => kept.push(pair),
        }
    }
    let base = encode_userinfo_ats(base);
    split.rest = if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(split)
}

/// libpq's `key = value` syntax: values may be single-quoted, and `\` escapes the next
/// character.
fn split_key_values(s: &str, var: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let malformed =
        |what: &str| ConfigError::new(var, format!("malformed connection string: {what}"));
    let mut kept: Vec<&str> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            // Not the word itself: a password written without its `key=` would show.
            return Err(malformed(&format!(
                "expected `=` after the word at byte {start}"
            )));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(malformed("unterminated quoted value")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        i += 1;
                        let c = next_char(s, i);
                        value.push(c);
                        i += c.len_utf8();
                    }
                    Some(_) => {
                        let c = next_char(s, i);
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                let c = next_char(s, i);
                value.push(c);
                i += c.len_utf8();
            }
        }
        match key {
            "sslmode" => split.sslmode = Some(value),
            "sslrootcert" => split.sslrootcert = Some(value),
            _ => kept.push(&s[start..i]),
        }
    }
    split.rest = kept.join(" ");
    Ok(split)
}

fn next_char(s: &str, at: usize) -> char {
    s[at..].chars().next().unwrap_or('\0')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tls::SslMode;

    #[test]
    fn key_values_keep_quoted_values_and_take_out_our_keys() {
        let config: PostgresConfig =
            r"host=db.example user=app password='its \'secret\'' dbname = widgets sslmode=verify-full sslrootcert='/etc/my ca.pem'"
                .parse()
                .unwrap();
        assert_eq!(config.host(), "db.example");
        assert_eq!(config.user(), Some("app"));
        assert_eq!(config.dbname(), Some("widgets"));
        assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            config.ssl_root_cert(),
            Some(std::path::Path::new("/etc/my ca.pem"))
        );
        assert_eq!(config.pg.get_password(), Some(&b"its 'secret'"[..]));
    }

    #[test]
    fn urls_take_out_our_keys_and_keep_the_rest() {
        let config: PostgresConfig =
            "postgresql://app:p%40ss@localhost:6543/widgets?sslmode=verify-ca&application_name=w&sslrootcert=%2Ftmp%2Fca.pem"
                .parse()
                .unwrap();
        assert_eq!(config.port(), 6543);
        assert_eq!(config.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            config.ssl_root_cert(),
            Some(std::path::Path::new("/tmp/ca.pem"))
        );
        assert_eq!(config.pg.get_application_name(), Some("w"));
        assert_eq!(config.pg.get_password(), Some(&b"p@ss"[..]));
    }

    #[test]
    fn an_unencoded_at_in_the_password_stays_in_the_password() {
        for (url, password) in [
            ("postgresql://u:p@ss@db.example/widgets", "p@ss"),
            (
                "postgresql://u:a@b@c@db.example:5433/widgets?sslmode=disable",
                "a@b@c",
            ),
            ("postgres://u:p@ss@db.example/d", "p@ss"),
        ] {
            let config: PostgresConfig = url.parse().unwrap();
            assert_eq!(config.host(), "db.example", "{url}");
            assert_eq!(config.pg.get_password(), Some(password.as_bytes()), "{url}");
            let shown = format!("{config:?}");
            assert!(
                !shown.contains(password) && !shown.contains("ss@"),
                "{shown}"
            );
        }
    }

    #[test]
    fn malformed_strings_never_echo_the_password() {
        for s in [
            "postgresql://app:hunter2secret@localhost:notaport/widgets",
            "host=x password=hunter2secret port=nope",
            "host=x password='hunter2secret",
            "host=x password hunter2secret",
            "host=x hunter2secret",
            "postgresql://app@localhost/widgets?hunter2secret&application_name=w",
            "postgresql://app:hunter2secret@localhost/widgets?hunter2secret",
            "postgresql://app%00:hunter2secret@localhost/widgets",
            "postgresql://app:hunter2secret%00@localhost/widgets",
            "host=x dbname='wid\0gets' password=hunter2secret",
        ] {
            let err = s.parse::<PostgresConfig>().unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn missing_user_is_named() {
        let err = "host=localhost dbname=x"
            .parse::<PostgresConfig>()
            .unwrap_err();
        assert!(err.var.contains("user"), "{err}");
    }
}
