#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use std::process::Command;

/// Run openssl in `dir`; the fixtures are made fresh, never checked in.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is needed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for `name` (SAN DNS:name) with a key of `kind`, valid 90 days:
/// (certificate, key) as PEM bytes.
fn pair(dir: &Path, tag: &str, kind: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = format!("{tag}.key");
    let crt = format!("{tag}.crt");
    let mut args: Vec<&str> = vec!["req", "-x509", "-nodes", "-days", "90", "-newkey"];
    let curve;
    match kind {
        "rsa" => args.push("rsa:2048"),
        "ed25519" => args.push("ed25519"),
        c => {
            curve = format!("ec_paramgen_curve:{c}");
            args.extend(["ec", "-pkeyopt", &curve]);
        }
    }
    let subj = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    args.extend([
        "-subj", &subj, "-addext", &san, "-keyout", &key, "-out", &crt,
    ]);
    openssl(dir, &args);
    (
        std::fs::read(dir.join(crt)).unwrap(),
        std::fs::read(dir.join(key)).unwrap(),
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn check(cert: &[u8], key: &[u8], domain: &str) -> Verdict {
    verify(
        Inputs {
            cert,
            key: Some(key),
            chain: None,
            domain: Some(domain),
        },
        now(),
    )
    .unwrap()
}

#[test]
fn every_supported_key_type_matches_its_certificate() {
    let d = tempfile::tempdir().unwrap();
    for (kind, want) in [
        ("rsa", KeyType::Rsa),
        ("P-256", KeyType::EcdsaP256),
        ("P-384", KeyType::EcdsaP384),
        ("ed25519", KeyType::Ed25519),
    ] {
        let (c, k) = pair(d.path(), kind, kind, "budget.example.org");
        let v = check(&c, &k, "budget.example.org");
        assert!(v.ok(), "{kind}: {:?}", v.problems);
        assert_eq!(v.key_type, Some(want), "{kind}");
        assert_eq!(v.key_matches, Some(true));
        assert_eq!(v.covers_domain, Some(true));
        assert!((88..=90).contains(&v.days_left), "{}", v.days_left);
        assert!(v.certificate.self_signed);
        assert_eq!(v.certificate.names, ["budget.example.org"]);
    }
}

#[test]
fn traditional_pkcs1_and_sec1_keys_are_read_too() {
    let d = tempfile::tempdir().unwrap();
    let (c, _) = pair(d.path(), "r", "rsa", "a.test");
    openssl(
        d.path(),
        &["rsa", "-in", "r.key", "-traditional", "-out", "r1.key"],
    );
    let k1 = std::fs::read(d.path().join("r1.key")).unwrap();
    assert!(String::from_utf8_lossy(&k1).contains("BEGIN RSA PRIVATE KEY"));
    assert!(check(&c, &k1, "a.test").ok());
    for curve in ["P-256", "P-384"] {
        let (c, _) = pair(d.path(), "e", curve, "a.test");
        openssl(d.path(), &["ec", "-in", "e.key", "-out", "e1.key"]);
        let k1 = std::fs::read(d.path().join("e1.key")).unwrap();
        assert!(String::from_utf8_lossy(&k1).contains("BEGIN EC PRIVATE KEY"));
        let v = check(&c, &k1, "a.test");
        assert!(v.ok(), "{curve}: {:?}", v.problems);
    }
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let (c, _) = pair(d.path(), "a", "P-256", "a.test");
    let (_, other) = pair(d.path(), "b", "P-256", "a.test");
    let v = check(&c, &other, "a.test");
    assert_eq!(v.key_matches, Some(false));
    assert!(
        v.problems[0].contains("does not belong"),
        "{:?}",
        v.problems
    );
    // Another type altogether is a mismatch too, not an error.
    let (_, rsa) = pair(d.path(), "c", "rsa", "a.test");
    assert_eq!(check(&c, &rsa, "a.test").key_matches, Some(false));
}

#[test]
fn p521_and_encrypted_keys_are_named_clearly() {
    let d = tempfile::tempdir().unwrap();
    let (_, k) = pair(d.path(), "big", "P-521", "a.test");
    let e = public_key_of(&k, "key").unwrap_err();
    assert!(
        e.message.contains("ECDSA P-521 keys are not supported"),
        "{}",
        e.message
    );
    openssl(d.path(), &["ec", "-in", "big.key", "-out", "big1.key"]);
    let e = public_key_of(&std::fs::read(d.path().join("big1.key")).unwrap(), "key").unwrap_err();
    assert!(e.message.contains("P-521"), "{}", e.message);

    pair(d.path(), "s", "rsa", "a.test");
    openssl(
        d.path(),
        &[
            "pkey", "-in", "s.key", "-aes256", "-passout", "pass:x", "-out", "enc.key",
        ],
    );
    let e = public_key_of(&std::fs::read(d.path().join("enc.key")).unwrap(), "key").unwrap_err();
    assert!(e.message.contains("encrypted"), "{}", e.message);
    assert_eq!(e.kind, crate::error::Kind::Validation);
    openssl(
        d.path(),
        &[
            "rsa",
            "-in",
            "s.key",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            "enc1.key",
        ],
    );
    let e = public_key_of(&std::fs::read(d.path().join("enc1.key")).unwrap(), "key").unwrap_err();
    assert!(e.message.contains("encrypted"), "{}", e.message);
    // A certificate given as the key: no key in it.
    let (c, _) = pair(d.path(), "t", "rsa", "a.test");
    assert!(
        public_key_of(&c, "key")
            .unwrap_err()
            .message
            .contains("no private key")
    );
}

#[test]
fn an_expired_certificate_and_another_name_are_problems() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(p, &["genpkey", "-algorithm", "ed25519", "-out", "old.key"]);
    openssl(
        p,
        &[
            "req",
            "-new",
            "-key",
            "old.key",
            "-subj",
            "/CN=a.test",
            "-out",
            "old.csr",
        ],
    );
    std::fs::write(
        p.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=default\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
    )
    .unwrap();
    std::fs::write(p.join("index.txt"), "").unwrap();
    std::fs::write(p.join("serial"), "01\n").unwrap();
    openssl(
        p,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "old.key",
            "-in",
            "old.csr",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
            "-out",
            "old.crt",
        ],
    );
    let c = std::fs::read(p.join("old.crt")).unwrap();
    let k = std::fs::read(p.join("old.key")).unwrap();
    let v = check(&c, &k, "a.test");
    assert!(v.expired && v.days_left < -365, "{v:?}");
    assert_eq!(v.key_matches, Some(true));
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("expired on 2020-02-01")),
        "{:?}",
        v.problems
    );
    // No SAN: the common name counts.
    assert_eq!(v.certificate.names, ["a.test"]);

    let (c, k) = pair(p, "o", "P-256", "other.test");
    let v = check(&c, &k, "budget.example.org");
    assert_eq!(v.covers_domain, Some(false));
    assert!(
        v.problems[0].contains("(other.test) do not cover budget.example.org"),
        "{:?}",
        v.problems
    );
}

