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
