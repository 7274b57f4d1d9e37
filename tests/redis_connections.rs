//! Connecting to Redis on the "redis" handler: an unreachable server failing fast and naming the
//! URL, advice of its own for each kind of connection failure, and TLS and mutual TLS to a real
//! `redis-server`. Needs the `redis` feature (on by default).
#![cfg(feature = "redis")]

#[cfg(feature = "docker")]
mod common;
mod redis_common;

use std::time::{Duration, Instant};

use graflow::redis::{RedisError, RedisHandler, RedisOptions, TlsOptions};
use graflow::{RunOptions, WorkflowEngine};
use redis_common::{CustomServer, sample, spawn_worker, total};

graflow::enable_test_runner!();

#[test]
fn unreachable_redis_fails_fast_naming_the_url() {
    let started = Instant::now();
    let error =
        RedisHandler::connect("redis://127.0.0.1:1/0").expect_err("nothing listens on port 1");
    assert!(matches!(error, RedisError::Unreachable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("redis://127.0.0.1:1/0"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let error = RedisHandler::connect("http://nope").expect_err("not a redis URL");
    assert!(error.to_string().contains("http://nope"), "{error}");

    let runtime = graflow::tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(
            graflow::worker::Worker::new("redis://127.0.0.1:1/0").run_until(std::future::pending()),
        )
        .expect_err("a worker fails fast too");
    assert!(
        error.to_string().contains("redis://127.0.0.1:1/0"),
        "{error}"
    );
}

#[test]
fn each_connection_failure_gets_its_own_advice() {
    let Some(server) = CustomServer::start("--port", &["--requirepass", "s3cret-pass"]) else {
        return;
    };
    let port = server.port;
    let error = RedisHandler::connect(&format!("redis://:wrong-pass@127.0.0.1:{port}/0"))
        .expect_err("a wrong password");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Credentials { .. }), "{error:?}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains(&format!("redis://:***@127.0.0.1:{port}/0")),
        "{text}"
    );
    assert!(
        !text.contains("wrong-pass"),
        "the password is never shown: {text}"
    );
    assert!(!text.contains("start redis-server"), "{text}");
    RedisHandler::connect(&format!("redis://:s3cret-pass@127.0.0.1:{port}/0"))
        .expect("the right password");
    let error = RedisHandler::connect(&format!("rediss://:s3cret-pass@127.0.0.1:{port}/0"))
        .expect_err("TLS to a server that does not speak it");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Tls { .. }), "{error:?}");
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(!text.contains("s3cret-pass"), "{text}");
    drop(server);
    let error = RedisHandler::connect(&format!("redis://127.0.0.1:{port}/0"))
        .expect_err("nothing listens there now");
    assert!(matches!(error, RedisError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("start redis-server"), "{error}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signs, and another CA,
/// made with `openssl`; `None` (the test skipped) without it.
struct Certs {
    dir: std::path::PathBuf,
}

impl Certs {
    fn make() -> Option<Certs> {
        if !redis_common::available("openssl", "apt-get install openssl") {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "graflow-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=graflow test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
                ),
            )
            .unwrap();
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=graflow test {name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Some(Certs { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn server(&self, auth_clients: &str) -> Option<CustomServer> {
        CustomServer::start(
            "--tls-port",
            &[
                "--port",
                "0",
                "--tls-cert-file",
                &self.path("server.crt"),
                "--tls-key-file",
                &self.path("server.key"),
                "--tls-ca-cert-file",
                &self.path("ca.crt"),
                "--tls-auth-clients",
                auth_clients,
            ],
        )
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `total` task through a TLS connection, on a worker configured by the environment.
fn total_over_tls(url: &str, tls: TlsOptions, worker_env: &[(&str, &str)], name: &str) {
    let worker = spawn_worker(url, name, worker_env);
    worker.wait_started();
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "redis",
        RedisHandler::connect_with(url, RedisOptions::new().with_tls(tls))
            .expect("connect over TLS"),
    );
    let mut wf = graflow::Workflow::builder("tls");
    wf.add(total::task().with_input("sample", sample("tls")));
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", worker.log()));
    assert!((report.result::<f64>("total").unwrap() - 3.0).abs() < 1e-9);
}

#[test]
fn tls_and_mutual_tls_to_redis() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = certs.server("no") else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let ca = certs.path("ca.crt");
    total_over_tls(
        &url,
        TlsOptions::new().with_ca_cert(&ca),
        &[("GRAFLOW_REDIS_CA_CERT", ca.as_str())],
        "w-tls",
    );
    // A server whose certificate the CA given does not sign is refused, saying so.
    let error = RedisHandler::connect_with(
        &url,
        RedisOptions::new().with_tls(TlsOptions::new().with_ca_cert(certs.path("other-ca.crt"))),
    )
    .expect_err("a certificate of another CA");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Tls { .. }), "{error:?}");
    assert!(
        text.contains("TLS handshake") && text.contains("GRAFLOW_REDIS_CA_CERT"),
        "{text}"
    );

    // Mutual TLS: without a client certificate the server refuses; with one, tasks run.
    let Some(server) = certs.server("yes") else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let error = RedisHandler::connect_with(
        &url,
        RedisOptions::new().with_tls(TlsOptions::new().with_ca_cert(&ca)),
    )
    .expect_err("no client certificate");
    assert!(
        matches!(error, RedisError::Tls { .. }),
        "{error:?}: {error}"
    );
    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    total_over_tls(
        &url,
        TlsOptions::new()
            .with_ca_cert(&ca)
            .with_client_cert(&cert, &key),
        &[
            ("GRAFLOW_REDIS_CA_CERT", ca.as_str()),
            ("GRAFLOW_REDIS_CLIENT_CERT", cert.as_str()),
            ("GRAFLOW_REDIS_CLIENT_KEY", key.as_str()),
        ],
        "w-mtls",
    );
}
