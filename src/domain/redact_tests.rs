#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use super::*;

fn red(text: &str, f: Format) -> (String, Tally) {
    Redactor::new().redact(text, f)
}

/// Redact and check that `secret` is gone, `kept` stayed, and `kind` was counted.
fn gone(text: &str, f: Format, secret: &str, kind: &str) -> String {
    let (out, t) = red(text, f);
    assert!(!out.contains(secret), "{secret} left in: {out}");
    assert!(
        t.get(kind).copied().unwrap_or(0) >= 1,
        "{kind} not counted: {t:?} ({out})"
    );
    out
}

const RSA: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretbody\nQUJDRA==\n-----END RSA PRIVATE KEY-----\n";

#[test]
fn every_pattern_compiles() {
    for r in [
        &PEM,
        &URL_USERINFO,
        &HEADER,
        &NGINX_HEADER,
        &BEARER,
        &FLAG,
        &FLAG_ARG,
        &JSON_PAIR,
        &ESCAPED_JSON_PAIR,
        &ASSIGN,
        &YAML_LINE,
        &COLON_OR_PHRASE,
        &ENV_LINE,
        &SET_CREDENTIAL,
        &UUID_V4,
    ] {
        let _ = r.is_match("");
    }
}

#[test]
fn pem_private_keys_of_every_type_go_whole() {
    for label in [
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "DSA PRIVATE KEY",
    ] {
        let text = format!(
            "before\n-----BEGIN {label}-----\nAAAAsecretbody\n-----END {label}-----\nafter\n"
        );
        let out = gone(&text, Format::Text, "AAAAsecretbody", "private key");
        assert_eq!(out, "before\n[REDACTED private key]\nafter\n", "{label}");
        assert!(!out.contains("BEGIN"), "{out}");
    }
    // PGP's armour says "PRIVATE KEY BLOCK".
    gone(
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBsecret\n-----END PGP PRIVATE KEY BLOCK-----",
        Format::Text,
        "lQOYBsecret",
        "private key",
    );
}

#[test]
fn a_key_without_its_end_is_redacted_to_the_end() {
    let out = gone(
        "x\n-----BEGIN PRIVATE KEY-----\nMIIEvQsecret\ntruncated",
        Format::Text,
        "MIIEvQsecret",
        "private key",
    );
    assert_eq!(out, "x\n[REDACTED private key]");
}

