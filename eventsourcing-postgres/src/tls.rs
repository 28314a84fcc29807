//! The rustls connector for each `sslmode`, on the `ring` provider.

use std::{fs::File, io::BufReader, sync::Arc};

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

use crate::config::{PostgresConfig, RootCerts, SslMode};

/// The connector and the tokio-postgres `sslmode` for these settings.
pub(crate) fn connector(
    config: &PostgresConfig,
) -> Result<(MakeRustlsConnect, tokio_postgres::config::SslMode), ConfigError> {
    // The provider is passed explicitly rather than installed process-wide, so this crate works
    // whatever other rustls users in the same program install.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("sslmode", format!("TLS setup failed: {e}")))?;
    // libpq: with a root certificate file, `require` verifies the chain like `verify-ca`.
    let mode = match (config.ssl_mode, &config.root_certs) {
        (SslMode::Require, Some(RootCerts::File(_))) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let client = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let roots = roots(config)?;
            let inner = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| ConfigError::new(root_var(config), format!("{e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(config)?)
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

fn root_var(config: &PostgresConfig) -> &'static str {
    match config.root_certs {
        Some(RootCerts::File(_)) => "sslrootcert",
        _ => "sslmode",
    }
}

fn roots(config: &PostgresConfig) -> Result<Arc<RootCertStore>, ConfigError> {
    match &config.root_certs {
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

/// `sslmode=require`/`prefer`: encrypt, accept any certificate (as libpq does), but still check
/// that the server holds the key of the certificate it sent, with the provider's algorithms.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full webpki check, except that a certificate for another name is
/// accepted. webpki checks the chain before the name, so a name error means the chain is good.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
