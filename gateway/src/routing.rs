//! Which route a request belongs to, as plain functions of the path: the MCP endpoint of a route
//! and the path its upstream sees, the RFC 9728 metadata paths of each route, and its resource URL.
//!
//! A route exposes exactly one endpoint to the outside, `<prefix>/mcp` (any query string), which
//! goes upstream as `/mcp`. Its metadata is answered by the gateway itself at
//! `/.well-known/oauth-protected-resource<prefix>/mcp` (RFC 9728 §3.1) and at the paths a client
//! treating `<public_base_url><prefix>` as the server's root would try
//! ([`PREFIXED_METADATA_PATHS`], the ones every service of the platform serves itself). Nothing
//! else under a prefix (`/contoso-mcp/readyz`, `/contoso-mcp/mcp/x`) reaches a backend.
//!
//! Matching is by whole segments and exact paths: `/contoso-mcp/mcp` belongs to the route
//! `/contoso-mcp`, `/contoso-mcpx/mcp` does not. Validation guarantees that no two prefixes
//! overlap at a segment boundary, so at most one route matches and file order never matters.
//! API Management does the same with one API per route mounted at the prefix whose only
//! operations are these paths (see [`crate::apim`]).

use shared::auth::middleware::ProtectedResource;

use crate::config::{Config, Route};

/// Where RFC 9728 protected-resource metadata is served; a route's is this plus `<prefix>/mcp`.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The MCP endpoint of every backend, below the route prefix; the only path forwarded.
pub const MCP_PATH: &str = "/mcp";

/// The methods of MCP's streamable HTTP transport: POST for messages, GET for the server's
/// event stream, DELETE to end a session. Anything else at the endpoint gets 405.
pub const MCP_METHODS: [&str; 3] = ["POST", "GET", "DELETE"];

/// Metadata paths below a route prefix, answered by the gateway with the route's metadata: what
/// the services serve at their own root, seen through the prefix.
pub const PREFIXED_METADATA_PATHS: [&str; 3] = [
    METADATA_PATH,
    "/.well-known/oauth-protected-resource/mcp",
    "/mcp/.well-known/oauth-protected-resource",
];

/// The protected resource of the route at `prefix`: `<public_base_url><prefix>/mcp`.
pub fn resource_url(public_base_url: &str, prefix: &str) -> String {
    format!("{public_base_url}{prefix}{MCP_PATH}")
}

/// Every path at which the gateway answers the route's metadata, the RFC 9728 one first.
pub fn metadata_paths(route: &Route) -> Vec<String> {
    std::iter::once(format!("{METADATA_PATH}{}", resource_path_of(route)))
        .chain(
            PREFIXED_METADATA_PATHS
                .iter()
                .map(|suffix| format!("{}{suffix}", route.prefix)),
        )
        .collect()
}

impl Config {
    /// The route whose MCP endpoint `path_and_query` is (`<prefix>/mcp`, any query) and the path
    /// to send upstream: `/mcp` with the query string unchanged. `None` for every other path,
    /// also one under a prefix (see [`Config::route_under`]).
    pub fn route_for(&self, path_and_query: &str) -> Option<(&Route, String)> {
        let (path, query) = split_query(path_and_query);
        let route = self
            .routes
            .iter()
            .find(|route| path.strip_prefix(route.prefix.as_str()) == Some(MCP_PATH))?;
        let upstream_path = match query {
            Some(query) => format!("{MCP_PATH}?{query}"),
            None => MCP_PATH.to_owned(),
        };
        Some((route, upstream_path))
    }

