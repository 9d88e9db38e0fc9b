//! The committed API Management files are what the renderer makes of `apim/gateway.toml`: the
//! policies byte for byte, and `apim/main.bicep` deploys exactly those routes with those files.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use gateway::{Config, apim};

/// The command that brings the committed policies up to date, run from the workspace root.
const REGENERATE: &str =
    "cargo run -p gateway -- render-apim --config apim/gateway.toml --out apim/policies";

fn apim_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../apim")
}

fn example_config() -> Config {
    Config::load(&apim_dir().join("gateway.toml")).expect("apim/gateway.toml is valid")
}

/// The first line where two texts differ, for a message a person can act on.
fn first_difference(committed: &str, rendered: &str) -> String {
    let mut committed_lines = committed.lines();
    let mut rendered_lines = rendered.lines();
    for number in 1.. {
        match (committed_lines.next(), rendered_lines.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {number}:\n  committed: {}\n  rendered:  {}",
                    a.unwrap_or("<end of file>"),
                    b.unwrap_or("<end of file>")
                );
            }
        }
    }
    "the texts differ only in their line endings or final newline".to_owned()
}

#[test]
fn committed_policies_match_the_renderer() {
    let config = example_config();
    let rendered = apim::render_all(&config);
    let policies = apim_dir().join("policies");
    for (name, xml) in &rendered {
        let committed = fs::read_to_string(policies.join(name)).unwrap_or_else(|e| {
            panic!("cannot read apim/policies/{name} ({e}); render it with:\n  {REGENERATE}")
        });
        assert!(
            committed == *xml,
            "apim/policies/{name} is not what the renderer makes of apim/gateway.toml (first \
             difference at {}).\nIf the change is intended, render the policies again and commit \
             them:\n  {REGENERATE}",
            first_difference(&committed, xml)
        );
    }

    let rendered_names: BTreeSet<String> = rendered.into_iter().map(|(name, _)| name).collect();
    let committed_names: BTreeSet<String> = fs::read_dir(&policies)
        .expect("apim/policies exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".policy.xml"))
        .collect();
    assert_eq!(
        committed_names, rendered_names,
        "apim/policies holds a policy for a route apim/gateway.toml no longer has (or lacks one); \
         delete the stale file or run:\n  {REGENERATE}"
    );
}

#[test]
fn main_bicep_deploys_every_route_with_its_rendered_policy() {
    let config = example_config();
    let bicep = fs::read_to_string(apim_dir().join("main.bicep")).expect("apim/main.bicep");
    let modules: Vec<&str> = bicep.split("\nmodule ").skip(1).collect();
    assert_eq!(
        modules.len(),
        config.routes.len(),
        "apim/main.bicep should have one module per route of apim/gateway.toml"
    );
    for route in &config.routes {
        let module = modules
            .iter()
            .find(|m| m.contains(&format!("routeName: '{}'", route.name)))
            .unwrap_or_else(|| panic!("apim/main.bicep has no module for route {}", route.name));
        let expected = [
            format!("path: '{}'", route.prefix.trim_start_matches('/')),
            format!("serviceUrl: '{}'", route.apim_backend_url),
            format!(
                "policyXml: loadTextContent('policies/{}')",
                apim::file_name(route)
            ),
        ];
        for line in expected {
            assert!(
                module.contains(&line),
                "the module of route {} in apim/main.bicep should say `{line}`",
                route.name
            );
        }
    }
}

#[test]
fn route_api_bicep_exposes_only_the_mcp_endpoint_and_the_metadata() {
    let bicep =
        fs::read_to_string(apim_dir().join("route-api.bicep")).expect("apim/route-api.bicep");
    for expected in [
        "Microsoft.ApiManagement/service@",
        "existing",
        "subscriptionRequired: false",
        "'https'",
        "urlTemplate: '/mcp'",
        "'GET'",
        "'POST'",
        "'DELETE'",
        "format: 'rawxml'",
        "value: policyXml",
        "path: '.well-known/oauth-protected-resource/${path}'",
    ] {
        assert!(
            bicep.contains(expected),
            "apim/route-api.bicep should contain `{expected}`"
        );
    }
    // The operations are the local gateway's paths: no catch-all lets /readyz through.
    assert!(
        !bicep.contains("'/*'"),
        "apim/route-api.bicep must not have a catch-all operation"
    );
    for path in gateway::routing::PREFIXED_METADATA_PATHS {
        assert!(
            bicep.contains(&format!("'{path}'")),
            "apim/route-api.bicep should have a GET operation for {path}"
        );
    }
    let templates = bicep.matches("urlTemplate:").count();
    assert_eq!(
        templates, 3,
        "one operation loop for /mcp, one for the metadata paths, one for the RFC 9728 path"
    );
}
