//! `schema`: the JSON Schema of the profile format, snippets and their
//! parameters included, for editors with a YAML language server.

use serde_json::{Map, Value as Json, json};

use crate::check::aws_names;
use crate::check::catalog;
use crate::compile::library::Library;
use crate::compile::model::{MAX_ATTEMPTS, RetryOn};
use crate::compile::snippet::{Param, ParamKind, Snippet};

const DURATION: &str = "^([0-9]+[smhd])+$";

fn duration(description: &str) -> Json {
    json!({"type": "string", "pattern": DURATION, "description": format!("{description} (like 90s, 120m, 2h)")})
}

/// An instance type: one the SDK knows when it is built in, else its shape.
fn instance_type() -> Json {
    match aws_names::instance_types() {
        Some(known) => json!({"type": "string", "enum": known}),
        None => json!({"type": "string", "pattern": aws_names::INSTANCE_TYPE}),
    }
}

fn id(pattern: &str, description: &str) -> Json {
    json!({"type": "string", "pattern": pattern, "description": description})
}

fn list_of(item: Json, description: &str) -> Json {
    json!({"type": "array", "items": item, "minItems": 1, "description": description})
}

/// The JSON Schema (draft-07) of a profile whose snippets come from `library`.
pub fn profile_schema(library: &Library) -> Json {
    let mut snippets = Map::new();
    for name in library.snippet_names() {
        let Some(files) = library.snippet(name) else {
            continue;
        };
        // A snippet that does not load is left out; `validate` says why.
        let Ok(snippet) = Snippet::load(name, files) else {
            continue;
        };
        let m = &snippet.manifest;
        let mut params = Map::new();
        let mut required = Vec::new();
        for (param, spec) in &m.params {
            params.insert(param.clone(), param_schema(spec));
            if spec.required && spec.default.is_none() {
                required.push(param.clone());
            }
        }
        let mut with_params = json!({
            "type": "object",
            "description": m.summary,
            "properties": params,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            with_params["required"] = json!(required);
        }
        snippets.insert(
            name.to_string(),
            json!({
                "description": m.summary,
                "anyOf": [
                    with_params,
                    {"type": "null", "description": "use the defaults"},
                    {"const": false, "description": "drop this snippet (from a parent profile)"},
                    {"const": true, "description": "use the defaults"},
                ],
            }),
        );
    }
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://bootforge.invalid/profile.schema.json",
        "title": "bootforge profile",
        "description": "One deployable payload: the instance, the job and the snippets that make its cloud-init user-data.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "summary": {"type": "string", "description": "One line saying what the profile is for"},
            "extends": {"type": "string", "description": "The profile this one starts from (deep merge, this one wins)"},
            "instance": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "region": {"type": "string", "enum": aws_names::REGIONS, "description": "The AWS region, like us-east-2"},
                    "ami": id(aws_names::AMI, "The AMI to boot"),
                    "types": list_of(instance_type(), "Instance types, tried in order"),
                    "subnets": list_of(id(aws_names::SUBNET, "A subnet id"), "Subnets, tried in order"),
                    "availability_zone": id(aws_names::AVAILABILITY_ZONE, "The subnets' zone, checked against the region"),
                    "security_groups": {"type": "array", "items": id(aws_names::SECURITY_GROUP, "A security group id")},
                    "key_pair": {"type": "string", "minLength": 1, "maxLength": 255},
                    "instance_profile": {"type": "string", "description": "The IAM instance profile's name"},
                    "instance_role": {"type": "string", "description": "The IAM role inside the instance profile: its name or its ARN (iam:PassRole is on the role)"},
                    "root_device": {"type": "string", "pattern": "^/dev/"},
                    "root_volume_gb": {"type": "integer", "minimum": 1},
                    "max_spot_price_usd": {"type": "number", "exclusiveMinimum": 0, "description": "The most a spot instance may cost an hour (MaxPrice); the on-demand price when absent"},
                    "market": {"type": "string", "enum": ["on-demand", "spot", "spot-then-on-demand"], "description": "On demand (the default), spot only, or spot first and on demand when spot has no capacity or quota"},
                    "metadata_tags": {"type": "boolean", "description": "Whether the instance may read its tags from the metadata service"},
                    "max_cost_usd": {"type": "number", "minimum": 0, "description": "Refuse to launch when price × (timeout + grace) exceeds this"},
                    "account": id(aws_names::ACCOUNT, "The AWS account, for the ARNs of iam-policy"),
                    "gpu": {"type": "string", "enum": catalog::gpu_models(), "description": "The GPU the instance types must carry"},
                    "tags": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}},
                },
            },
            "job": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "id": id("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "The job's id; launch --set job_id=… sets it per run"),
                    "timeout": duration("The job's budget, counted from boot"),
                    "grace": duration("Time after the timeout before the dead-man's switch"),
                    "kill_after": duration("Between the pipeline's SIGTERM and its SIGKILL"),
                    "user": {"type": "string", "description": "The user the pipeline runs as"},
                    "log_dir": {"type": "string", "pattern": "^/", "description": "Each job writes LOG_DIR/JOB_ID"},
                    "state_dir": {"type": "string", "pattern": "^/", "description": "Local state on the instance"},
                    "host_log_dir": {"type": "string", "pattern": "^/", "description": "Where the launching host sees log_dir (for launch --wait)"},
                    "max_running": {"type": "integer", "minimum": 1, "description": "The most jobs of this profile running at once; a launch beyond it is queued until one ends"},
                    "retry": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["on", "attempts"],
                        "description": "Another attempt of the same run when an attempt ends in an outcome named in `on`",
                        "properties": {
                            "on": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"enum": RetryOn::ALL.map(RetryOn::name)}, "description": "The outcomes that start another attempt; every other one ends the job"},
                            "attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS, "description": "Attempts in all, the first one included"},
                            "on_demand_after": {"type": "integer", "minimum": 0, "description": "Interruptions after which the next attempts are bought on demand"},
                        },
                    },
                },
            },
            "snippets": {
                "type": "object",
                "description": "Snippets in order, each with its parameters",
                "properties": snippets,
                "additionalProperties": false,
            },
            "output": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "compression": {"enum": ["auto", "gzip", "none"]},
                },
            },
        },
    })
}

