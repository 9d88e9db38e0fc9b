//! Role-based tool exposure: which roles may use which tool.
//!
//! One function, [`RolePolicy::check`], decides both what `tools/list` shows a caller and what
//! `tools/call` lets them run, so the two cannot disagree.
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
    /// The reference's rule: `unlock_account` needs `security_role`, every other tool only an
    /// authenticated caller.
    pub fn reference(security_role: &str) -> Self {
        RolePolicy {
            default: BTreeSet::new(),
            tools: BTreeMap::from([(
                "unlock_account".to_owned(),
                BTreeSet::from([security_role.to_owned()]),
            )]),
        }
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
        }
    }

    #[test]
    fn reference_policy_restricts_only_unlock() {
        let policy = RolePolicy::reference("security");
        assert!(policy.check(&caller(&[]), "get_customer_detail").is_ok());
        let err = policy
            .check(&caller(&["query"]), "unlock_account")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "unlock_account requires one of the roles [security]; the caller has [query]"
        );
        assert!(
            policy
                .check(&caller(&["security"]), "unlock_account")
                .is_ok()
        );
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
