//! Who may do what: tokens, principals, roles scoped per team, and the permission every route
//! needs.
//!
//! A token is `gantry_` and 64 hex digits from the system's random source, shown once when it is
//! issued; the database keeps only its SHA-256. A token belongs to a [`Principal`]: a person with
//! role grants (each for one team or the whole organisation), or the agent of one box.
//!
//! Roles ([`Role`]) grant [`Permission`]s; nothing else does (deny by default):
//!
//! | role | may |
//! | --- | --- |
//! | viewer | read |
//! | developer | read, retry and hold its team's pipelines, ask for urgent mode |
//! | approver | read, approve manual stages |
//! | senior approver | read, approve, give urgent-mode approvals |
//! | operator | read, hold, release, override (reason, expiry ≤ 24 h), retry, roll back, roll forward, ask for urgent mode |
//! | admin | read, manage tokens and configuration |
//!
//! An agent token may only use the agent routes, and only for its own box (or, for what every
//! box fetches, artifacts of its own service and the signed lists). No role lifts a
//! review, signature or capacity-floor check: those live in the engine and the supply chain,
//! which no route can bypass. Nobody approves their own commit or their own request
//! ([`separation_of_duties`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The prefix of every token, so a leaked one is recognisable in logs and by secret scanners.
pub const TOKEN_PREFIX: &str = "gantry_";

/// The longest an override may last: a day, after which a person must decide again.
pub const MAX_OVERRIDE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Developer,
    Approver,
    SeniorApprover,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Developer,
        Role::Approver,
        Role::SeniorApprover,
        Role::Operator,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Approver => "approver",
            Role::SeniorApprover => "senior_approver",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// What the role grants: the table in the module documentation.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(permission, Read),
            Role::Developer => matches!(permission, Read | Retry | Hold | UrgentRequest),
            Role::Approver => matches!(permission, Read | Approve),
            Role::SeniorApprover => matches!(permission, Read | Approve | UrgentApprove),
            Role::Operator => matches!(
                permission,
                Read | Hold | Release | Override | Retry | RollBack | RollForward | UrgentRequest
            ),
            Role::Admin => matches!(permission, Read | ManageTokens | Configure),
        }
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anyone, without a token: liveness, the OpenAPI document, the metrics.
    Public,
    Read,
    Hold,
    Release,
    Retry,
    Approve,
    /// Ask for (or end) urgent mode; senior approvers approve it.
    UrgentRequest,
    UrgentApprove,
    Override,
    RollBack,
    RollForward,
    ManageTokens,
    Configure,
    /// The agent of the box the route names.
    Agent,
    /// Any agent, for what boxes fetch by digest or in common (artifacts of its own service,
    /// which the handler checks; the signed trust and block lists). No person's role grants it.
    AgentFetch,
}

/// One role, for one team or (`team: None`) the whole organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub role: Role,
    /// The team whose pipelines the role covers; absent for every team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// Whom a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    Person {
        /// The account name shown in the audit log.
        name: String,
        /// The natural person behind the account (e.g. their email): two accounts of one person
        /// are one person for separation of duties.
        person: String,
        grants: Vec<Grant>,
    },
    /// The agent of one box, of one service (whose pipelines deploy to the box).
    Agent {
        box_id: String,
        #[serde(default)]
        service: String,
    },
}

/// What a request touches, for the scope check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Organisation-wide: tokens, configuration, the audit log, lists.
    Organisation,
    /// One team's pipeline.
    Team(&'a str),
    /// One box.
    Box(&'a str),
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this route needs a token: send `Authorization: Bearer gantry_…`")]
    Unauthenticated,
    #[error("the token is unknown or revoked")]
    UnknownToken,
    #[error("{who} may not {permission:?} here: no grant of theirs covers it")]
    Forbidden { who: String, permission: Permission },
    #[error("{who} may not approve their own {what}")]
    OwnChange { who: String, what: String },
}

impl Principal {
    pub fn name(&self) -> String {
        match self {
            Principal::Person { name, .. } => name.clone(),
            Principal::Agent { box_id, .. } => format!("agent:{box_id}"),
        }
    }

    /// Whether this principal may use `permission` on `scope`.
    pub fn allows(&self, permission: Permission, scope: Scope<'_>) -> bool {
        if permission == Permission::Public {
            return true;
        }
        match self {
            Principal::Agent { box_id, .. } => {
                (permission == Permission::Agent && scope == Scope::Box(box_id.as_str()))
                    || permission == Permission::AgentFetch
            }
            Principal::Person { grants, .. } => grants.iter().any(|grant| {
                grant.role.grants(permission)
                    && match (&grant.team, scope) {
                        (None, _) => true,
                        // A team grant covers that team's pipelines, and reading lists (which
                        // the handler filters to what the grant may see).
                        (Some(team), Scope::Team(of)) => team == of,
                        (Some(_), Scope::Organisation) => permission == Permission::Read,
                        (Some(_), Scope::Box(_)) => false,
                    }
            }),
        }
    }

    pub fn check(&self, permission: Permission, scope: Scope<'_>) -> Result<(), Denied> {
        if self.allows(permission, scope) {
            Ok(())
        } else {
            Err(Denied::Forbidden { who: self.name(), permission })
        }
    }
}

/// Refuses an approval by a person who authored one of the commits it covers or who made the
/// request it approves. `authors` and `requester` are natural-person ids.
pub fn separation_of_duties(
    approver: &Principal,
    authors: &[String],
    requester: Option<&str>,
) -> Result<(), Denied> {
    let Principal::Person { name, person, .. } = approver else {
        return Err(Denied::Forbidden { who: approver.name(), permission: Permission::Approve });
    };
    let same = |other: &str| other.eq_ignore_ascii_case(person);
    if authors.iter().any(|author| same(author)) {
        return Err(Denied::OwnChange { who: name.clone(), what: "commit".into() });
    }
    if requester.is_some_and(same) {
        return Err(Denied::OwnChange { who: name.clone(), what: "request".into() });
    }
    Ok(())
}

/// A fresh token's secret text.
pub fn new_token() -> Result<String, crate::Error> {
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(crate::random_bytes()?)))
}

