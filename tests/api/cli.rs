//! The binary as an operator meets it: startup errors and the printed config.

use std::process::Command;

fn gateway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_users-gateway"));
    command.env_clear();
    command
}

#[test]
fn no_source_and_no_demo_exits_non_zero_naming_the_variables() {
    let output = gateway().output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    for name in ["THOUGHTINDUSTRIES_BASE_URL", "TAPINTOSAFETY_API_KEY", "--demo"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn printed_config_hides_every_key_and_parses_back_as_toml() {
    let output = gateway()
        .args(["print-config"])
        .env("TAPINTOSAFETY_BASE_URL", "https://tis.example")
        .env("TAPINTOSAFETY_API_KEY", "upstream-secret")
        .env("GATEWAY_API_KEYS", "caller-secret")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        !stdout.contains("upstream-secret") && !stdout.contains("caller-secret"),
        "{stdout}"
    );
    let parsed: toml::Table = toml::from_str(&stdout).expect("the printed config is TOML");
    assert_eq!(parsed["sources"][0]["api_key"].as_str(), Some("***"));
    assert_eq!(parsed["log_format"].as_str(), Some("pretty"));
}

#[test]
fn a_bad_setting_is_a_clear_startup_error() {
    let output = gateway()
        .env("TAPINTOSAFETY_BASE_URL", "ftp://tis.example")
        .env("TAPINTOSAFETY_API_KEY", "k")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .contains("TAPINTOSAFETY_BASE_URL"));
}

/// Runs `command` with stdout and stderr piped; every line of either comes out of the
/// receiver as it is written, and the child is killed on drop.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        use std::io::{BufRead, BufReader, Read};
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [stdout, stderr] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        Running { child, lines }
    }

    /// Lines until one contains `marker` (included), or every line if the process ends first.
    fn lines_until(&self, marker: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            let done = line.contains(marker);
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_all_json(lines: &[String]) -> Vec<serde_json::Value> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn demo_in_json_log_mode_prints_only_json_lines() {
    let mut command = gateway();
    command
        .arg("--demo")
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0");
    let running = Running::start(command);
    let lines = running.lines_until("Swagger UI");
    let events = assert_all_json(&lines);
    let swagger = events.last().unwrap();
    assert_eq!(swagger["fields"]["message"], "Swagger UI", "{lines:?}");
    let url = swagger["fields"]["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/docs"), "{url}");
    assert!(
        events
            .iter()
            .any(|event| event["fields"]["message"] == "users-gateway demo: sandbox upstreams"),
        "{lines:?}"
    );
}

#[test]
fn a_startup_failure_in_json_log_mode_is_a_json_line() {
    let mut command = gateway();
    command
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("TAPINTOSAFETY_BASE_URL", "ftp://tis.example")
        .env("TAPINTOSAFETY_API_KEY", "k");
    let running = Running::start(command);
    let lines = running.lines_until("TAPINTOSAFETY_BASE_URL");
    let events = assert_all_json(&lines);
    assert_eq!(events.last().unwrap()["level"], "ERROR", "{lines:?}");
}

#[test]
fn blank_caller_keys_refuse_to_start() {
    for blank in ["", " , "] {
        let mut command = gateway();
        command
            .env("GATEWAY_API_KEYS", blank)
            .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("TAPINTOSAFETY_BASE_URL", "https://tis.example")
            .env("TAPINTOSAFETY_API_KEY", "k");
        let mut running = Running::start(command);
        // A regression would start serving instead: the guard below then fails the test.
        let lines = running.lines_until("GATEWAY_API_KEYS");
        assert!(
            lines
                .last()
                .is_some_and(|line| line.contains("GATEWAY_API_KEYS") && line.contains("no key")),
            "{blank:?}: {lines:?}"
        );
        let status = running.child.wait().unwrap();
        assert!(!status.success(), "{blank:?}");
    }
}
