//! Which route a request belongs to, as plain functions of the path: the route and the path its
//! upstream sees (prefix stripped, query kept), and the RFC 9728 metadata path of each route.
//!
//! Matching is by whole segments: `/contoso-mcp/mcp` and `/contoso-mcp` belong to the route
//! `/contoso-mcp`, `/contoso-mcpx/mcp` does not. Validation guarantees that no two prefixes
//! overlap at a segment boundary, so at most one route matches and file order never matters.
//! API Management does the same with one API per route mounted at the prefix (see [`crate::apim`]).

use crate::config::{Config, Route};

/// Where RFC 9728 protected-resource metadata is served; a route's is this plus `<prefix>/mcp`.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The MCP endpoint of every backend, below the route prefix.
pub const MCP_PATH: &str = "/mcp";

impl Config {
    /// The route of `path_and_query` and the path to send upstream: the rest after the prefix
    /// (`/` when nothing is left), with the query string unchanged. `None` when no route
    /// matches, or when the path has a `.` or `..` segment: a path that means something else
    /// after normalisation is refused rather than guessed at.
    pub fn route_for(&self, path_and_query: &str) -> Option<(&Route, String)> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        if path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return None;
        }
        self.routes.iter().find_map(|route| {
            let rest = path.strip_prefix(route.prefix.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let rest = if rest.is_empty() { "/" } else { rest };
            let upstream_path = match query {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_owned(),
            };
            Some((route, upstream_path))
        })
    }

    /// The route whose RFC 9728 metadata `path_and_query` asks for:
    /// `/.well-known/oauth-protected-resource<prefix>/mcp` (any query ignored). Served without
    /// a token, since a client reads it to learn where to get one.
    pub fn metadata_route_for(&self, path_and_query: &str) -> Option<&Route> {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(path, _)| path);
        let resource_path = path.strip_prefix(METADATA_PATH)?;
        self.routes
            .iter()
            .find(|route| resource_path == resource_path_of(route))
    }

    /// The protected resource a route's tokens are for: `<public_base_url><prefix>/mcp`.
    pub fn resource_url(&self, route: &Route) -> String {
        format!("{}{}", self.public_base_url, resource_path_of(route))
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
audiences = ["api://contoso-mcp"]
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
    fn the_prefix_is_stripped() {
        let config = config();
        assert_eq!(routed(&config, "/contoso-mcp/mcp"), pair("contoso", "/mcp"));
        assert_eq!(routed(&config, "/contoso-mcp"), pair("contoso", "/"));
        assert_eq!(routed(&config, "/contoso-mcp/"), pair("contoso", "/"));
        assert_eq!(
            routed(&config, "/contoso-mcp/a/b/c"),
            pair("contoso", "/a/b/c")
        );
        assert_eq!(
            routed(&config, "/tenants/fabrikam/mcp"),
            pair("fabrikam", "/mcp")
        );
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let config = config();
        assert_eq!(routed(&config, "/contoso-mcpx/mcp"), None);
        assert_eq!(
            routed(&config, "/contoso-mcp-eu/mcp"),
            pair("contoso-eu", "/mcp")
        );
        assert_eq!(routed(&config, "/tenants/fabrikamx"), None);
        assert_eq!(routed(&config, "/tenants"), None);
        assert_eq!(routed(&config, "/"), None);
        assert_eq!(routed(&config, ""), None);
        assert_eq!(routed(&config, "/mcp"), None);
        assert_eq!(routed(&config, "/CONTOSO-MCP/mcp"), None);
    }

    #[test]
    fn the_query_string_is_kept() {
        let config = config();
        assert_eq!(
            routed(&config, "/contoso-mcp/mcp?session=1&x=%2F"),
            pair("contoso", "/mcp?session=1&x=%2F")
        );
        assert_eq!(
            routed(&config, "/contoso-mcp?a=b"),
            pair("contoso", "/?a=b")
        );
        assert_eq!(routed(&config, "/contoso-mcp/?"), pair("contoso", "/?"));
        assert_eq!(routed(&config, "/contoso-mcpx?a=/contoso-mcp"), None);
    }

    #[test]
    fn dot_segments_are_refused() {
        let config = config();
        assert_eq!(routed(&config, "/contoso-mcp/../fabrikam/mcp"), None);
        assert_eq!(routed(&config, "/contoso-mcp/./mcp"), None);
        assert_eq!(
            routed(&config, "/contoso-mcp/mcp?next=../x"),
            pair("contoso", "/mcp?next=../x")
        );
        assert_eq!(
            routed(&config, "/contoso-mcp/.well-known/x"),
            pair("contoso", "/.well-known/x")
        );
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
        assert_eq!(
            name("/.well-known/oauth-protected-resource/contoso-mcp"),
            None
        );
        assert_eq!(
            name("/.well-known/oauth-protected-resource/contoso-mcp/mcp/x"),
            None
        );
        assert_eq!(name("/.well-known/oauth-protected-resource"), None);
        assert_eq!(name("/contoso-mcp/mcp"), None);
        // The metadata path is not a route path: no route claims it.
        assert_eq!(
            routed(
                &config,
                "/.well-known/oauth-protected-resource/contoso-mcp/mcp"
            ),
            None
        );
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
    }
}
