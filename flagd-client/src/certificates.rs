//! Certificate authorities trusted besides the system's and the built-in public ones: the
//! private one that signed the certificate of flagd-server's TLS proxy, say.

/// The certificates of a PEM bundle (one or more `-----BEGIN CERTIFICATE-----` blocks), for
/// an HTTP client to trust as roots. flagctl reads `--ca-cert` with it too.
pub fn root_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, BadCertificates> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(BadCertificates::NotPem)?;
    if certificates.is_empty() {
        return Err(BadCertificates::NoCertificate);
    }
    Ok(certificates)
}

/// Why a PEM bundle gives no certificate to trust ([`root_certificates`]), worded to follow
/// what was given (a file's name, the option).
#[derive(Debug, thiserror::Error)]
pub enum BadCertificates {
    /// Nothing in it is a PEM certificate (a private key alone, a DER file, another file).
    #[error("holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)")]
    NoCertificate,
    /// A PEM block that cannot be read.
    #[error("is not a readable PEM bundle ({0})")]
    NotPem(reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_saying_so() {
        for text in ["", "not a certificate", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] {
            let refused = root_certificates(text.as_bytes()).unwrap_err();
            assert!(refused.to_string().contains("no PEM certificate"), "{text}: {refused}");
        }
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(root_certificates(broken.as_bytes()).is_err());
    }
}