/// The stored form of a token: hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token as the API lists it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    pub principal: Principal,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The live tokens, by hash, loaded from the database and kept in step with it.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: BTreeMap<String, (String, Principal)>,
}

impl Tokens {
    pub fn insert(&mut self, hash: String, id: String, principal: Principal) {
        self.by_hash.insert(hash, (id, principal));
    }

    pub fn revoke(&mut self, id: &str) {
        self.by_hash.retain(|_, (token_id, _)| token_id != id);
    }

    /// The principal a presented token speaks for.
    pub fn authenticate(&self, token: &str) -> Result<&Principal, Denied> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(Denied::UnknownToken);
        }
        self.by_hash.get(&token_hash(token)).map(|(_, p)| p).ok_or(Denied::UnknownToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(grants: &[(Role, Option<&str>)]) -> Principal {
        Principal::Person {
            name: "ana".into(),
            person: "ana@example.com".into(),
            grants: grants
                .iter()
                .map(|(role, team)| Grant { role: *role, team: team.map(String::from) })
                .collect(),
        }
    }

    fn check(principal: &Principal, permission: Permission, scope: Scope<'_>, allowed: bool) {
        assert_eq!(
            principal.allows(permission, scope),
            allowed,
            "{principal:?} {permission:?} {scope:?}"
        );
    }

    #[test]
    fn grants_follow_roles_and_teams() {
        let developer = person(&[(Role::Developer, Some("payments"))]);
        check(&developer, Permission::Retry, Scope::Team("payments"), true);
        check(&developer, Permission::Hold, Scope::Team("payments"), true);
        check(&developer, Permission::Retry, Scope::Team("storefront"), false);
        check(&developer, Permission::RollBack, Scope::Team("payments"), false);
        check(&developer, Permission::Read, Scope::Organisation, true);
        check(&developer, Permission::ManageTokens, Scope::Organisation, false);
        let operator = person(&[(Role::Operator, None)]);
        check(&operator, Permission::Override, Scope::Team("storefront"), true);
        check(&operator, Permission::Approve, Scope::Team("storefront"), false);
        check(&operator, Permission::Agent, Scope::Box("b1"), false);
        let admin = person(&[(Role::Admin, None)]);
        check(&admin, Permission::ManageTokens, Scope::Organisation, true);
        check(&admin, Permission::RollBack, Scope::Team("payments"), false);
        let nobody = person(&[]);
        check(&nobody, Permission::Read, Scope::Organisation, false);
        check(&nobody, Permission::Public, Scope::Organisation, true);
    }

    #[test]
    fn an_agent_acts_for_its_own_box_only() {
        let agent = Principal::Agent { box_id: "b1".into(), service: "s".into() };
        check(&agent, Permission::Agent, Scope::Box("b1"), true);
        check(&agent, Permission::Agent, Scope::Box("b2"), false);
        check(&agent, Permission::Read, Scope::Organisation, false);
        check(&agent, Permission::AgentFetch, Scope::Organisation, true);
        let operator = person(&[(Role::Operator, None)]);
        check(&operator, Permission::AgentFetch, Scope::Organisation, false);
    }

    #[test]
    fn nobody_approves_their_own_commit_or_request() {
        let approver = person(&[(Role::Approver, None)]);
        let authors = ["bo@example.com".to_string(), "ANA@example.com".to_string()];
        assert!(matches!(
            separation_of_duties(&approver, &authors, None),
            Err(Denied::OwnChange { .. })
        ));
        assert!(matches!(
            separation_of_duties(&approver, &authors[..1], Some("ana@example.com")),
            Err(Denied::OwnChange { .. })
        ));
        assert_eq!(separation_of_duties(&approver, &authors[..1], Some("bo@example.com")), Ok(()));
    }

    #[test]
    fn tokens_are_found_by_hash_and_forgotten_when_revoked() {
        let mut tokens = Tokens::default();
        let secret = new_token().unwrap();
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        tokens.insert(
            token_hash(&secret),
            "t1".into(),
            Principal::Agent { box_id: "b".into(), service: "s".into() },
        );
        assert!(tokens.authenticate(&secret).is_ok());
        assert_eq!(tokens.authenticate("gantry_00"), Err(Denied::UnknownToken));
        tokens.revoke("t1");
        assert_eq!(tokens.authenticate(&secret), Err(Denied::UnknownToken));
    }
}
