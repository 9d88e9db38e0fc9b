//! The gateway's configuration: `gateway::Config::from_toml` (TOML syntax, the raw serde stage,
//! then validation) on any text, and the API Management policies rendered from every
//! configuration that validates.
//!
//! Checks, besides no panic: a refusal names a key; a valid configuration routes each route's
//! own paths (`<prefix>/mcp`, its metadata paths, the prefix itself) to that route and no other,
//! gives the shared verifier at least one audience, and renders one well-formed XML policy per
//! route (parsed by `roxmltree`, a strict parser, so an escaping mistake in the hand-written
//! writer shows as a failure here).
#![no_main]

use gateway::{Config, apim, routing::metadata_paths};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file is read with `read_to_string`: anything that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_toml(text) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.key.is_empty(), "a refusal without a key: {error}");
            return;
        }
    };

    assert!(!config.verifier_settings().audiences.is_empty());
    for route in &config.routes {
        let mcp = format!("{}/mcp", route.prefix);
        let (found, upstream_path) = config
            .route_for(&mcp)
            .unwrap_or_else(|| panic!("{mcp} routes nowhere"));
        assert_eq!(found.name, route.name, "{mcp} routes to another route");
        assert_eq!(upstream_path, "/mcp");
        let under = config
            .route_under(&route.prefix)
            .expect("a prefix lies under its own route");
        assert_eq!(
            under.name, route.name,
            "{} is under another route",
            route.prefix
        );
        for path in metadata_paths(route) {
            let found = config
                .metadata_route_for(&path)
                .unwrap_or_else(|| panic!("metadata path {path} answers for no route"));
            assert_eq!(found.name, route.name, "{path} answers for another route");
        }
    }

    let policies = apim::render_all(&config);
    assert_eq!(policies.len(), config.routes.len());
    for (file, xml) in &policies {
        assert!(file.ends_with(".policy.xml"), "{file}");
        if let Err(error) = roxmltree::Document::parse(xml) {
            panic!("{file} is not well-formed XML ({error}):\n{xml}");
        }
    }
});
