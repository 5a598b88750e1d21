//! Certificate facts (pure): what a PEM certificate says (names, validity, key), whether a
//! private key belongs to it, and whether its names cover a domain. Reading the files is
//! `sys::tls`'s; deciding what to do with a verdict is `ops::tls`'s.
//!
//! The key match is done without OpenSSL: ring derives the public key from the private one
//! and it is compared with the certificate's SubjectPublicKeyInfo. ring knows RSA (2048 to
//! 8192 bits), P-256, P-384 and Ed25519; anything else (P-521, an encrypted key, DSA, …) is
//! refused with a message that says which, instead of a vague "mismatch".

use crate::domain::layout::{Layout, rooted};
use crate::error::Failure;
use ring::signature::{self, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Days before expiry from which a certificate is reported as expiring soon (doctor's
/// yellow, ADR-029).
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// Debian's snakeoil pair (package ssl-cert), the fallback when the system certificate is
/// missing (plain Debian has no /etc/ssl/private/cert.pem).
pub const SNAKEOIL_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
pub const SNAKEOIL_KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";

/// Where `tls install` keeps an instance's own certificate files (state abssctl manages).
pub fn instance_dir(layout: &Layout, instance: &str) -> PathBuf {
    layout
        .state_dir
        .join("tls")
        .join("instances")
        .join(instance)
}

/// Where the self-signed fallback for a domain lives (made when nothing else is there).
pub fn self_signed_dir(layout: &Layout, domain: &str) -> PathBuf {
    layout
        .state_dir
        .join("tls")
        .join("self-signed")
        .join(domain)
}

/// The snakeoil pair under the layout's root.
pub fn snakeoil(layout: &Layout) -> (PathBuf, PathBuf) {
    (
        rooted(&layout.root, Path::new(SNAKEOIL_CERT)),
        rooted(&layout.root, Path::new(SNAKEOIL_KEY)),
    )
}

/// File names inside [`instance_dir`]: what nginx reads (certificate then chain) and the key.
pub const FULLCHAIN_FILE: &str = "fullchain.pem";
pub const KEY_FILE: &str = "privkey.pem";
/// The certificate and the chain as given, kept beside for the operator.
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";

/// The private key types ring can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::EcdsaP256 => "ecdsa_p256",
            KeyType::EcdsaP384 => "ecdsa_p384",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

/// What one certificate says (never its PEM body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// subjectAltName DNS names (the common name when there is no SAN, as old clients did).
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub self_signed: bool,
    /// The certificate's public key, as the subjectPublicKey bit string (for the match).
    #[serde(skip)]
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        now > self.not_after
    }
}

fn bad(msg: impl Into<String>, hint: &str) -> Failure {
    Failure::validation(msg).hint(hint)
}

/// Every certificate in a PEM text, in order (the first is the server's own). Other sections
/// (a key, DH parameters, as in TurnKey's cert.pem) are skipped.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertInfo>, Failure> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let der = item.map_err(|e| {
            bad(
                format!("{what}: not a readable PEM certificate ({e})"),
                "give a PEM file with a -----BEGIN CERTIFICATE----- section",
            )
        })?;
        out.push(cert_info(der.as_ref(), what)?);
    }
    if out.is_empty() {
        return Err(bad(
            format!("{what}: no certificate in it (no -----BEGIN CERTIFICATE----- section)"),
            "give a PEM certificate file",
        ));
    }
    Ok(out)
}

fn cert_info(der: &[u8], what: &str) -> Result<CertInfo, Failure> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        bad(
            format!("{what}: the certificate does not parse ({e})"),
            "give a PEM X.509 certificate",
        )
    })?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
        );
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        self_signed: cert.subject() == cert.issuer(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

// DER object identifiers, as they appear in key files (tag 06, length, value).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// Key algorithms ring cannot check, by the bytes of their OID: named in the message.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], "ECDSA P-521"),
    (
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        "ECDSA secp256k1",
    ),
    (&[0x06, 0x03, 0x2b, 0x65, 0x71], "Ed448"),
    (&[0x06, 0x03, 0x2b, 0x65, 0x6e], "X25519"),
    (&[0x06, 0x03, 0x2b, 0x65, 0x6f], "X448"),
    (
        &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01],
        "DSA",
    ),
    (
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
        ],
        "RSA-PSS",
    ),
];