#[test]
fn the_chain_is_parsed_and_a_turnkey_cert_pem_reads_as_its_certificate() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = pair(d.path(), "leaf", "rsa", "a.test");
    let (ca, _) = pair(d.path(), "ca", "P-256", "ca.test");
    let v = verify(
        Inputs {
            cert: &c,
            key: Some(&k),
            chain: Some(&ca),
            domain: None,
        },
        now(),
    )
    .unwrap();
    assert_eq!(v.chain.len(), 1);
    assert_eq!(v.chain[0].names, ["ca.test"]);
    assert_eq!(v.covers_domain, None);
    let e = verify(
        Inputs {
            cert: &c,
            key: None,
            chain: Some(b"garbage"),
            domain: None,
        },
        now(),
    )
    .unwrap_err();
    assert!(
        e.message.starts_with("chain: no certificate"),
        "{}",
        e.message
    );
    // TurnKey's cert.pem: certificate + key + DH parameters in one file.
    let mut tk = c.clone();
    tk.extend(&k);
    tk.extend(b"-----BEGIN DH PARAMETERS-----\nMAgCAQACAQI=\n-----END DH PARAMETERS-----\n");
    let v = verify(
        Inputs {
            cert: &tk,
            key: Some(&tk),
            chain: None,
            domain: Some("a.test"),
        },
        now(),
    )
    .unwrap();
    assert!(v.ok() && v.chain.is_empty(), "{v:?}");
}

#[test]
fn wildcards_cover_one_label_only() {
    assert!(name_covers("*.example.org", "a.example.org"));
    assert!(name_covers("*.Example.org.", "A.example.org"));
    assert!(!name_covers("*.example.org", "example.org"));
    assert!(!name_covers("*.example.org", "a.b.example.org"));
    assert!(!name_covers("*.org", "example.org"));
    assert!(name_covers("budget.example.org", "BUDGET.example.org"));
    assert!(!name_covers("budget.example.org", "other.example.org"));
    assert!(!name_covers("", "a"));
    assert!(names_cover(
        &["x.test".into(), "*.example.org".into()],
        "b.example.org"
    ));
}

#[test]
fn not_a_certificate_is_refused_with_a_hint() {
    let e = parse_certs(b"hello", "certificate").unwrap_err();
    assert!(e.message.contains("no certificate"), "{}", e.message);
    assert!(e.hint.is_some());
}

#[test]
fn sec1_wrap_and_der_lengths() {
    assert_eq!(der_len(5), [5]);
    assert_eq!(der_len(200), [0x81, 200]);
    assert_eq!(der_len(300), [0x82, 1, 44]);
    let w = sec1_to_pkcs8(&[1, 2, 3], OID_P256);
    assert_eq!(w[0], 0x30);
    assert!(contains(&w, OID_EC_PUBLIC_KEY) && contains(&w, OID_P256));
    assert!(w.ends_with(&[0x04, 3, 1, 2, 3]));
}

#[test]
fn fullchain_keeps_sections_on_their_own_lines() {
    assert_eq!(fullchain(b"A", Some(b"B")), b"A\nB\n");
    assert_eq!(fullchain(b"A\n", None), b"A\n");
}
