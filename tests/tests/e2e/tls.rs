//! flagd behind a TLS proxy (nginx, as `deploy/` sets it up) whose certificate a private
//! certificate authority signed: flagctl and both library clients refuse it until told to
//! trust that authority (`--ca-cert`, `FLAGD_CA_CERT`, the system's `SSL_CERT_FILE`,
//! `ClientOptions::ca_certificates`), then work through it; a body the proxy refuses as
//! too large is a usage error that names the proxy's limit.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flagd_client::{ClientOptions, InProcessClient, RemoteClient};
use flagd_tests::{KilledOnDrop, Run, Server, TempDir, flagctl_binary, free_port};
use serde_json::json;

use crate::client::{FLAG, ctx, eventually, runtime, set_up, toggle};

/// What nginx lets through: small enough that a modest import is refused.
const PROXY_BODY_LIMIT: &str = "4k";

/// A private certificate authority, and nginx serving TLS with a certificate it signed for
/// 127.0.0.1, proxying to `backend`.
struct TlsProxy {
    // Dropped first: nginx stops before its directory is removed.
    _nginx: KilledOnDrop,
    dir: TempDir,
    url: String,
}

impl TlsProxy {
    fn start(backend: &Server) -> Self {
        let dir = TempDir::new("tls-proxy").unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        openssl(
            d,
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=flagd test CA"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ],
        );
        openssl(d, &[&["req", "-subj", "/CN=127.0.0.1"], &ec[..], &["-keyout", "server.key", "-out", "server.csr"]]);
        let extensions = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
        std::fs::write(d.join("server.ext"), extensions).unwrap();
        let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1"];
        openssl(d, &[&sign[..], &["-days", "1", "-extfile", "server.ext", "-out", "server.pem"]]);

        let port = free_port().unwrap();
        let temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("{t}_temp_path {};", d.join(t).display()))
            .join("\n");
        // One process (no master and workers), so that killing it stops nginx entirely.
        let config = format!(
            "pid {d}/nginx.pid;\nerror_log stderr;\ndaemon off;\nmaster_process off;\nevents {{}}\nhttp {{\naccess_log off;\n{temp_paths}\n\
             client_max_body_size {PROXY_BODY_LIMIT};\nserver {{\nlisten 127.0.0.1:{port} ssl;\n\
             ssl_certificate {d}/server.pem;\nssl_certificate_key {d}/server.key;\nlocation / {{\n\
             proxy_pass http://{backend};\nproxy_http_version 1.1;\nproxy_set_header Connection \"\";\n\
             proxy_buffering off;\nproxy_read_timeout 1h;\n}}\n}}\n}}\n",
            d = d.display(),
            backend = backend.address(),
        );
        std::fs::write(d.join("nginx.conf"), config).unwrap();
        let nginx = Command::new("nginx")
            .args(["-e", "stderr", "-p"])
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is needed for the TLS tests: apt-get install nginx-light");
        let nginx = KilledOnDrop::new(nginx);
        let listening = || TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(eventually(Duration::from_secs(10), listening), "nginx did not listen on {port}");
        Self { url: format!("https://127.0.0.1:{port}"), dir, _nginx: nginx }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, parts: &[&[&str]]) {
    let args: Vec<&str> = parts.concat();
    let mut command = Command::new("openssl");
    command.args(&args).current_dir(dir);
    Run::of(format!("openssl {}", args.join(" ")), &mut command, ": apt-get install openssl").ok();
}

/// flagctl through the proxy with the admin token and these extra variables.
fn flagctl(proxy: &TlsProxy, server: &Server, vars: &[(&str, &Path)], args: &[&str]) -> Run {
    let mut command = Command::new(flagctl_binary().unwrap());
    command.args(args).env("FLAGD_URL", &proxy.url).env("FLAGD_TOKEN", server.admin_token());
    command.env_remove("FLAGD_CA_CERT").env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    for (name, value) in vars {
        command.env(name, value);
    }
    Run::of(format!("flagctl {}", args.join(" ")), &mut command, "")
}

