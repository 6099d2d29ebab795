//! The served OpenAPI document as tests read it: its operations, the schema of each documented answer, and
//! strict JSON Schema validation of real answers against them (an object may carry no field its schema does not
//! name). Every check also proves it can fail (`wrong`).

use agentd_testkit::{SseEvent, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;

pub const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document as served, with its component schemas made strict for validation.
pub struct Doc {
    pub root: Value,
    /// `components` with `unevaluatedProperties: false` on every object schema; where one is a part of an
    /// allOf, the allOf names an open copy (`{name}_open`) instead, as the allOf is strict as a whole.
    strict: Value,
    /// The components some allOf is made of.
    parts: BTreeSet<String>,
    /// What `wrong` has shown a wrong document would miss: `component.field`, `METHOD path status code`.
    pub(crate) proven: Mutex<BTreeSet<String>>,
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
        let schemas = strict["schemas"].as_object_mut().unwrap();
        for (name, schema) in schemas.clone() {
            if parts.contains(&format!("#/components/schemas/{name}")) {
                schemas.insert(format!("{name}_open"), schema);
            }
        }
        for (name, schema) in schemas.iter_mut() {
            let composite = ["properties", "allOf", "oneOf"]
                .iter()
                .any(|k| schema.get(*k).is_some());
            if composite && !name.ends_with("_open") {
                schema["unevaluatedProperties"] = json!(false);
            }
        }
        open_parts(&mut strict, &parts);
        Doc {
            root,
            strict,
            parts,
            proven: Mutex::default(),
        }
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
        self.prove_answer(method, path, status, body);
    }

    /// Checks one server-sent event against the route's documented `text/event-stream` answer.
    pub fn check_event(&self, method: &str, path: &str, ev: &SseEvent) {
        let what = format!("{method} {path} event {}", ev.event);
        let errors = self.event_misfits(method, path, ev);
        let mut shown = ev.data.to_string();
        shown.truncate(600);
        assert!(errors.is_empty(), "{what}: {shown}\ndoes not fit: {errors:#?}");
        self.prove_event(method, path, ev);
    }

    /// How one server-sent event misfits the route's documented `text/event-stream` answer.
    pub(crate) fn event_misfits(&self, method: &str, path: &str, ev: &SseEvent) -> Vec<String> {
        let schema = self.schema(method, path, 200, "text/event-stream");
        let frame = json!({"id": ev.id, "event": ev.event, "data": ev.data});
        self.misfits(&schema, &frame)
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let errors = self.misfits(schema, instance);
        let mut shown = instance.to_string();
        shown.truncate(600);
        assert!(errors.is_empty(), "{what}: {shown}\ndoes not fit: {errors:#?}");
    }

    /// Every way `instance` does not fit `schema` (strictly: no unnamed fields), empty when it fits.
    pub(crate) fn misfits(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut schema = schema.clone();
        open_parts(&mut schema, &self.parts);
        let schema = &schema;
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
            .unwrap_or_else(|e| panic!("the schema does not compile: {e}\n{schema}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
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

/// Points every allOf part at the open copy of its component.
fn open_parts(v: &mut Value, parts: &BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get_mut("allOf") {
                for item in items {
                    if let Some(r) = item["$ref"].as_str().filter(|r| parts.contains(*r)) {
                        item["$ref"] = json!(format!("{r}_open"));
                    }
                }
            }
            map.values_mut().for_each(|c| open_parts(c, parts));
        }
        Value::Array(items) => items.iter_mut().for_each(|c| open_parts(c, parts)),
        _ => {}
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
