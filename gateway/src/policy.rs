//! The rules both edges apply the same way, written once: the request headers a client may not
//! supply (they carry identity a backend might trust), the headers the edge sets instead, and
//! the refusals callers get (status, error code, message). The API Management renderer and the
//! local proxy both use them, so a 403 reads the same in Azure and on a laptop.

/// Request headers removed before a request is forwarded, whatever their value: each says who
/// the caller is or where the request came from, and only the edge may say that. (`X-MS-CLIENT-*`
/// are what Container Apps' built-in authentication hands its apps.)
pub const SPOOFABLE_HEADERS: [&str; 14] = [
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "X-Tenant-Id",
    "X-User-Id",
    "X-User-Roles",
    "X-MS-CLIENT-PRINCIPAL",
    "X-MS-CLIENT-PRINCIPAL-ID",
    "X-MS-CLIENT-PRINCIPAL-IDP",
    "X-MS-CLIENT-PRINCIPAL-NAME",
];

/// Set by the edge to the `tid` of the token it verified.
pub const TENANT_HEADER: &str = "X-Tenant-Id";
/// Set by the edge to the address of the client it accepted the connection from.
pub const FORWARDED_FOR_HEADER: &str = "X-Forwarded-For";
/// Set by the edge on the request and the response, so a caller can quote it and logs join up.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Why the edge answers instead of the backend. The last four are the local gateway's own: its
/// connection bounds (`[server]`) and its shared quota store; API Management applies limits of its
/// own there, keeps its own counters, and renders none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that fails verification: 401.
    InvalidToken,
    /// A valid token of a tenant the route does not list: 403, nothing forwarded.
    TenantNotAllowed,
    /// The tenant used up its calls for this route this minute: 429 with `Retry-After`.
    RateLimited,
    /// The request body is over the route's `max_body_bytes`: 413.
    BodyTooLarge,
    /// The backend accepted the request but sent no response in time: 504.
    UpstreamTimeout,
    /// No backend could be reached: 502.
    UpstreamUnavailable,
    /// Anything else that went wrong at the edge.
    EdgeError,
    /// The request head did not arrive within `server.header_read_timeout_ms`, or its body
    /// within `server.body_read_timeout_ms`: 408, closed.
    RequestTimeout,
    /// The request head is over `server.max_header_bytes` or `server.max_headers`: 431, closed.
    HeadersTooLarge,
    /// The gateway holds `server.max_connections` already: 503 with `Retry-After`, closed.
    TooManyConnections,
    /// The quotas are kept in Redis (`--rate-limit-redis-url`), Redis is not answering, and the
    /// gateway fails closed (`--rate-limit-redis-failure closed`): 503 with `Retry-After`.
    QuotaUnavailable,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::InvalidToken,
        Refusal::TenantNotAllowed,
        Refusal::RateLimited,
        Refusal::BodyTooLarge,
        Refusal::UpstreamTimeout,
        Refusal::UpstreamUnavailable,
        Refusal::EdgeError,
        Refusal::RequestTimeout,
        Refusal::HeadersTooLarge,
        Refusal::TooManyConnections,
        Refusal::QuotaUnavailable,
    ];

    pub fn status(self) -> u16 {
        match self {
            Refusal::InvalidToken => 401,
            Refusal::TenantNotAllowed => 403,
            Refusal::RateLimited => 429,
            Refusal::BodyTooLarge => 413,
            Refusal::UpstreamTimeout => 504,
            Refusal::UpstreamUnavailable => 502,
            Refusal::EdgeError => 500,
            Refusal::RequestTimeout => 408,
            Refusal::HeadersTooLarge => 431,
            Refusal::TooManyConnections | Refusal::QuotaUnavailable => 503,
        }
    }

    /// The HTTP reason phrase of [`Refusal::status`].
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::InvalidToken => "Unauthorized",
            Refusal::TenantNotAllowed => "Forbidden",
            Refusal::RateLimited => "Too Many Requests",
            Refusal::BodyTooLarge => "Payload Too Large",
            Refusal::UpstreamTimeout => "Gateway Timeout",
            Refusal::UpstreamUnavailable => "Bad Gateway",
            Refusal::EdgeError => "Internal Server Error",
            Refusal::RequestTimeout => "Request Timeout",
            Refusal::HeadersTooLarge => "Request Header Fields Too Large",
            Refusal::TooManyConnections | Refusal::QuotaUnavailable => "Service Unavailable",
        }
    }

    /// The `error` field of the JSON body: stable, for programs.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidToken => "invalid_token",
            Refusal::TenantNotAllowed => "tenant_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::EdgeError => "edge_error",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::QuotaUnavailable => "quota_unavailable",
        }
    }

    /// The `message` field of the JSON body: for people; never echoes the token or its claims.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::InvalidToken => "The access token is missing or invalid.",
            Refusal::TenantNotAllowed => "Your organisation is not allowed to use this service.",
            Refusal::RateLimited => {
                "Too many requests from your organisation on this service; retry after the time in Retry-After."
            }
            Refusal::BodyTooLarge => "The request body is larger than this service accepts.",
            Refusal::UpstreamTimeout => "The service did not answer in time.",
            Refusal::UpstreamUnavailable => "The service is unavailable; try again shortly.",
            Refusal::EdgeError => "The gateway could not process the request.",
            Refusal::RequestTimeout => "The request did not arrive in time.",
            Refusal::HeadersTooLarge => {
                "The request headers are larger, or more numerous, than this service accepts."
            }
            Refusal::TooManyConnections => {
                "The gateway is serving as many connections as it can; retry after the time in Retry-After."
            }
            Refusal::QuotaUnavailable => {
                "The gateway cannot count your organisation's calls on this service right now; retry after the time in Retry-After."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_and_statuses_are_distinct_and_messages_plain() {
        let codes: HashSet<_> = Refusal::ALL.iter().map(|r| r.code()).collect();
        // Two refusals share 503, told apart by their code: a full edge, and a quota store
        // failing closed.
        let statuses: HashSet<_> = Refusal::ALL.iter().map(|r| r.status()).collect();
        assert_eq!(codes.len(), Refusal::ALL.len());
        assert_eq!(statuses.len(), Refusal::ALL.len() - 1);
        for refusal in Refusal::ALL {
            // Messages are embedded in JSON and in policy expressions: keep them free of
            // characters that would need escaping there.
            assert!(
                !refusal.message().contains(['"', '\\', '<', '&']),
                "{refusal:?}"
            );
        }
    }

    #[test]
    fn identity_headers_are_listed_once_and_include_the_ones_the_edge_sets() {
        let lower: HashSet<String> = SPOOFABLE_HEADERS
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        assert_eq!(lower.len(), SPOOFABLE_HEADERS.len());
        assert!(lower.contains(&TENANT_HEADER.to_ascii_lowercase()));
        assert!(lower.contains(&FORWARDED_FOR_HEADER.to_ascii_lowercase()));
    }
}
