//! The served OpenAPI document as tests read it: its operations, the schema of each documented answer, and
//! strict JSON Schema validation of real answers against them (an object may carry no field its schema does not
//! name).

use agentd_testkit::{SseEvent, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document as served, with its component schemas made strict for validation.
pub struct Doc {
    pub root: Value,
    /// `components` with `unevaluatedProperties: false` on every object schema that is not a part of an allOf.
    strict: Value,
}

impl Doc {
    pub async fn fetch(app: &TestApp) -> Doc {
        let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        Doc::new(res.json().await.unwrap())
    }

    pub fn new(root: Value) -> Doc {
        assert_eq!(root["openapi"], "3.1.0");
        let mut parts = BTreeSet::new();
        collect_all_of_parts(&root, &mut parts);
        let mut strict = root["components"].clone();
        for (name, schema) in strict["schemas"].as_object_mut().unwrap() {
            let composite = ["properties", "allOf", "oneOf"]
                .iter()
                .any(|k| schema.get(*k).is_some());
            if composite && !parts.contains(&format!("#/components/schemas/{name}")) {
                schema["unevaluatedProperties"] = json!(false);
            }
        }
        Doc { root, strict }
    }

    /// Every `(method, path)` the document lists.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in self.root["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m).is_some() {
                    ops.insert((m.to_owned(), path.clone()));
                }
            }
        }
        ops
    }

    pub fn op(&self, method: &str, path: &str) -> &Value {
        let op = &self.root["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in the document");
        op
    }

    /// The documented answer of `status`, `$ref`s followed.
    pub fn response(&self, method: &str, path: &str, status: u16) -> Option<&Value> {
        let r = self.op(method, path)["responses"].get(status.to_string())?;
        Some(match r["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/responses/");
                &self.root["components"]["responses"][name]
            }
            None => r,
        })
    }

    /// The schema of the documented answer of `status` in `content_type`.
    pub fn schema(&self, method: &str, path: &str, status: u16, content_type: &str) -> Value {
        let res = self
            .response(method, path, status)
            .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
        let schema = &res["content"][content_type]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status} has no {content_type} schema: {res}"
        );
        schema.clone()
    }

    /// Checks `body` against the documented JSON answer of `status`; panics with every violation.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let schema = self.schema(method, path, status, "application/json");
        self.validate(&schema, body, &format!("{method} {path} → {status}"));
    }

    /// Checks one server-sent event against the route's documented `text/event-stream` answer.
    pub fn check_event(&self, method: &str, path: &str, ev: &SseEvent) {
        let schema = self.schema(method, path, 200, "text/event-stream");
        let frame = json!({"id": ev.id, "event": ev.event, "data": ev.data});
        self.validate(&schema, &frame, &format!("{method} {path} event {}", ev.event));
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let mut wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.strict,
        });
        // A schema that names no properties (`{}`: any JSON) stays open.
        if schema.as_object().is_some_and(|o| !o.is_empty()) {
            wrapped["unevaluatedProperties"] = json!(false);
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&wrapped)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        let mut shown = instance.to_string();
        shown.truncate(600);
        assert!(errors.is_empty(), "{what}: {shown}\ndoes not fit: {errors:#?}");
    }

    /// The `event` names the stream schema allows.
    pub fn event_kinds(&self) -> BTreeSet<String> {
        let one_of = self.root["components"]["schemas"]["StreamEvent"]["oneOf"]
            .as_array()
            .unwrap();
        one_of
            .iter()
            .map(|v| {
                let event = &v["properties"]["event"];
                event["const"]
                    .as_str()
                    .or_else(|| event["enum"][0].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// The scopes each alternative of an operation's security needs (`[]`: no token).
    pub fn scopes(&self, method: &str, path: &str) -> Vec<Vec<String>> {
        let Some(reqs) = self.op(method, path)["security"].as_array() else {
            return Vec::new();
        };
        reqs.iter()
            .map(|r| {
                r["bearer"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }
}

fn collect_all_of_parts(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(parts) = map.get("allOf").and_then(Value::as_array) {
                out.extend(parts.iter().filter_map(|p| p["$ref"].as_str().map(str::to_owned)));
            }
            map.values().for_each(|c| collect_all_of_parts(c, out));
        }
        Value::Array(items) => items.iter().for_each(|c| collect_all_of_parts(c, out)),
        _ => {}
    }
}
