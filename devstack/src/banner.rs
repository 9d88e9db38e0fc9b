//! What `devstack` prints once the stack runs: where each service is, which tenant reaches which
//! route, and tokens to paste. Kept apart from starting the stack because it is only text; the
//! tests read it the way a person does.

use std::fmt;

use crate::{
    idp::defaults,
    stack::RunningStack,
    topology::{self, BACKENDS},
};

/// [`RunningStack`] as the text of its banner.
pub(crate) struct Banner<'a>(pub(crate) &'a RunningStack);

impl fmt::Display for Banner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stack = self.0;
        writeln!(f, "\ndevstack is running (authentication ON)\n")?;
        writeln!(
            f,
            "  identity provider  {}  (discovery: {}/.well-known/openid-configuration)\n",
            stack.issuer, stack.issuer
        )?;

        writeln!(f, "MCP through the gateway (what clients use):")?;
        let name_width = column_width(
            stack
                .backends
                .iter()
                .map(|b| b.backend.name)
                .chain([stack.agents.agents.name]),
        );
        for running in &stack.backends {
            writeln!(
                f,
                "  {:name_width$}  {}",
                running.backend.name, running.mcp_url
            )?;
        }

        let agents = &stack.agents;
        writeln!(
            f,
            "  {:name_width$}  {}  (experts: ask_billing_expert, ask_account_expert, ask_product_expert; {})",
            agents.agents.name, agents.mcp_url, agents.model
        )?;

        writeln!(
            f,
            "\nBackends directly (debugging only: past the gateway, only the backend's own checks):"
        )?;
        let label_width = column_width(
            stack
                .backends
                .iter()
                .map(|b| b.backend.label)
                .chain(["Agents"]),
        );
        for running in &stack.backends {
            writeln!(
                f,
                "  {:label_width$}  {}  ({} random customers + scenario customers 251-259, {})",
                running.backend.label,
                running.direct_mcp_url,
                running.backend.customers,
                running.db_path.display()
            )?;
        }

        writeln!(
            f,
            "  {:label_width$}  {}  (agent service; conversation memory in {})",
            "Agents",
            agents.direct_mcp_url,
            agents.db_path.display()
        )?;

        writeln!(
            f,
            "\nWho reaches which route (others get 403; {} calls per minute per tenant and route):",
            topology::RATE_LIMIT_PER_MINUTE
        )?;
        let tenants = defaults::tenants();
        let tenant_width = column_width(tenants.iter().map(|t| t.name.as_str()).chain(["tenant"]));
        let tid_width = column_width(tenants.iter().map(|t| t.tid.as_str()));
        let columns: Vec<(&str, &[&str])> = BACKENDS
            .iter()
            .map(|b| (b.prefix, b.tenants))
            .chain([(agents.agents.prefix, agents.agents.tenants())])
            .collect();
        write!(f, "  {:tenant_width$}  {:tid_width$}", "tenant", "tid")?;
        for (prefix, _) in &columns {
            write!(f, "  {prefix}")?;
        }
        writeln!(f)?;
        for tenant in &tenants {
            write!(
                f,
                "  {:tenant_width$}  {:tid_width$}",
                tenant.name, tenant.tid
            )?;
            let cells: Vec<String> = columns
                .iter()
                .map(|(prefix, admitted)| {
                    let cell = if admitted.contains(&tenant.tid.as_str()) {
                        "yes"
                    } else {
                        "403"
                    };
                    format!("{cell:width$}", width = prefix.len())
                })
                .collect();
            writeln!(f, "  {}", cells.join("  ").trim_end())?;
        }

        writeln!(
            f,
            "\nSample tokens; send as `Authorization: Bearer <token>`. Each is for one route (its \
             audience is that route's URL) and is refused (401) on every other:"
        )?;
        for sample in &stack.tokens {
            writeln!(
                f,
                "\n  {} / {} [{}] for {}\n  {}",
                sample.tenant,
                sample.subject,
                sample.roles.join(", "),
                sample.route,
                sample.token
            )?;
        }
        let contoso = stack
            .backends
            .first()
            .map(|b| b.mcp_url.as_str())
            .unwrap_or_default();
        writeln!(
            f,
            "\nMore tokens: devstack token --tenant northwind --roles query,billing --resource {contoso} \
             [--sub alice]\n\
             Client credentials: POST {}/token with client_id contoso-query, client_secret \
             contoso-query-secret and resource={contoso} (likewise <tenant>-<role> for every \
             tenant above and the roles billing, security, and the resource of any route above)",
            stack.issuer
        )
    }
}

/// The width of the widest of `cells`, for a column that lines up.
fn column_width<'a>(cells: impl Iterator<Item = &'a str>) -> usize {
    cells.map(str::len).max().unwrap_or(0)
}
