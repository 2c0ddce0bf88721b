//! Every route of the API in one table: its method, path, the permission it needs, and its
//! request and answer schemas. The router's authorization layer and the OpenAPI document are
//! both made from this table, so the document cannot promise a route the server does not check.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use crate::auth::Permission;

/// One query parameter of a route.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: fn() -> Value,
}

/// A route's body or answer: a JSON schema, or plain text.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    Json(fn(&mut SchemaGenerator) -> schemars::Schema),
    Text,
    /// Raw bytes (`application/octet-stream`): an artifact's package.
    Bytes,
    /// `204 No Content`.
    Empty,
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    /// In axum's syntax: `/api/v1/agent/boxes/{box}/report`. A `{box}` parameter makes the route
    /// box-scoped: only that box's agent may call it.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub permission: Permission,
    pub query: &'static [Query],
    pub request: Option<Body>,
    /// The answer on success, and its status.
    pub response: (u16, Body),
    /// Other answers that are not errors of the request: `202` (queued) and `409` (refused by
    /// the engine) for pipeline actions.
    pub also: &'static [(u16, &'static str, Body)],
    pub tag: &'static str,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

fn duration_schema() -> Value {
    json!({"type": "string", "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"})
}

/// A signed document (a DSSE envelope) or a manifest: JSON the agent verifies itself.
fn document_schema(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

fn count_schema() -> Value {
    json!({"type": "integer", "minimum": 0})
}

use gantry_model::agent as wire;

use super::handlers as h;

/// The answers of a pipeline action besides `200 accepted`.
const DECIDED: &[(u16, &str, Body)] = &[
    (
        202,
        "Queued: not decided within the wait; the audit log will say",
        Body::Json(schema::<super::operator::Decision>),
    ),
    (
        409,
        "Refused by the engine, with its reason",
        Body::Json(schema::<super::operator::Decision>),
    ),
];

/// The answers of an urgent approval besides `200` (recorded, or accepted by the engine).
const URGENT_DECIDED: &[(u16, &str, Body)] = &[
    (
        202,
        "Approved; the engine has not decided yet",
        Body::Json(schema::<super::operator::UrgentRequestView>),
    ),
    (
        409,
        "Approved, and refused by the engine, with its reason",
        Body::Json(schema::<super::operator::UrgentRequestView>),
    ),
];

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/api/v1/health",
        operation_id: "health",
        summary: "Whether the controller is taking commits and issuing commands",
        permission: Permission::Public,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<h::Health>)),
        also: &[],
        tag: "controller",
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        operation_id: "openapi",
        summary: "This document",
        permission: Permission::Public,
        query: &[],
        request: None,
        response: (200, Body::Json(|_| schemars::json_schema!({"type": "object"}))),
        also: &[],
        tag: "controller",
    },
    Route {
        method: "GET",
        path: "/metrics",
        operation_id: "metrics",
        summary: "The controller's own metrics, in the OpenMetrics text format",
        permission: Permission::Public,
        query: &[],
        request: None,
        response: (200, Body::Text),
        also: &[],
        tag: "controller",
    },
    Route {
        method: "POST",
        path: "/api/v1/agent/boxes/{box}/register",
        operation_id: "agent_register",
        summary: "An agent introduces its box (at start and after a 401 or 404)",
        permission: Permission::Agent,
        query: &[],
        request: Some(Body::Json(schema::<wire::Register>)),
        response: (200, Body::Json(schema::<wire::Registered>)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/boxes/{box}/commands",
        operation_id: "agent_commands",
        summary: "Long-poll for the box's commands",
        permission: Permission::Agent,
        query: &[Query {
            name: "wait",
            description: "How long to wait for a command when none is waiting (default 25s, \
                          at most the registration's max_long_poll)",
            schema: duration_schema,
        }],
        request: None,
        response: (200, Body::Json(schema::<wire::CommandBatch>)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "POST",
        path: "/api/v1/agent/boxes/{box}/acknowledge",
        operation_id: "agent_acknowledge",
        summary: "The agent started carrying out a command",
        permission: Permission::Agent,
        query: &[],
        request: Some(Body::Json(schema::<wire::Acknowledge>)),
        response: (200, Body::Json(schema::<wire::Acknowledged>)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "POST",
        path: "/api/v1/agent/boxes/{box}/report",
        operation_id: "agent_report",
        summary: "The box's whole observed state",
        permission: Permission::Agent,
        query: &[],
        request: Some(Body::Json(schema::<wire::Report>)),
        response: (200, Body::Json(schema::<wire::ReportAccepted>)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/artifacts/{digest}",
        operation_id: "agent_artifact_package",
        summary: "An artifact's package (tar + zstd), for an agent of its service",
        permission: Permission::AgentFetch,
        query: &[],
        request: None,
        response: (200, Body::Bytes),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/artifacts/{digest}/attestation",
        operation_id: "agent_artifact_attestation",
        summary: "An artifact's signed provenance (a DSSE envelope), for an agent of its service",
        permission: Permission::AgentFetch,
        query: &[],
        request: None,
        response: (200, Body::Json(document_schema)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/artifacts/{digest}/manifest",
        operation_id: "agent_artifact_manifest",
        summary: "An artifact's manifest exactly as its provenance names it",
        permission: Permission::AgentFetch,
        query: &[],
        request: None,
        response: (200, Body::Json(document_schema)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/trust-list",
        operation_id: "agent_trust_list",
        summary: "The build keys' trust list, signed by the trust root (verify it with the \
                  root configured on the box)",
        permission: Permission::AgentFetch,
        query: &[],
        request: None,
        response: (200, Body::Json(document_schema)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/agent/block-list",
        operation_id: "agent_block_list",
        summary: "The published content block list, signed by the trust root and fresh",
        permission: Permission::AgentFetch,
        query: &[],
        request: None,
        response: (200, Body::Json(document_schema)),
        also: &[],
        tag: "agent",
    },
    Route {
        method: "GET",
        path: "/api/v1/artifacts/{digest}",
        operation_id: "get_artifact",
        summary: "One artifact: commits, authors, signed reviews, builder, signer, blockers, \
                  whether it may deploy",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::artifacts::ArtifactDetail>)),
        also: &[],
        tag: "artifacts",
    },
    Route {
        method: "GET",
        path: "/api/v1/pipelines/{pipeline}/artifacts",
        operation_id: "list_artifacts",
        summary: "A pipeline's artifacts, newest first, with provenance and verdict",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::artifacts::ArtifactList>)),
        also: &[],
        tag: "artifacts",
    },
    Route {
        method: "GET",
        path: "/api/v1/builds",
        operation_id: "list_builds",
        summary: "The build loop: per pipeline, the head being built, the last built and the \
                  last failure (commit and error)",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<crate::builds::BuildsView>)),
        also: &[],
        tag: "artifacts",
    },
    Route {
        method: "GET",
        path: "/api/v1/boxes",
        operation_id: "list_boxes",
        summary: "Every registered box, its target and what it last reported running",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<h::BoxList>)),
        also: &[],
        tag: "fleet",
    },
    Route {
        method: "GET",
        path: "/api/v1/boxes/{box_id}",
        operation_id: "get_box",
        summary: "One box, with its latest report and the commands waiting for it",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<h::BoxDetail>)),
        also: &[],
        tag: "fleet",
    },
    Route {
        method: "GET",
        path: "/api/v1/organisation",
        operation_id: "get_organisation",
        summary: "The pipelines running, and the last refused change with every file's diagnostics",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<crate::server::OrganisationStatus>)),
        also: &[],
        tag: "organisation",
    },
    Route {
        method: "GET",
        path: "/api/v1/pipelines",
        operation_id: "list_pipelines",
        summary: "Every pipeline the caller may read, with its status and artifacts",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::operator::PipelineList>)),
        also: &[],
        tag: "pipelines",
    },
    Route {
        method: "GET",
        path: "/api/v1/pipelines/{pipeline}",
        operation_id: "get_pipeline",
        summary: "One pipeline: stages, lanes, blockers, bakes, rollbacks, artifacts",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<crate::server::PipelineView>)),
        also: &[],
        tag: "pipelines",
    },
    Route {
        method: "GET",
        path: "/api/v1/alarms",
        operation_id: "list_alarms",
        summary: "Every alarm of the pipelines the caller may read, with state, reason, scope and \
                  recent values; each box's last scrape",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::alarms::AlarmList>)),
        also: &[],
        tag: "alarms",
    },
    Route {
        method: "GET",
        path: "/api/v1/pipelines/{pipeline}/alarms",
        operation_id: "get_pipeline_alarms",
        summary: "One pipeline's alarms in every region and organisation-wide",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::alarms::PipelineAlarms>)),
        also: &[],
        tag: "alarms",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/hold",
        operation_id: "hold_pipeline",
        summary: "Hold the pipeline or one stage (a manual blocker)",
        permission: Permission::Hold,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::HoldRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/release",
        operation_id: "release_pipeline",
        summary: "Release a hold",
        permission: Permission::Release,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::ReleaseRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/retry",
        operation_id: "retry_stage",
        summary: "Run a failed stage again with the same artifact",
        permission: Permission::Retry,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::RetryRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/approve",
        operation_id: "approve_stage",
        summary: "Approve an artifact waiting for manual promotion (never your own commit)",
        permission: Permission::Approve,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::ApproveRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/override",
        operation_id: "override_blocker",
        summary: "Lift one kind of blocker for a scope, with a reason, for at most 24 hours",
        permission: Permission::Override,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::OverrideRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/rollback",
        operation_id: "roll_back",
        summary: "Roll back one target, one stage, or an artifact everywhere",
        permission: Permission::RollBack,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::RollbackRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/roll-forward",
        operation_id: "roll_forward",
        summary: "Ask for a newer artifact to replace one that failed in a stage, through every gate",
        permission: Permission::RollForward,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::RollForwardRequest>)),
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "GET",
        path: "/api/v1/pipelines/{pipeline}/urgent",
        operation_id: "list_urgent_requests",
        summary: "Urgent-mode requests waiting for senior approval",
        permission: Permission::Read,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::operator::UrgentRequestList>)),
        also: &[],
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/urgent",
        operation_id: "request_urgent",
        summary: "Ask for urgent mode (bake dialled down) for an artifact",
        permission: Permission::UrgentRequest,
        query: &[],
        request: Some(Body::Json(schema::<super::operator::UrgentRequest>)),
        response: (201, Body::Json(schema::<super::operator::UrgentRequestView>)),
        also: &[],
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/urgent/{request}/approve",
        operation_id: "approve_urgent",
        summary: "A senior approver approves an urgent request (never their own, nor their own commit)",
        permission: Permission::UrgentApprove,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::operator::UrgentRequestView>)),
        also: URGENT_DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "POST",
        path: "/api/v1/pipelines/{pipeline}/urgent/end",
        operation_id: "end_urgent",
        summary: "End urgent mode: bakes are whole again",
        permission: Permission::UrgentRequest,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<super::operator::Decision>)),
        also: DECIDED,
        tag: "pipelines",
    },
    Route {
        method: "GET",
        path: "/api/v1/audit",
        operation_id: "list_audit",
        summary: "The audit log, oldest first, a page at a time",
        permission: Permission::Read,
        query: &[
            Query {
                name: "after",
                description: "Return records numbered above this (default 0)",
                schema: count_schema,
            },
            Query {
                name: "limit",
                description: "At most this many records (default 100, at most 1000)",
                schema: count_schema,
            },
        ],
        request: None,
        response: (200, Body::Json(schema::<h::AuditPage>)),
        also: &[],
        tag: "audit",
    },
    Route {
        method: "GET",
        path: "/api/v1/tokens",
        operation_id: "list_tokens",
        summary: "Every token issued (never its secret)",
        permission: Permission::ManageTokens,
        query: &[],
        request: None,
        response: (200, Body::Json(schema::<h::TokenList>)),
        also: &[],
        tag: "tokens",
    },
    Route {
        method: "POST",
        path: "/api/v1/tokens",
        operation_id: "issue_token",
        summary: "Issue a token for a person or a box; its secret is shown once",
        permission: Permission::ManageTokens,
        query: &[],
        request: Some(Body::Json(schema::<h::IssueToken>)),
        response: (201, Body::Json(schema::<h::IssuedToken>)),
        also: &[],
        tag: "tokens",
    },
    Route {
        method: "DELETE",
        path: "/api/v1/tokens/{token_id}",
        operation_id: "revoke_token",
        summary: "Revoke a token at once",
        permission: Permission::ManageTokens,
        query: &[],
        request: None,
        response: (204, Body::Empty),
        also: &[],
        tag: "tokens",
    },
];