#[test]
fn flagctl_trusts_a_private_authority_it_is_given_and_names_the_option_when_not() {
    let server = Server::start().unwrap();
    set_up(&server);
    let proxy = TlsProxy::start(&server);
    let ca = proxy.ca();

    let untrusted = flagctl(&proxy, &server, &[], &["list"]).code(1);
    assert!(
        untrusted.stderr.contains("--ca-cert") && untrusted.stderr.contains("FLAGD_CA_CERT"),
        "{}",
        untrusted.stderr
    );

    let listed = flagctl(&proxy, &server, &[("FLAGD_CA_CERT", &ca)], &["list", "-o", "json"]).ok();
    assert_eq!(listed.json()["flags"][0]["key"], FLAG);
    let ca_arg = ca.to_str().unwrap();
    flagctl(&proxy, &server, &[], &["--ca-cert", ca_arg, "disable", FLAG, "--env", "production", "--reason", "tls"])
        .ok();
    assert_eq!(server.admin().config(FLAG, "production").unwrap().0["state"], "DISABLED");
    // The system's trust store, as OpenSSL-based tools read it, counts too.
    flagctl(&proxy, &server, &[("SSL_CERT_FILE", &ca)], &["get", FLAG]).ok();

    for (given, said) in [(proxy.file("server.key"), "no PEM certificate"), (proxy.file("nope.pem"), "cannot be read")]
    {
        let refused = flagctl(&proxy, &server, &[("FLAGD_CA_CERT", &given)], &["list"]).code(2);
        assert!(refused.stderr.contains(said) && refused.stderr.contains("--ca-cert"), "{}", refused.stderr);
    }
}

#[test]
fn a_body_the_proxy_refuses_as_too_large_is_a_usage_error_naming_its_limit() {
    let server = Server::start().unwrap();
    set_up(&server);
    let proxy = TlsProxy::start(&server);
    let flags: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| {
            (
                format!("imported_{i}"),
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
            )
        })
        .collect();
    let file = proxy.file("flags.json");
    std::fs::write(&file, serde_json::to_string(&json!({ "flags": flags })).unwrap()).unwrap();
    let before = server.admin().get("/api/v1/flags").unwrap().body;

    let ca = proxy.ca();
    let args = ["import", file.to_str().unwrap(), "--env", "staging"];
    let refused = flagctl(&proxy, &server, &[("FLAGD_CA_CERT", &ca)], &args).code(2);
    assert!(
        refused.stderr.contains("HTTP 413") && refused.stderr.contains("client_max_body_size"),
        "{}",
        refused.stderr
    );
    assert_eq!(server.admin().get("/api/v1/flags").unwrap().body, before, "nothing was imported");
}

#[test]
fn both_clients_work_through_the_proxy_once_they_trust_its_authority() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let proxy = TlsProxy::start(&server);
    let pem = std::fs::read(proxy.ca()).unwrap();
    let rt = runtime();

    let untrusting = RemoteClient::new(&ClientOptions::new(&proxy.url, &token)).unwrap();
    let refused = rt.block_on(untrusting.details(FLAG, &ctx(), false));
    let message = refused.error_message.unwrap_or_default();
    assert!(!refused.value && message.contains("UnknownIssuer"), "{message}");

    let options = ClientOptions::new(&proxy.url, &token).ca_certificates(pem.clone());
    let remote = RemoteClient::new(&options).unwrap();
    let served = rt.block_on(remote.details(FLAG, &ctx(), false));
    assert!(served.value && served.error_code.is_none(), "{served:?}");

    let local = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(local.bool_value(FLAG, &ctx(), false));
    // The change stream runs through the proxy too.
    let seq = toggle(&server.admin(), false);
    assert!(rt.block_on(local.wait_for_seq(seq, Duration::from_secs(5))), "the change reached the client");
    assert!(!local.bool_value(FLAG, &ctx(), true));

    let not_pem = ClientOptions::new(&proxy.url, &token).ca_certificates(b"not a certificate".to_vec());
    let error = RemoteClient::new(&not_pem).unwrap_err();
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
}
