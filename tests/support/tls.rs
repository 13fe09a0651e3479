//! Test certificate authority for the voice websocket (songbird hard-codes `wss://`).
//!
//! [`install_test_ca`] generates a CA and a server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`)
//! once per process, writes a PEM bundle (test CA + the system bundle, so other TLS keeps working)
//! and points `SSL_CERT_FILE` at it. The bot's songbird client uses tokio-tungstenite with
//! `rustls-tls-native-roots`, which loads roots through `rustls-native-certs`, which honours
//! `SSL_CERT_FILE` on every connect.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub struct TestCa {
    pub ca_pem: String,
    pub bundle_path: PathBuf,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
}

static CA: OnceLock<TestCa> = OnceLock::new();

/// Idempotent. Generates the CA (first call only) and sets `SSL_CERT_FILE`.
pub fn install_test_ca() {
    test_ca();
}

/// The process-wide test CA (generated on first use; also sets `SSL_CERT_FILE`).
pub fn test_ca() -> &'static TestCa {
    CA.get_or_init(|| {
        let ca = generate();
        // edition 2021: set_var is safe; it happens once, before any voice connection is made.
        std::env::set_var("SSL_CERT_FILE", &ca.bundle_path);
        ca
    })
}

fn generate() -> TestCa {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "encore emulator test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let server_key = KeyPair::generate().expect("generate server key");
    // discord.com too: the emulator's REST API is reached as `https://discord.com` (with
    // the name resolved to it) when the bot keeps serenity's rate limiter on.
    let mut sp = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "discord.com".to_string(),
    ])
    .expect("server params");
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_cert = sp
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("sign server cert");

    let ca_pem = ca_cert.pem();
    let mut bundle = ca_pem.clone();
    for sys in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(s) = std::fs::read_to_string(sys) {
            bundle.push('\n');
            bundle.push_str(&s);
            break;
        }
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(&dir);
    cleanup_stale(&dir);
    let bundle_path = dir.join(format!("encore-test-ca-{}.pem", std::process::id()));
    std::fs::write(&bundle_path, bundle).expect("write test CA bundle");

    TestCa {
        ca_pem,
        bundle_path,
        server_cert_der: server_cert.der().to_vec(),
        server_key_der: server_key.serialize_der(),
    }
}

/// Removes bundles left by test processes that no longer exist (Linux: /proc/PID).
fn cleanup_stale(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten().take(1000) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("encore-test-ca-")
            .and_then(|s| s.strip_suffix(".pem"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A TLS acceptor presenting the test server certificate.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ca = test_ca();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![ca.server_cert_der.clone().into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(ca.server_key_der.clone().into()),
    )
    .expect("server tls config");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