/// The route `method path` (as matched by the router), if any.
pub fn find(method: &str, matched_path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.method == method && route.path == matched_path)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let error = schema::<wire::ErrorBody>(&mut generator);
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = path_parameters(route.path)
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": "string", "minLength": 1}})
            })
            .collect();
        parameters.extend(route.query.iter().map(|query| {
            json!({"name": query.name, "in": "query", "required": false,
                   "description": query.description, "schema": (query.schema)()})
        }));
        let mut responses = serde_json::Map::new();
        let (status, body) = route.response;
        responses.insert(status.to_string(), response(body, "Success", &mut generator));
        for (status, description, body) in route.also {
            responses.insert(status.to_string(), response(*body, description, &mut generator));
        }
        let error_response = json!({
            "description": "The request was refused; `field` names the part at fault",
            "content": {"application/json": {"schema": error.clone()}},
        });
        let mut errors = vec![400, 404, 413, 415, 422, 500, 503];
        if route.permission != Permission::Public {
            errors.extend([401, 403]);
        }
        for status in errors {
            responses.insert(status.to_string(), error_response.clone());
        }
        let mut operation = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": parameters,
            "responses": responses,
            "x-gantry-permission": route.permission,
        });
        if route.permission != Permission::Public {
            operation["security"] = json!([{"bearer": []}]);
        }
        if let Some(Body::Json(request)) = route.request {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": request(&mut generator)}},
            });
        }
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation;
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gantry controller",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The controller's API: agents pull commands and report; people read \
                            and act through roles scoped per team.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

fn response(body: Body, description: &str, generator: &mut SchemaGenerator) -> Value {
    match body {
        Body::Json(schema) => json!({
            "description": description,
            "content": {"application/json": {"schema": schema(generator)}},
        }),
        Body::Text => json!({
            "description": description,
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }),
        Body::Bytes => json!({
            "description": description,
            "content": {"application/octet-stream": {
                "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
        }),
        Body::Empty => json!({"description": description}),
    }
}

/// The `{name}` parameters of a path.
pub fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
}
