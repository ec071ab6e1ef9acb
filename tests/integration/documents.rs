//! The documents that outlive an upgrade: `status.json` is written by the
//! runner of whatever payload an instance booted with, so the schemas
//! bootforge publishes (`schema run-status|launch|advance|status`) admit a
//! shorter one and one of the previous version, and ignore fields they do
//! not know; the runner's own schema stays strict.

use serde_json::Value as Json;

use crate::{Test, fixtures};

fn published(document: &str) -> jsonschema::Validator {
    let run = Test::new().args(["schema", document]).run().success();
    jsonschema::validator_for(&serde_json::from_str(&run.stdout()).unwrap()).unwrap()
}

fn status(name: &str) -> Json {
    let text = std::fs::read_to_string(fixtures().join("status").join(name)).unwrap();
    serde_json::from_str(&text.replace("INSTANCE", "i-0123456789abcdef0")).unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &Json) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// A report of `launch --wait --json` (and of `advance --json`) whose run
/// wrote `status`.
fn report(status: Json) -> Json {
    serde_json::json!({
        "launched": false, "run": 1, "attempt": 1, "max_attempts": 1,
        "instance_id": status["instance_id"], "state": "terminated", "instance_type": "g6e.xlarge",
        "market": "on-demand", "subnet": null, "private_ip": null, "price_per_hour": 1.861,
        "cost_at_timeout": null, "deadline": null, "profile": "traffic-sign-gpu", "job": "JOB",
        "payload_sha256": "sha", "client_token": null, "no_capacity": [],
        "claim": "/efs/jobs/JOB/claim.json", "claim_shared": true,
        "wait": {"state": "terminated", "status": status, "source": "efs", "outcome": "succeeded",
            "exit_code": 0, "state_reason": null, "terminated_by_bootforge": false},
        "attempts": [], "cost_usd": null
    })
}

#[test]
fn the_published_schemas_admit_a_shorter_and_an_earlier_status_and_fields_they_do_not_know() {
    let run_status = published("run-status");
    let (launch, advance) = (published("launch"), published("advance"));
    let mut later = status("schema-1.json");
    later["schema_version"] = 3.into();
    later["carbon_grams"] = 412.into();
    for (name, doc) in [
        ("short.json", status("short.json")),
        ("schema-1.json", status("schema-1.json")),
        ("a later one", later),
    ] {
        assert_eq!(errors(&run_status, &doc), Vec::<String>::new(), "{name}");
        for v in [&launch, &advance] {
            assert_eq!(
                errors(v, &report(doc.clone())),
                Vec::<String>::new(),
                "{name}"
            );
        }
    }
    // What bootforge needs of one: whose run it is.
    let mut nobody = status("short.json");
    nobody.as_object_mut().unwrap().remove("instance_id");
    assert!(!errors(&run_status, &nobody).is_empty());
}

#[test]
fn the_runners_own_schema_stays_strict() {
    let strict =
        jsonschema::validator_for(&bootforge::aws::status::strict_run_status_schema()).unwrap();
    let missing = errors(&strict, &status("short.json"));
    assert!(
        missing.iter().any(|e| e.contains("schema_version")),
        "{missing:#?}"
    );
    let mut unknown = status("schema-1.json");
    unknown["schema_version"] = 2.into();
    assert_eq!(errors(&strict, &unknown), Vec::<String>::new());
    unknown["carbon_grams"] = 412.into();
    assert!(
        !errors(&strict, &unknown).is_empty(),
        "no field it does not write"
    );
}