    /// The route whose prefix `path_and_query` lies under (or is), whatever the rest: for the
    /// access log of a refused path. Whole segments only.
    pub fn route_under(&self, path_and_query: &str) -> Option<&Route> {
        let (path, _) = split_query(path_and_query);
        self.routes.iter().find(|route| {
            path.strip_prefix(route.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// The route whose RFC 9728 metadata `path_and_query` asks for (any query ignored): one of
    /// [`metadata_paths`]. Served without a token, since a client reads it to learn where to
    /// get one.
    pub fn metadata_route_for(&self, path_and_query: &str) -> Option<&Route> {
        let (path, _) = split_query(path_and_query);
        if let Some(resource_path) = path.strip_prefix(METADATA_PATH)
            && let Some(route) = self
                .routes
                .iter()
                .find(|route| resource_path == resource_path_of(route))
        {
            return Some(route);
        }
        self.routes.iter().find(|route| {
            path.strip_prefix(route.prefix.as_str())
                .is_some_and(|rest| PREFIXED_METADATA_PATHS.contains(&rest))
        })
    }

    /// The protected resource a route's tokens are for: `<public_base_url><prefix>/mcp`.
    pub fn resource_url(&self, route: &Route) -> String {
        resource_url(&self.public_base_url, &route.prefix)
    }

    /// Where the route's metadata is served; what `WWW-Authenticate: Bearer resource_metadata=`
    /// points at on a 401.
    pub fn metadata_url(&self, route: &Route) -> String {
        format!(
            "{}{METADATA_PATH}{}",
            self.public_base_url,
            resource_path_of(route)
        )
    }

    /// The route's RFC 9728 metadata document, as both edges answer it. Scopes as the services
    /// advertise them: `<audience>/.default` for the first audience that is an application ID
    /// URI rather than a URL (Entra clients ask for that scope; RFC 8707 clients send
    /// `resource` instead), none otherwise.
    pub fn protected_resource(&self, route: &Route) -> ProtectedResource {
        ProtectedResource {
            resource: self.resource_url(route),
            authorization_servers: vec![self.auth.issuer.clone()],
            scopes_supported: route
                .audiences
                .iter()
                .find(|a| !a.starts_with("http://") && !a.starts_with("https://"))
                .map(|a| vec![format!("{a}/.default")])
                .unwrap_or_default(),
            bearer_methods_supported: vec!["header".to_owned()],
        }
    }
}

fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

fn resource_path_of(route: &Route) -> String {
    format!("{}{MCP_PATH}", route.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let tenant = "c0a7050c-0000-4000-8000-000000000001";
        Config::from_toml(&format!(
            r#"
listen = "127.0.0.1:8080"
public_base_url = "http://127.0.0.1:8080"
[auth]
issuer = "http://127.0.0.1:4444"
[[routes]]
name = "contoso"
prefix = "/contoso-mcp"
upstreams = ["127.0.0.1:8001"]
allowed_tenants = ["{tenant}"]
[[routes]]
name = "contoso-eu"
prefix = "/contoso-mcp-eu"
upstreams = ["127.0.0.1:8003"]
allowed_tenants = ["{tenant}"]
[[routes]]
name = "fabrikam"
prefix = "/tenants/fabrikam"
upstreams = ["127.0.0.1:8002"]
allowed_tenants = ["{tenant}"]
"#
        ))
        .expect("valid configuration")
    }

    fn routed(config: &Config, path: &str) -> Option<(String, String)> {
        config
            .route_for(path)
            .map(|(route, rest)| (route.name.clone(), rest))
    }

    fn pair(name: &str, rest: &str) -> Option<(String, String)> {
        Some((name.to_owned(), rest.to_owned()))
    }

    #[test]
    fn only_the_mcp_endpoint_is_routed() {
        let config = config();
        assert_eq!(routed(&config, "/contoso-mcp/mcp"), pair("contoso", "/mcp"));
        assert_eq!(
            routed(&config, "/tenants/fabrikam/mcp"),
            pair("fabrikam", "/mcp")
        );
        for inside in [
            "/contoso-mcp",
            "/contoso-mcp/",
            "/contoso-mcp/readyz",
            "/contoso-mcp/healthz",
            "/contoso-mcp/mcp/",
            "/contoso-mcp/mcp/x",
            "/contoso-mcp/mcpx",
            "/contoso-mcp/MCP",
            "/contoso-mcp/%6dcp",
            "/contoso-mcp/a/b/c",
            "/contoso-mcp//mcp",
            "/contoso-mcp/./mcp",
            "/contoso-mcp/x/../mcp",
            "/contoso-mcp/.well-known/x",
        ] {
            assert_eq!(routed(&config, inside), None, "{inside}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let config = config();
        assert_eq!(routed(&config, "/contoso-mcpx/mcp"), None);
        assert_eq!(
            routed(&config, "/contoso-mcp-eu/mcp"),
            pair("contoso-eu", "/mcp")
        );
        assert_eq!(routed(&config, "/tenants/fabrikamx/mcp"), None);
        assert_eq!(routed(&config, "/tenants/mcp"), None);
        assert_eq!(routed(&config, "/"), None);
        assert_eq!(routed(&config, ""), None);
        assert_eq!(routed(&config, "/mcp"), None);
        assert_eq!(routed(&config, "/CONTOSO-MCP/mcp"), None);
        assert_eq!(routed(&config, "/contoso-mcp/../fabrikam/mcp"), None);
    }

    #[test]
    fn the_query_string_is_kept() {
        let config = config();
        assert_eq!(
            routed(&config, "/contoso-mcp/mcp?session=1&x=%2F"),
            pair("contoso", "/mcp?session=1&x=%2F")
        );
        assert_eq!(
            routed(&config, "/contoso-mcp/mcp?"),
            pair("contoso", "/mcp?")
        );
        assert_eq!(
            routed(&config, "/contoso-mcp/mcp?next=../x"),
            pair("contoso", "/mcp?next=../x")
        );
        assert_eq!(routed(&config, "/contoso-mcp?a=/mcp"), None);
        assert_eq!(
            routed(&config, "/contoso-mcpx/mcp?a=/contoso-mcp/mcp"),
            None
        );
    }

    #[test]
    fn refused_paths_still_name_their_route() {
        let config = config();
        let under = |path: &str| config.route_under(path).map(|r| r.name.as_str());
        assert_eq!(under("/contoso-mcp/readyz"), Some("contoso"));
        assert_eq!(under("/contoso-mcp"), Some("contoso"));
        assert_eq!(under("/contoso-mcp?x=/y"), Some("contoso"));
        assert_eq!(under("/contoso-mcp-eu/x"), Some("contoso-eu"));
        assert_eq!(under("/contoso-mcpx/mcp"), None);
        assert_eq!(under("/nowhere"), None);
    }

    #[test]
    fn metadata_paths_name_their_route() {
        let config = config();
        let name = |path: &str| config.metadata_route_for(path).map(|r| r.name.as_str());
        assert_eq!(
            name("/.well-known/oauth-protected-resource/contoso-mcp/mcp"),
            Some("contoso")
        );
        assert_eq!(
            name("/.well-known/oauth-protected-resource/contoso-mcp-eu/mcp?x=1"),
            Some("contoso-eu")
        );
        assert_eq!(
            name("/.well-known/oauth-protected-resource/tenants/fabrikam/mcp"),
            Some("fabrikam")
        );
        // What a client treating the prefix as the server's root looks for.
        assert_eq!(
            name("/contoso-mcp/.well-known/oauth-protected-resource"),
            Some("contoso")
        );
        assert_eq!(
            name("/contoso-mcp/.well-known/oauth-protected-resource/mcp?x=1"),
            Some("contoso")
        );
        assert_eq!(
            name("/tenants/fabrikam/mcp/.well-known/oauth-protected-resource"),
            Some("fabrikam")
        );
        for not_metadata in [
            "/.well-known/oauth-protected-resource/contoso-mcp",
            "/.well-known/oauth-protected-resource/contoso-mcp/mcp/x",
            "/.well-known/oauth-protected-resource",
            "/contoso-mcp/.well-known/oauth-protected-resource/x",
            "/contoso-mcp/.well-known/openid-configuration",
            "/contoso-mcpx/.well-known/oauth-protected-resource",
            "/contoso-mcp/mcp",
        ] {
            assert_eq!(name(not_metadata), None, "{not_metadata}");
        }
        // The metadata path is not the MCP endpoint: no route forwards it.
        assert_eq!(
            routed(
                &config,
                "/.well-known/oauth-protected-resource/contoso-mcp/mcp"
            ),
            None
        );
        // Every path metadata_paths lists is answered, and for its own route.
        for route in &config.routes {
            for path in metadata_paths(route) {
                assert_eq!(name(&path), Some(route.name.as_str()), "{path}");
            }
        }
    }

    #[test]
    fn resource_and_metadata_urls() {
        let config = config();
        let contoso = &config.routes[0];
        assert_eq!(
            config.resource_url(contoso),
            "http://127.0.0.1:8080/contoso-mcp/mcp"
        );
        assert_eq!(
            config.metadata_url(contoso),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/contoso-mcp/mcp"
        );
        let path = config
            .metadata_url(contoso)
            .strip_prefix(&config.public_base_url)
            .map(str::to_owned)
            .expect("under the base URL");
        assert_eq!(
            config.metadata_route_for(&path).map(|r| &r.name),
            Some(&contoso.name)
        );
        assert_eq!(metadata_paths(contoso)[0], path);
    }

    #[test]
    fn metadata_names_the_route_and_its_entra_scope() {
        let mut config = config();
        let metadata = config.protected_resource(&config.routes[0]);
        assert_eq!(metadata.resource, "http://127.0.0.1:8080/contoso-mcp/mcp");
        assert_eq!(metadata.authorization_servers, ["http://127.0.0.1:4444"]);
        assert!(
            metadata.scopes_supported.is_empty(),
            "RFC 8707 clients send resource"
        );
        config.routes[0].audiences = vec![
            "http://127.0.0.1:8080/contoso-mcp/mcp".into(),
            "api://contoso-mcp".into(),
        ];
        let metadata = config.protected_resource(&config.routes[0]);
        assert_eq!(metadata.scopes_supported, ["api://contoso-mcp/.default"]);
    }
}