#[test]
fn a_key_inside_a_json_string_goes() {
    let line = r#"{"msg":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQsecret\n-----END EC PRIVATE KEY-----\n","ok":1}"#;
    let out = gone(line, Format::Json, "MHcCAQsecret", "private key");
    assert!(out.contains(r#""ok":1"#), "{out}");
    assert!(holds_private_key(line));
    assert!(!holds_private_key(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    ));
}

#[test]
fn two_keys_and_a_certificate_between_them() {
    let text =
        format!("{RSA}-----BEGIN CERTIFICATE-----\nCERTBODY\n-----END CERTIFICATE-----\n{RSA}");
    let (out, t) = red(&text, Format::Text);
    assert_eq!(t["private key"], 2);
    assert!(out.contains("CERTBODY"), "a certificate is public: {out}");
    assert!(!out.contains("secretbody"));
}

#[test]
fn passwords_in_every_form() {
    for (text, f, secret) in [
        ("password: hunter2", Format::Yaml, "hunter2"),
        ("  admin_password: \"two words\"", Format::Yaml, "two words"),
        (
            "# bootstrap password: Hunter2 and more",
            Format::Systemd,
            "Hunter2 and more",
        ),
        ("password=hunter2&user=a", Format::Text, "hunter2"),
        ("PASSWORD = 'hunter2'", Format::Text, "hunter2"),
        (
            r#"{"password":"hun\"ter2","user":"a"}"#,
            Format::Json,
            "ter2",
        ),
        (r#"{"newPassword": 123456}"#, Format::Json, "123456"),
        (
            r#"{"args":["instance","create","--password","hunter2"]}"#,
            Format::Json,
            "hunter2",
        ),
        (
            "abssctl create --password hunter2 x",
            Format::Text,
            "hunter2",
        ),
        (
            "abssctl create --admin-password=hunter2 x",
            Format::Text,
            "hunter2",
        ),
        (
            "the bootstrap password is hunter2.",
            Format::Text,
            "hunter2",
        ),
        (
            r#"{"message":"{\"password\":\"hunter2\"}"}"#,
            Format::Json,
            "hunter2",
        ),
        ("ACTUAL_BOOTSTRAP_PASSWORD=hunter2", Format::Text, "hunter2"),
        ("passphrase: correct-horse", Format::Text, "correct-horse"),
    ] {
        gone(text, f, secret, "password");
    }
}

#[test]
fn json_stays_json() {
    let line = r#"{"password":"x","token":42,"nested":"{\"secret\":\"y\"}","n":1}"#;
    let (out, t) = red(line, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["password"], MARK);
    assert_eq!(v["token"], MARK);
    assert_eq!(v["n"], 1);
    let inner: serde_json::Value = serde_json::from_str(v["nested"].as_str().unwrap()).unwrap();
    assert_eq!(inner["secret"], MARK);
    assert_eq!(total(&t), 3, "{t:?}");
}

#[test]
fn tokens_and_headers() {
    for (text, f, secret, kind) in [
        (
            "Authorization: Bearer eyJhbGciOi.payload.sig",
            Format::Text,
            "eyJhbGciOi",
            "credential header",
        ),
        (
            "curl -H 'authorization: Basic dXNlcjpwYXNz'",
            Format::Text,
            "dXNlcjpwYXNz",
            "credential header",
        ),
        (
            "X-ACTUAL-TOKEN: abcdef0123456789",
            Format::Text,
            "abcdef0123456789",
            "credential header",
        ),
        (
            r#"{"headers":{"x-actual-token":"abcdef0123"}}"#,
            Format::Json,
            "abcdef0123",
            "credential header",
        ),
        (
            "Cookie: connect.sid=s%3Aabc123def",
            Format::Text,
            "abc123def",
            "credential header",
        ),
        (
            "Set-Cookie: session=abc123def; Path=/",
            Format::Text,
            "abc123def",
            "credential header",
        ),
        (
            "sent bearer abcdefghij to the server",
            Format::Text,
            "abcdefghij",
            "token",
        ),
        (
            "GET /sync?token=abcdef123&x=1",
            Format::Text,
            "abcdef123",
            "token",
        ),
        (
            r#"{"token":"abcdef123"}"#,
            Format::Json,
            "abcdef123",
            "token",
        ),
        ("token: abcdef123", Format::Text, "abcdef123", "token"),
        (
            "sessionId=abcdef123",
            Format::Text,
            "abcdef123",
            "session id",
        ),
        (
            r#"{"session_id":"abcdef123"}"#,
            Format::Json,
            "abcdef123",
            "session id",
        ),
        (
            "client_secret=abcdef123",
            Format::Text,
            "abcdef123",
            "secret",
        ),
        ("api-key: abcdef123", Format::Text, "abcdef123", "secret"),
        (
            "registry https://me:s3cr3t@npm.example/ ok",
            Format::Text,
            "s3cr3t",
            "url credentials",
        ),
    ] {
        gone(text, f, secret, kind);
    }
}

#[test]
fn nginx_credential_headers() {
    let conf = "    proxy_set_header Authorization \"Basic dXNlcjpwYXNz\";\n    proxy_set_header Host $host;\n";
    let out = gone(conf, Format::Nginx, "dXNlcjpwYXNz", "credential header");
    assert!(out.contains("proxy_set_header Host $host;"), "{out}");
    assert!(
        out.contains("proxy_set_header Authorization [REDACTED];"),
        "{out}"
    );
}

#[test]
fn actual_tokens_become_stable_pseudonyms_and_op_ids_stay() {
    let token = "3f0c2a8e-9b1d-4c7e-8f2a-1b3c5d7e9f01";
    let other = "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee";
    let op_id = "019ae4b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b"; // v7
    let mut r = Redactor::new();
    let (a, t) = r.redact(
        &format!("fileId {other} by {token}, op {op_id}"),
        Format::Text,
    );
    let (b, _) = r.redact(&format!("again {token}"), Format::Text);
    assert_eq!(a, format!("fileId [uuid-1] by [uuid-2], op {op_id}"));
    assert_eq!(b, "again [uuid-2]", "the same token, the same pseudonym");
    assert_eq!(t["uuid (possible session token)"], 2);
}

#[test]
fn environment_values_go_except_the_allowlist() {
    let dropin = "[Service]\nEnvironment=ACTUAL_PORT=5000\nEnvironment=ACTUAL_HOSTNAME=127.0.0.1\nEnvironment=ACTUAL_BOOTSTRAP_PASSWORD=hunter2\nEnvironment=\"ACTUAL_OPENID_CLIENT_SECRET=abc def\" FOO=bar ACTUAL_PORT=5001\nEnvironment='HTTP_PROXY=http://u:p@proxy'\nSetCredential=pw:hunter3\nEnvironment=\nUser=budget\n";
    let (out, t) = red(dropin, Format::Systemd);
    for s in ["hunter2", "abc def", "bar", "u:p", "hunter3"] {
        assert!(!out.contains(s), "{s}: {out}");
    }
    assert!(out.contains("Environment=ACTUAL_PORT=5000\n"), "{out}");
    assert!(
        out.contains("Environment=ACTUAL_HOSTNAME=127.0.0.1\n"),
        "{out}"
    );
    assert!(
        out.contains("Environment=ACTUAL_BOOTSTRAP_PASSWORD=[REDACTED]\n"),
        "{out}"
    );
    assert!(
        out.contains("Environment=\"ACTUAL_OPENID_CLIENT_SECRET=[REDACTED]\" FOO=[REDACTED] ACTUAL_PORT=5001\n"),
        "{out}"
    );
    assert!(
        out.contains("Environment='HTTP_PROXY=[REDACTED]'\n"),
        "{out}"
    );
    assert!(out.contains("SetCredential=pw:[REDACTED]\n"), "{out}");
    assert!(out.contains("Environment=\nUser=budget\n"), "{out}");
    assert_eq!(t["environment value"], 4, "{t:?}");
    assert_eq!(t["secret"], 1, "{t:?}");
    assert_eq!(total(&t), 5, "each value counted once: {t:?}");
}

#[test]
fn the_rendered_dropin_and_vhost_pass_unchanged() {
    let dropin = "# Settings of Actual instance 'budget', rendered by abssctl. Do not edit: abssctl\n[Service]\nUser=actual-budget\nEnvironment=ACTUAL_PORT=5000\nEnvironment=ACTUAL_HOSTNAME=127.0.0.1\nEnvironment=ACTUAL_DATA_DIR=/srv/budget/data\nEnvironment=ACTUAL_TRUSTED_PROXIES=127.0.0.1/32,::1/128\nReadWritePaths=/srv/budget/data\nExecStart=\nExecStart=/srv/app/runtimes/node-v22.23.3/bin/node /srv/app/v26.9.0/node_modules/@actual-app/sync-server/build/app.js\n";
    let (out, t) = red(dropin, Format::Systemd);
    assert_eq!(out, dropin);
    assert!(t.is_empty(), "{t:?}");
    let vhost = "server {\n    listen 443 ssl http2;\n    server_name budget.example.org;\n    ssl_certificate /etc/ssl/private/cert.pem;\n    ssl_certificate_key /etc/ssl/private/cert.key;\n    proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    error_page 502 504 =503 @restarting;\n}\n";
    let (out, t) = red(vhost, Format::Nginx);
    assert_eq!(out, vhost);
    assert!(t.is_empty(), "{t:?}");
}

#[test]
fn harmless_text_passes_unchanged() {
    let texts = [
        (
            "schema_version: 2\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    tls_key: /var/lib/abssctl/tls/instances/budget/privkey.pem\n    notes: \"\"\n",
            Format::Yaml,
        ),
        (
            "npm_registry: https://npm.example.org/\ntls:\n  system:\n    cert: /etc/ssl/private/cert.pem\n    key: /etc/ssl/private/cert.key\n",
            Format::Yaml,
        ),
        (
            r#"{"schema_version":1,"op_id":"019ae4b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b","command":"instance create","args":["instance","create","budget","--password-file","<redacted>"],"result":{"effects_kept":["server_password"]},"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#,
            Format::Json,
        ),
        (
            "2026-12-03T17:00:00+00:00 box node[812]: Listening on :::5000...\n2026-12-03T17:00:01+00:00 box systemd[1]: Started actual-sync@budget.service - Actual session server.\n",
            Format::Text,
        ),
        ("Authorization failed for the request", Format::Text),
        ("the password reset needs the old password", Format::Text),
    ];
    for (text, f) in texts {
        let (out, t) = red(text, f);
        assert_eq!(out, text, "{f:?}");
        assert!(t.is_empty(), "{t:?} in {text}");
    }
}

#[test]
fn redacting_twice_changes_nothing_more() {
    let text = "password: hunter2\nAuthorization: Bearer abcdefgh\n--token abcdef1234\n";
    let (once, t1) = red(text, Format::Yaml);
    let (twice, t2) = red(&once, Format::Yaml);
    assert_eq!(once, twice);
    assert!(total(&t1) >= 3, "{t1:?}");
    assert!(t2.is_empty(), "{t2:?}");
}

#[test]
fn key_files_are_told_from_files_that_quote_a_key() {
    assert!(is_key_file(RSA));
    assert!(is_key_file(&format!("\n# comment\n{RSA}")));
    assert!(is_key_file("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"));
    assert!(!is_key_file(&format!("[Service]\n{RSA}")));
    assert!(!is_key_file(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ));
    assert!(!is_key_file(""));
}

proptest::proptest! {
    /// Whatever a password holds (no whitespace, quote or backslash: those end a value in
    /// every format), no form of it survives.
    #[test]
    fn no_generated_secret_survives(secret in "[A-Za-z0-9!#$%&()*+,./:;<=>?@^_{|}~\\[\\]-]{8,24}") {
        let forms = [
            (format!("password={secret}"), Format::Text),
            (format!("x token: {secret} y"), Format::Text),
            (format!("the password is {secret}"), Format::Text),
            (format!("{{\"password\":\"{secret}\"}}"), Format::Json),
            (format!("{{\"args\":[\"--password\",\"{secret}\",\"x\"]}}"), Format::Json),
            (format!("abssctl x --token {secret} y"), Format::Text),
            (format!("abssctl x --token={secret} y"), Format::Text),
            (format!("Authorization: Bearer {secret}"), Format::Text),
            (format!("Cookie: sid={secret}"), Format::Text),
            (format!("Environment=ACTUAL_X={secret}"), Format::Systemd),
            (format!("Environment=\"ACTUAL_X={secret}\""), Format::Systemd),
            (format!("# bootstrap password: {secret}"), Format::Systemd),
            (format!("  admin_password: {secret}"), Format::Yaml),
        ];
        for (text, f) in forms {
            let (out, _) = red(&text, f);
            proptest::prop_assert!(!out.contains(&secret), "{} -> {}", text, out);
        }
    }
}
