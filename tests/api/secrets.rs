//! API keys never reach logs: the real binaries, debug logging, faults, every endpoint.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A child process whose stdout and stderr are drained continuously (a full pipe would
/// block its logging, and with it the process).
struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_users-gateway"));
    command
        .args(args)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [stdout, stderr] {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
    }
    Proc { child, output }
}

impl Proc {
    /// Waits (up to 10 s) until the output holds `marker` `count` times.
    async fn wait_for(&self, marker: &str, count: usize) -> String {
        for _ in 0..200 {
            let output = self.output.lock().unwrap().clone();
            if output.matches(marker).count() >= count {
                return output;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no {marker:?} in {}", self.output.lock().unwrap());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_after(output: &str, label: &str) -> String {
    let line = output.lines().find(|l| l.contains(label)).unwrap();
    let start = line.find("http://").unwrap();
    // Plain banner lines end the URL with whitespace, JSON log lines with a quote.
    line[start..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn keys_never_appear_in_logs_or_responses() {
    let sandbox = spawn(
        &[
            "sandbox",
            "--ti-addr",
            "127.0.0.1:0",
            "--tis-addr",
            "127.0.0.1:0",
            "--tis-fault",
            "401",
        ],
        &[("RUST_LOG", "debug")],
    );
    let printed = sandbox.wait_for("sandbox:", 2).await;
    let (ti, tis) = (
        url_after(&printed, "Thought Industries"),
        url_after(&printed, "TapIntoSafety"),
    );
    let caller_key = "caller-secret-0042";
    let gateway = spawn(
        &[],
        &[
            ("RUST_LOG", "trace"),
            ("GATEWAY_LOG_FORMAT", "json"),
            ("GATEWAY_LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEWAY_API_KEYS", caller_key),
            ("THOUGHTINDUSTRIES_BASE_URL", &ti),
            ("THOUGHTINDUSTRIES_API_KEY", "sandbox-ti-key"),
            ("TAPINTOSAFETY_BASE_URL", &tis),
            ("TAPINTOSAFETY_API_KEY", "sandbox-tis-key"),
        ],
    );
    let printed = gateway.wait_for("Swagger UI", 1).await;
    let base = url_after(&printed, "Swagger UI").trim_end_matches("/docs").to_owned();
    let client = reqwest::Client::new();
    let mut bodies = String::new();
    for path in [
        "/users?per_page=2",
        "/users?role=admin&include=raw",
        "/users/plan?email=x",
        "/users?page=0",
        "/users/thoughtindustries:nope",
        "/metrics",
        "/readyz",
    ] {
        for auth in [format!("Bearer {caller_key}"), "Bearer wrong".to_owned()] {
            let response = client
                .get(format!("{base}{path}"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            bodies.push_str(&format!("{:?}", response.headers()));
            bodies.push_str(&response.text().await.unwrap());
        }
    }
    assert!(bodies.contains("unauthorized"), "the TIS fault was exercised");
    let logs = gateway.wait_for("request", 1).await;
    assert!(
        logs.contains("upstream"),
        "debug logs were captured: {}",
        &logs[..logs.len().min(500)]
    );
    for secret in ["sandbox-ti-key", "sandbox-tis-key", caller_key] {
        assert!(!logs.contains(secret), "{secret} in the gateway's logs");
        assert!(!bodies.contains(secret), "{secret} in a response");
    }
}
