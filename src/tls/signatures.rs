//! The handshake-signature checks every rustls verifier in ironlet makes, written once.
//!
//! A rustls verifier (`ServerCertVerifier` or `ClientCertVerifier`) decides two things: is
//! the peer's certificate acceptable, and did the peer's key sign the handshake. The first
//! differs per use (the 10250 client CA, none for HTTPS probes). The second never does:
//! the signature is checked with the crypto provider's WebPKI algorithms, and the schemes
//! offered are those algorithms' schemes. [`HandshakeSignatures`] holds them, and
//! [`delegate_handshake_signatures!`] writes a verifier's three signature methods as calls
//! to it, so no verifier restates them.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The signature algorithms a verifier checks handshake signatures with (a provider's
/// `signature_verification_algorithms`).
#[derive(Debug, Clone, Copy)]
pub struct HandshakeSignatures(pub WebPkiSupportedAlgorithms);

impl HandshakeSignatures {
    /// The algorithms of `provider`.
    pub fn of(provider: &rustls::crypto::CryptoProvider) -> HandshakeSignatures {
        HandshakeSignatures(provider.signature_verification_algorithms)
    }

    pub fn verify_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    pub fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Inside an `impl ServerCertVerifier` or `impl ClientCertVerifier` block: the methods
/// `verify_tls12_signature`, `verify_tls13_signature` and `supported_verify_schemes`,
/// answered by the [`HandshakeSignatures`] in the field named.
macro_rules! delegate_handshake_signatures {
    ($field:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error>
        {
            self.$field.verify_tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error>
        {
            self.$field.verify_tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<::rustls::SignatureScheme> {
            self.$field.schemes()
        }
    };
}
pub(crate) use delegate_handshake_signatures;