fn param_schema(spec: &Param) -> Json {
    let mut s = match spec.kind {
        ParamKind::String => json!({"type": "string"}),
        ParamKind::Path => json!({"type": "string", "pattern": "^/"}),
        ParamKind::Integer => json!({"type": "integer"}),
        ParamKind::Number => json!({"type": "number"}),
        ParamKind::Boolean => json!({"type": "boolean"}),
        ParamKind::List => json!({
            "type": "array",
            "items": spec.items.as_deref().map(param_schema).unwrap_or(json!({})),
        }),
        ParamKind::Object => {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (field, f) in &spec.fields {
                props.insert(field.clone(), param_schema(f));
                if f.required && f.default.is_none() {
                    required.push(field.clone());
                }
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
        ParamKind::Map => json!({
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        }),
    };
    if let Some(p) = &spec.pattern {
        let key = if spec.kind == ParamKind::Map {
            "propertyNames"
        } else {
            "pattern"
        };
        let anchored = format!("^(?:{p})$");
        if key == "pattern" {
            s["pattern"] = json!(anchored);
        } else {
            s["propertyNames"] = json!({"pattern": anchored});
        }
    }
    if !spec.summary.is_empty() {
        s["description"] = json!(spec.summary);
    }
    if let Some(min) = spec.min {
        s["minimum"] = json!(min);
    }
    if let Some(max) = spec.max {
        s["maximum"] = json!(max);
    }
    if !spec.allowed.is_empty() {
        s["enum"] = serde_json::to_value(&spec.allowed).unwrap_or_default();
    }
    if let Some(d) = &spec.default {
        s["default"] = serde_json::to_value(d).unwrap_or_default();
    }
    s
}
