//! The `gateway` binary as a person runs it: `render-apim` writes the policies, `run` validates
//! and refuses to start without its token issuer, and a bad configuration fails naming the key.
//! (`tests/proxy.rs` runs the proxy itself.)

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../apim/gateway.toml")
}

fn committed_policy(name: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../apim/policies/{name}")),
    )
    .expect("committed policy")
}

/// The binary with `args`, without a `GATEWAY_CONFIG` from the environment of the test run.
fn gateway(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command.args(args).env_remove("GATEWAY_CONFIG");
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the gateway binary runs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A copy of the example configuration in a fresh folder, optionally edited.
fn config_in_tempdir(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    let text = fs::read_to_string(example_config()).expect("example configuration");
    fs::write(&path, edit(text)).expect("write configuration");
    (dir, path)
}

#[test]
fn render_apim_writes_one_policy_per_route() {
    let (dir, config) = config_in_tempdir(|text| text);
    let out = dir.path().join("out");
    let (code, stdout, stderr) = run(&mut gateway(&[
        "render-apim",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["contoso.policy.xml", "fabrikam.policy.xml"] {
        assert!(
            stdout.contains(&format!("wrote {}", out.join(name).display())),
            "{stdout}"
        );
        let written = fs::read_to_string(out.join(name)).expect("written policy");
        assert_eq!(written, committed_policy(name));
    }
}

#[test]
fn render_apim_defaults_to_policies_beside_the_configuration_from_gateway_config() {
    let (dir, config) = config_in_tempdir(|text| text);
    let (code, _, stderr) = run(gateway(&["render-apim"]).env("GATEWAY_CONFIG", &config));
    assert_eq!(code, Some(0), "{stderr}");
    let written = fs::read_to_string(dir.path().join("policies/contoso.policy.xml"))
        .expect("policies/ beside the configuration");
    assert_eq!(written, committed_policy("contoso.policy.xml"));
}

#[test]
fn a_bad_configuration_fails_naming_the_key_and_writes_nothing() {
    let (dir, config) = config_in_tempdir(|text| {
        text.replacen(
            "upstreams = [\"127.0.0.1:8002\"]",
            "upstream = [\"127.0.0.1:8002\"]",
            1,
        )
    });
    let (code, stdout, stderr) = run(&mut gateway(&[
        "render-apim",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("routes[1].upstream: unknown field `upstream`"),
        "{stderr}"
    );
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(!dir.path().join("policies").exists());

    let (_dir, config) =
        config_in_tempdir(|text| text.replacen("\"/fabrikam-mcp\"", "\"/fabrikam-mcp/\"", 1));
    let (code, _, stderr) = run(&mut gateway(&[
        "run",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(r#"routes[1].prefix: "/fabrikam-mcp/" must not end with "/""#),
        "{stderr}"
    );
}

#[test]
fn a_missing_configuration_file_is_named() {
    let (code, _, stderr) = run(&mut gateway(&[
        "run",
        "--config",
        "/nonexistent/gateway.toml",
    ]));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/gateway.toml"), "{stderr}");
}

#[test]
fn run_validates_summarises_and_fails_naming_an_unreachable_issuer() {
    // Port 1 on loopback: nothing answers there, so discovery fails at once. Port 0: the
    // failure must be the issuer's, whatever holds 8080 on the machine running the tests.
    let (_dir, config) = config_in_tempdir(|text| {
        text.replace("http://127.0.0.1:4444", "http://127.0.0.1:1")
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
    });
    let (code, stdout, stderr) = run(&mut gateway(&[
        "run",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]));
    // Nothing serves the example's issuer here: the gateway must not start without its keys.
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("3 routes on 127.0.0.1:0 (http://127.0.0.1:8080): contoso /contoso-mcp -> 127.0.0.1:8001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fabrikam /fabrikam-mcp -> 127.0.0.1:8002"),
        "{stdout}"
    );
    assert!(stderr.contains("auth.issuer"), "{stderr}");
}

#[test]
fn a_malformed_redis_url_fails_the_start_naming_the_setting_not_the_password() {
    let (_dir, config) = config_in_tempdir(|text| text);
    let config = config.to_str().expect("utf-8 path");
    let cases = [
        (
            "redis://:hunter2@127.0.0.1:6379/first",
            "Invalid database number",
        ),
        ("http://:hunter2@127.0.0.1:6379", "not a Redis URL"),
        ("hunter2", "not a Redis URL"),
    ];
    for (url, reason) in cases {
        let by_flag = gateway(&["run", "--config", config, "--rate-limit-redis-url", url]);
        let mut by_env = gateway(&["run", "--config", config]);
        by_env.env("RATE_LIMIT_REDIS_URL", url);
        for mut command in [by_flag, by_env] {
            let (code, stdout, stderr) = run(&mut command);
            assert_eq!(code, Some(1), "{url}: {stdout}{stderr}");
            assert!(
                stderr.contains("--rate-limit-redis-url (RATE_LIMIT_REDIS_URL): "),
                "{stderr}"
            );
            assert!(stderr.contains(reason), "{stderr}");
            assert!(!stderr.contains("hunter2"), "{stderr}");
            // Checked with the configuration, before anything is served or printed.
            assert!(stdout.is_empty(), "{stdout}");
        }
    }
    let (code, _, stderr) = run(&mut gateway(&[
        "run",
        "--config",
        config,
        "--rate-limit-redis-failure",
        "sometimes",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: open, closed]"),
        "{stderr}"
    );
}

#[test]
fn help_documents_the_subcommands_and_the_environment_fallback() {
    let mut help = gateway(&["run", "--help"]);
    help.env("RATE_LIMIT_REDIS_URL", "redis://:hunter2@127.0.0.1:6379");
    let (code, stdout, _) = run(&mut help);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("run the proxy"), "{stdout}");
    assert!(stdout.contains("SIGTERM"), "{stdout}");
    assert!(stdout.contains("GATEWAY_CONFIG"), "{stdout}");
    for setting in ["RATE_LIMIT_REDIS_URL", "RATE_LIMIT_REDIS_FAILURE", "250 ms"] {
        assert!(stdout.contains(setting), "{setting}: {stdout}");
    }
    assert!(
        !stdout.contains("hunter2"),
        "the URL's value is not shown: {stdout}"
    );
    let (code, stdout, _) = run(&mut gateway(&["--help"]));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("render-apim"), "{stdout}");
}