const SUPPORTED_HINT: &str = "use an RSA (2048-8192 bit), ECDSA P-256/P-384 or Ed25519 key";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A DER length.
fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// A SEC1 `EC PRIVATE KEY` as the PKCS#8 v1 document ring reads (RFC 5208: version 0, the
/// ecPublicKey algorithm with the curve, the SEC1 bytes in an OCTET STRING).
pub fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(curve_oid);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(der(0x30, &alg));
    body.extend(der(0x04, sec1));
    der(0x30, &body)
}

/// The private key in a PEM text: its type and the public key derived from it, in the form
/// of a certificate's subjectPublicKey. Encrypted and unsupported keys are validation errors
/// that name what they are.
pub fn public_key_of(pem: &[u8], what: &str) -> Result<(KeyType, Vec<u8>), Failure> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(bad(
            format!(
                "{what}: the private key is encrypted (nginx would ask for its passphrase at every start)"
            ),
            "decrypt it first: openssl pkey -in KEY -out KEY.plain (keep the result mode 0600)",
        ));
    }
    // The parser's error is not quoted: it could carry bytes of the key.
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
        bad(
            format!("{what}: no private key in it"),
            "give a PEM file with a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) section",
        )
    })?;
    let unsupported = |bytes: &[u8]| {
        UNSUPPORTED
            .iter()
            .find(|(oid, _)| contains(bytes, oid))
            .map(|(_, name)| {
                bad(
                    format!(
                        "{what}: {name} keys are not supported (abssctl checks keys with ring)"
                    ),
                    SUPPORTED_HINT,
                )
            })
    };
    let rejected = |kind: &str, e: ring::error::KeyRejected| {
        bad(
            format!("{what}: the {kind} key is not usable ({e})"),
            SUPPORTED_HINT,
        )
    };
    let rng = ring::rand::SystemRandom::new();
    match key {
        PrivateKeyDer::Pkcs1(k) => signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
            .map(|kp| (KeyType::Rsa, kp.public_key().as_ref().to_vec()))
            .map_err(|e| rejected("RSA", e)),
        PrivateKeyDer::Sec1(k) => {
            let sec1 = k.secret_sec1_der();
            if let Some(f) = unsupported(sec1) {
                return Err(f);
            }
            let (curve, alg, kt) = if contains(sec1, OID_P384) {
                (
                    OID_P384,
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                    KeyType::EcdsaP384,
                )
            } else {
                (
                    OID_P256,
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    KeyType::EcdsaP256,
                )
            };
            signature::EcdsaKeyPair::from_pkcs8(alg, &sec1_to_pkcs8(sec1, curve), &rng)
                .map(|kp| (kt, kp.public_key().as_ref().to_vec()))
                .map_err(|e| rejected("EC", e))
        }
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            if let Some(f) = unsupported(der) {
                return Err(f);
            }
            for (alg, kt) in [
                (
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    KeyType::EcdsaP256,
                ),
                (
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                    KeyType::EcdsaP384,
                ),
            ] {
                if let Ok(kp) = signature::EcdsaKeyPair::from_pkcs8(alg, der, &rng) {
                    return Ok((kt, kp.public_key().as_ref().to_vec()));
                }
            }
            if let Ok(kp) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                return Ok((KeyType::Ed25519, kp.public_key().as_ref().to_vec()));
            }
            signature::RsaKeyPair::from_pkcs8(der)
                .map(|kp| (KeyType::Rsa, kp.public_key().as_ref().to_vec()))
                .map_err(|e| rejected("PKCS#8", e))
        }
        _ => Err(bad(
            format!("{what}: unsupported private key format"),
            SUPPORTED_HINT,
        )),
    }
}

