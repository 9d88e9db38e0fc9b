//! Role-based tool exposure: which roles may use which tool.
//!
//! One function, [`RolePolicy::check`], decides both what `tools/list` shows a caller and what
//! `tools/call` lets them run, so the two cannot disagree.
//!
//! Without a policy file every service applies [`RolePolicy::least_privilege`]: any platform
//! role reads, only `billing` pays and changes plans, only `security` reads security logs and
//! unlocks, and a token with none of the roles may use nothing.
//!
//! A policy file (TOML) names, per tool, the roles of which a caller needs at least one; tools it
//! does not name fall back to `default`. An empty list means "any authenticated caller":
//!
//! ```toml
//! default = ["query", "billing", "security"]
//! [tools]
//! pay_invoice = ["billing"]
//! update_subscription = ["billing"]
//! unlock_account = ["security"]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Identity;

/// The caller lacks every role that would allow the tool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool} requires one of the roles [{}]; the caller has [{}]", required.join(", "), held.join(", "))]
pub struct MissingRole {
    pub tool: String,
    pub required: Vec<String>,
    pub held: Vec<String>,
}

/// The names of the platform's three roles (`QUERY_ROLE`, `BILLING_ROLE`, `SECURITY_ROLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformRoles {
    pub query: String,
    pub billing: String,
    pub security: String,
}

impl Default for PlatformRoles {
    fn default() -> Self {
        PlatformRoles {
            query: "query".into(),
            billing: "billing".into(),
            security: "security".into(),
        }
    }
}

/// The tools that change billing: paying an invoice, changing a plan or its status.
pub const BILLING_TOOLS: [&str; 2] = ["pay_invoice", "update_subscription"];
/// The tools that touch account security.
pub const SECURITY_TOOLS: [&str; 2] = ["get_security_logs", "unlock_account"];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolePolicy {
    /// Roles for tools not listed in `tools`; empty: any authenticated caller.
    default: BTreeSet<String>,
    tools: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    default: BTreeSet<String>,
    #[serde(default)]
    tools: BTreeMap<String, BTreeSet<String>>,
}

impl RolePolicy {
    /// The default policy: every tool needs one of the platform roles; the billing tools need
    /// `billing` and the security tools `security`. A token with no platform role sees nothing.
    pub fn least_privilege(roles: &PlatformRoles) -> Self {
        let one = |role: &str| BTreeSet::from([role.to_owned()]);
        let tools = BILLING_TOOLS
            .iter()
            .map(|tool| ((*tool).to_owned(), one(&roles.billing)))
            .chain(
                SECURITY_TOOLS
                    .iter()
                    .map(|tool| ((*tool).to_owned(), one(&roles.security))),
            )
            .collect();
        RolePolicy {
            default: BTreeSet::from([
                roles.query.clone(),
                roles.billing.clone(),
                roles.security.clone(),
            ]),
            tools,
        }
    }

