//! The client-certificate policies rustls has no built-in verifier for: `RequestClientCert` and `RequireAnyClientCert` (a certificate asked for, not verified), and `client_allowed_sans` (a verified certificate must also name an allowed SAN), with the small DER reader that finds those names.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Go's `RequestClientCert` (`mandatory` false) and `RequireAnyClientCert` (true): the
/// certificate is not checked against any CA. The handshake signature still is, so the client
/// holds the key of the certificate it sent.
pub(crate) struct AnyClientCert {
    pub mandatory: bool,
    pub schemes: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for AnyClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyClientCert")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

/// `client_allowed_sans`: after `inner` accepted the certificate, one of its subject
/// alternative names (DNS, email, IP or URI, written as Go writes them) must be in the list,
/// compared exactly, as the toolkit does.
#[derive(Debug)]
pub(crate) struct RequireSans {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub allowed: Vec<String>,
}

impl ClientCertVerifier for RequireSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity)
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: (tag, contents, what follows). Only the short tags X.509 uses here.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject alternative names of a DER certificate as Go's `x509.Certificate` shows them
/// (DNS names, email addresses, IP addresses, URIs); `None` when it cannot be read. A
/// certificate without the extension has none.
pub(crate) fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    // id-ce-subjectAltName, 2.5.29.17.
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let (SEQUENCE, certificate, _) = tlv(cert)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = tlv(certificate)? else {
        return None;
    };
    let mut names = Vec::new();
    while !tbs.is_empty() {
        let (tag, body, rest) = tlv(tbs)?;
        tbs = rest;
        // [3] EXPLICIT Extensions: the last field of TBSCertificate.
        if tag != 0xa3 {
            continue;
        }
        let (SEQUENCE, mut exts, _) = tlv(body)? else {
            return None;
        };
        while !exts.is_empty() {
            let (_, ext, rest) = tlv(exts)?;
            exts = rest;
            let (0x06, oid, mut fields) = tlv(ext)? else {
                return None;
            };
            if oid != SAN_OID {
                continue;
            }
            // `critical` (a BOOLEAN) is optional; the value is the OCTET STRING after it.
            let value = loop {
                let (tag, v, rest) = tlv(fields)?;
                fields = rest;
                if tag == 0x04 {
                    break v;
                }
            };
            let (SEQUENCE, mut general, _) = tlv(value)? else {
                return None;
            };
            while !general.is_empty() {
                let (tag, v, rest) = tlv(general)?;
                general = rest;
                match tag {
                    // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]: IA5Strings.
                    0x81 | 0x82 | 0x86 => names.push(String::from_utf8_lossy(v).into_owned()),
                    // iPAddress [7]: 4 or 16 bytes; an IPv4-mapped IPv6 address prints dotted,
                    // as Go's net.IP does.
                    0x87 => match v.len() {
                        4 => names.push(Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string()),
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(v);
                            let ip = Ipv6Addr::from(b);
                            names.push(match ip.to_ipv4_mapped() {
                                Some(v4) => v4.to_string(),
                                None => ip.to_string(),
                            });
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn der(path: &str) -> Vec<u8> {
        let pem = std::fs::read(format!(
            "{}/src/web/testdata/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
    }

    /// The fixture was made by `openssl x509 -extfile` with
    /// `subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,email:ops@example.com,URI:spiffe://example.org/ops`.
    #[test]
    fn reads_every_kind_of_subject_alt_name_as_go_prints_it() {
        assert_eq!(
            subject_alt_names(&der("server.pem")).unwrap(),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "ops@example.com",
                "spiffe://example.org/ops"
            ]
        );
        // The CA has no SAN extension: no names, not an error.
        assert_eq!(
            subject_alt_names(&der("ca.pem")).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn truncated_or_damaged_input_is_none_or_names_never_a_panic() {
        let cert = der("server.pem");
        for cut in 0..cert.len() {
            assert_eq!(
                subject_alt_names(&cert[..cut]),
                None,
                "prefix of {cut} bytes"
            );
        }
        for i in 0..cert.len() {
            let mut bad = cert.clone();
            bad[i] ^= 0xff;
            let _ = subject_alt_names(&bad);
        }
        assert_eq!(
            subject_alt_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(subject_alt_names(&[]), None);
    }
}