/// Does one certificate name cover `domain`? Case-insensitive, a trailing dot ignored; a
/// wildcard stands for exactly one whole left-most label (`*.example.org` covers
/// `a.example.org`, not `example.org` nor `a.b.example.org`), as browsers do (RFC 6125).
pub fn name_covers(pattern: &str, domain: &str) -> bool {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if p.is_empty() || d.is_empty() {
        return false;
    }
    match p.strip_prefix("*.") {
        Some(rest) => match d.split_once('.') {
            Some((first, tail)) => !first.is_empty() && tail == rest && rest.contains('.'),
            None => false,
        },
        None => p == d,
    }
}

/// Does any of `names` cover `domain`?
pub fn names_cover(names: &[String], domain: &str) -> bool {
    names.iter().any(|n| name_covers(n, domain))
}

/// The whole check of a certificate (and optionally its key, chain and domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub certificate: CertInfo,
    pub days_left: i64,
    pub expired: bool,
    /// The key's type and whether it belongs to the certificate (None: no key given).
    pub key_type: Option<KeyType>,
    pub key_matches: Option<bool>,
    /// The domain checked and whether the certificate's names cover it.
    pub domain: Option<String>,
    pub covers_domain: Option<bool>,
    /// Certificates after the first, from the certificate file and the chain file.
    pub chain: Vec<CertInfo>,
    /// What is wrong, one line each (empty: good to serve).
    pub problems: Vec<String>,
    /// What deserves attention but works (expiring soon, self-signed).
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The bytes to check, already read.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub cert: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub chain: Option<&'a [u8]>,
    pub domain: Option<&'a str>,
}

/// Check a certificate at `now`. Files that do not parse, and keys that cannot be checked,
/// are errors; a key that does not match, an expired certificate and names that do not
/// cover the domain are `problems` of the verdict (so it can still be shown).
pub fn verify(input: Inputs<'_>, now: OffsetDateTime) -> Result<Verdict, Failure> {
    let mut certs = parse_certs(input.cert, "certificate")?.into_iter();
    let leaf = certs.next().ok_or_else(|| {
        bad(
            "certificate: no certificate in it",
            "give a PEM certificate",
        )
    })?;
    let mut chain: Vec<CertInfo> = certs.collect();
    if let Some(c) = input.chain {
        chain.extend(parse_certs(c, "chain")?);
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let days_left = leaf.days_left(now);
    let expired = leaf.expired(now);
    if expired {
        problems.push(format!(
            "the certificate expired on {} ({} days ago)",
            rfc3339(leaf.not_after),
            -days_left
        ));
    } else if now < leaf.not_before {
        problems.push(format!(
            "the certificate is not valid before {}",
            rfc3339(leaf.not_before)
        ));
    } else if days_left < EXPIRY_WARN_DAYS {
        warnings.push(format!("the certificate expires in {days_left} days"));
    }
    let (key_type, key_matches) = match input.key {
        None => (None, None),
        Some(k) => {
            let (kt, public) = public_key_of(k, "key")?;
            let m = public == leaf.public_key;
            if !m {
                problems.push(format!(
                    "the key ({}) does not belong to the certificate (their public keys differ)",
                    kt.as_str()
                ));
            }
            (Some(kt), Some(m))
        }
    };
    let covers_domain = input.domain.map(|d| {
        let c = names_cover(&leaf.names, d);
        if !c {
            problems.push(format!(
                "the certificate's names ({}) do not cover {d}",
                if leaf.names.is_empty() {
                    "none".to_string()
                } else {
                    leaf.names.join(", ")
                }
            ));
        }
        c
    });
    if leaf.self_signed {
        warnings.push("the certificate is self-signed: browsers warn until it is trusted".into());
    }
    Ok(Verdict {
        days_left,
        expired,
        key_type,
        key_matches,
        domain: input.domain.map(str::to_string),
        covers_domain,
        chain,
        problems,
        warnings,
        certificate: leaf,
    })
}

/// RFC 3339 text of a time (the form every abssctl output uses).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The text nginx's `ssl_certificate` reads: the certificate, then the chain, each ending
/// in a newline (a chain glued to the certificate's last line would not parse).
pub fn fullchain(cert: &[u8], chain: Option<&[u8]>) -> Vec<u8> {
    let mut out = cert.to_vec();
    if let Some(c) = chain {
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(c);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