    /// The policy as a policy file, which [`RolePolicy::from_toml`] reads back unchanged: what
    /// `--print-policy` shows, and a starting point for a `ROLE_POLICY_FILE`.
    pub fn to_toml(&self) -> String {
        let list = |roles: &BTreeSet<String>| {
            let quoted: Vec<String> = roles
                .iter()
                .map(|r| serde_json::Value::String(r.clone()).to_string())
                .collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut text = format!(
            "# roles of which a caller needs one, for tools not listed below ([] = any caller)\n\
             default = {}\n\n[tools]\n",
            list(&self.default)
        );
        for (tool, roles) in &self.tools {
            text.push_str(&format!("{tool} = {}\n", list(roles)));
        }
        text
    }

    /// Parses a policy file; errors say what is wrong and where.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(RolePolicy {
            default: file.default,
            tools: file.tools,
        })
    }

    /// Tool names the policy mentions, so a service can refuse a policy naming tools it lacks.
    pub fn tools_named(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Every role the policy mentions.
    pub fn roles(&self) -> BTreeSet<String> {
        self.tools
            .values()
            .flatten()
            .chain(&self.default)
            .cloned()
            .collect()
    }

    fn required(&self, tool: &str) -> &BTreeSet<String> {
        self.tools.get(tool).unwrap_or(&self.default)
    }

    /// Whether `identity` may use `tool`.
    pub fn check(&self, identity: &Identity, tool: &str) -> Result<(), MissingRole> {
        let required = self.required(tool);
        if required.is_empty() || required.iter().any(|role| identity.has_role(role)) {
            Ok(())
        } else {
            Err(MissingRole {
                tool: tool.to_owned(),
                required: required.iter().cloned().collect(),
                held: identity.roles.iter().cloned().collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str]) -> Identity {
        Identity {
            subject: "alice".into(),
            object_id: None,
            tenant: "t".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes: BTreeSet::new(),
            client_id: None,
            expires_at: 0,
            audiences: Vec::new(),
            actors: Vec::new(),
        }
    }

    #[test]
    fn least_privilege_gives_writes_only_to_their_role() {
        let policy = RolePolicy::least_privilege(&PlatformRoles::default());
        for roles in [&["query"][..], &["billing"], &["security"]] {
            assert!(policy.check(&caller(roles), "get_customer_detail").is_ok());
            assert!(
                policy
                    .check(&caller(roles), "create_support_ticket")
                    .is_ok()
            );
        }
        assert!(policy.check(&caller(&[]), "get_customer_detail").is_err());
        assert!(policy.check(&caller(&["admin"]), "get_products").is_err());
        let err = policy
            .check(&caller(&["query"]), "pay_invoice")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "pay_invoice requires one of the roles [billing]; the caller has [query]"
        );
        assert!(policy.check(&caller(&["billing"]), "pay_invoice").is_ok());
        assert!(
            policy
                .check(&caller(&["billing"]), "update_subscription")
                .is_ok()
        );
        assert!(
            policy
                .check(&caller(&["billing"]), "unlock_account")
                .is_err()
        );
        assert!(
            policy
                .check(&caller(&["query"]), "get_security_logs")
                .is_err()
        );
        assert!(
            policy
                .check(&caller(&["security"]), "get_security_logs")
                .is_ok()
        );
        assert!(
            policy
                .check(&caller(&["security"]), "unlock_account")
                .is_ok()
        );
        assert!(policy.check(&caller(&["security"]), "pay_invoice").is_err());
    }

    #[test]
    fn role_names_come_from_the_settings() {
        let policy = RolePolicy::least_privilege(&PlatformRoles {
            query: "reader".into(),
            billing: "cashier".into(),
            security: "soc".into(),
        });
        assert!(policy.check(&caller(&["reader"]), "get_products").is_ok());
        assert!(policy.check(&caller(&["query"]), "get_products").is_err());
        assert!(policy.check(&caller(&["cashier"]), "pay_invoice").is_ok());
        assert!(policy.check(&caller(&["soc"]), "unlock_account").is_ok());
    }

    #[test]
    fn the_printed_policy_reads_back_as_the_same_policy() {
        let policy = RolePolicy::least_privilege(&PlatformRoles::default());
        let text = policy.to_toml();
        assert!(text.contains("pay_invoice = [\"billing\"]"), "{text}");
        assert_eq!(RolePolicy::from_toml(&text), Ok(policy));
    }

    #[test]
    fn policy_file_with_default_and_per_tool_roles() {
        let policy = RolePolicy::from_toml(
            "default = [\"query\", \"billing\"]\n[tools]\npay_invoice = [\"billing\"]\nget_products = []\n",
        )
        .expect("parses");
        assert!(
            policy
                .check(&caller(&["query"]), "get_customer_detail")
                .is_ok()
        );
        assert!(policy.check(&caller(&["query"]), "pay_invoice").is_err());
        assert!(policy.check(&caller(&["billing"]), "pay_invoice").is_ok());
        assert!(
            policy.check(&caller(&[]), "get_products").is_ok(),
            "empty list: any caller"
        );
        assert!(policy.check(&caller(&[]), "get_customer_detail").is_err());
        assert_eq!(
            policy.roles(),
            BTreeSet::from(["billing".to_owned(), "query".to_owned()])
        );
    }

    #[test]
    fn policy_file_errors_are_reported() {
        let err = RolePolicy::from_toml("defaults = []").expect_err("unknown key");
        assert!(err.contains("defaults"), "{err}");
        assert!(RolePolicy::from_toml("[tools]\npay_invoice = \"billing\"").is_err());
    }
}
