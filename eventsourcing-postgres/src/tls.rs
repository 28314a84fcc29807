//! TLS: the `sslmode` values and the rustls connector for each, on the `ring` provider.

use std::{fmt, fs::File, io::BufReader, path::PathBuf, str::FromStr, sync::Arc};

use eventsourcing_core::ConfigError;
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is encrypted and how the server's certificate is checked, as libpq's
/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt if the server offers it, without checking its certificate (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt; do not check the certificate, unless a root certificate is given, in
    /// which case behave like [`VerifyCa`](SslMode::VerifyCa) (as libpq does).
    Require,
    /// Always encrypt; the certificate must chain to a trusted root. The host name is not
    /// checked.
    VerifyCa,
    /// Always encrypt; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` value that is not one of the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an sslmode (use disable, prefer, require, verify-ca or verify-full)")]
pub struct UnknownSslMode(String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify_ca" => Ok(SslMode::VerifyCa),
            "verify-full" | "verify_full" => Ok(SslMode::VerifyFull),
            other => Err(UnknownSslMode(other.to_owned())),
        }
    }
}

/// Where the trusted root certificates come from for `verify-ca` / `verify-full`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// The Mozilla roots bundled by `webpki-roots` (libpq's `sslrootcert=system`).
    System,
    /// Exactly the certificates of this PEM file.
    File(PathBuf),
}

impl RootCerts {
    /// An `sslrootcert` value: `system` (any case) or a file path.
    pub(crate) fn from_setting(value: &str) -> Self {
        if value.eq_ignore_ascii_case("system") {
            RootCerts::System
        } else {
            RootCerts::File(PathBuf::from(value))
        }
    }
}

/// The connector and the tokio-postgres `sslmode` for these settings.
pub(crate) fn connector(
    ssl_mode: SslMode,
    root_certs: Option<&RootCerts>,
) -> Result<(MakeRustlsConnect, tokio_postgres::config::SslMode), ConfigError> {
    // The provider is passed explicitly rather than installed process-wide, so this crate works
    // whatever other rustls users in the same program install.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("sslmode", format!("TLS setup failed: {e}")))?;
    // libpq: with a root certificate file, `require` verifies the chain like `verify-ca`.
    let mode = match (ssl_mode, root_certs) {
        (SslMode::Require, Some(RootCerts::File(_))) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let client = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                provider,
                chain: None,
            }))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let roots = roots(root_certs)?;
            let chain = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| ConfigError::new(root_var(root_certs), format!("{e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    provider,
                    chain: Some(chain),
                }))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(root_certs)?)
            .with_no_client_auth(),
    };
    let pg_mode = match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    };
    Ok((MakeRustlsConnect::new(client), pg_mode))
}

fn root_var(root_certs: Option<&RootCerts>) -> &'static str {
    match root_certs {
        Some(RootCerts::File(_)) => "sslrootcert",
        _ => "sslmode",
    }
}

fn roots(root_certs: Option<&RootCerts>) -> Result<Arc<RootCertStore>, ConfigError> {
    match root_certs {
        None | Some(RootCerts::System) => Ok(Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })),
        Some(RootCerts::File(path)) => {
            let shown = path.display();
            let file = File::open(path).map_err(|e| {
                ConfigError::new("sslrootcert", format!("cannot read `{shown}`: {e}"))
            })?;
            let mut store = RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert = cert.map_err(|e| {
                    ConfigError::new("sslrootcert", format!("cannot read `{shown}`: {e}"))
                })?;
                store.add(cert).map_err(|e| {
                    ConfigError::new(
                        "sslrootcert",
                        format!("`{shown}` holds a certificate rustls cannot use: {e}"),
                    )
                })?;
            }
            if store.is_empty() {
                return Err(ConfigError::new(
                    "sslrootcert",
                    format!("`{shown}` holds no PEM certificate"),
                ));
            }
            Ok(Arc::new(store))
        }
    }
}

/// The two lenient checks libpq makes, with the provider's signature algorithms either way (so
/// the server must still hold the key of the certificate it sent):
/// - `sslmode=require`/`prefer` (`chain: None`): encrypt, accept any certificate;
/// - `sslmode=verify-ca` (`chain: Some`): the full webpki check, except that a certificate for
///   another name is accepted. webpki checks the chain before the name, so a name error means
///   the chain is good.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
