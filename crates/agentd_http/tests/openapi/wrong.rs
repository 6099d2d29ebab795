//! A check that cannot fail is worse than none: each real answer that fits its schema is also shown to misfit
//! a copy of the document with any one of the fields it carries dropped from its component schema (at any
//! depth), and an error answer to misfit a copy without its code in the route's list. So it is the document,
//! not a lax validator, that makes the answers fit. Each component field and route code is proven once per
//! test.

use crate::doc::Doc;
use agentd_testkit::SseEvent;
use serde_json::{Value, json};
use std::collections::BTreeSet;

impl Doc {
    /// `body`, fitting the JSON answer of `status` to `method path`, misfits a document without any one of its
    /// fields or its error code.
    pub(crate) fn prove_answer(&self, method: &str, path: &str, status: u16, body: &Value) {
        let schema = self.schema(method, path, status, "application/json");
        let misfits = |wrong: &Doc| {
            let schema = wrong.schema(method, path, status, "application/json");
            wrong.misfits(&schema, body)
        };
        self.prove_fields(&schema, body, &misfits);
        if let Some(code) = body["error"]["code"].as_str() {
            let key = format!("{method} {path} {status} {code}");
            if !self.first_time(&key) {
                return;
            }
            let escaped = path.replace('~', "~0").replace('/', "~1");
            let codes = format!(
                "/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema/allOf/1\
                 /properties/error/properties/code/enum"
            );
            let wrong = self.without(&codes, code);
            assert!(
                !misfits(&wrong).is_empty(),
                "{key}: a document without the code still fits"
            );
        }
    }

    /// `ev`, fitting the route's stream schema, misfits a document without any one of its `data` fields.
    pub(crate) fn prove_event(&self, method: &str, path: &str, ev: &SseEvent) {
        let variants = self.root["components"]["schemas"]["StreamEvent"]["oneOf"]
            .as_array()
            .unwrap();
        let variant = variants
            .iter()
            .find(|v| v["properties"]["event"]["enum"][0] == ev.event.as_str())
            .unwrap_or_else(|| panic!("no StreamEvent variant for {}", ev.event));
        let misfits = |wrong: &Doc| wrong.event_misfits(method, path, ev);
        self.prove_fields(&variant["properties"]["data"], &ev.data, &misfits);
    }

    fn prove_fields(&self, schema: &Value, instance: &Value, misfits: &dyn Fn(&Doc) -> Vec<String>) {
        let mut fields = BTreeSet::new();
        self.fields(schema, instance, &BTreeSet::new(), &mut fields);
        for (component, field) in fields {
            if !self.first_time(&format!("{component}.{field}")) {
                continue;
            }
            let wrong = self.without(&format!("/components/schemas/{component}/properties"), &field);
            assert!(
                !misfits(&wrong).is_empty(),
                "an answer carrying `{field}` still fits when {component} does not name it"
            );
        }
    }

    /// The `(component, field)` pairs `instance` carries where `schema` describes it by a named component,
    /// but for the fields in `shared` (also named by another part of the same allOf, so dropping one is no
    /// error).
    fn fields(
        &self,
        schema: &Value,
        instance: &Value,
        shared: &BTreeSet<String>,
        out: &mut BTreeSet<(String, String)>,
    ) {
        let none = BTreeSet::new();
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            let target = &self.root["components"]["schemas"][name];
            for (field, value) in instance.as_object().into_iter().flatten() {
                if let Some(sub) = target["properties"].get(field) {
                    if !shared.contains(field) {
                        out.insert((name.to_owned(), field.clone()));
                    }
                    self.fields(sub, value, &none, out);
                }
            }
            return self.fields(&json!({"allOf": target["allOf"]}), instance, &none, out);
        }
        let parts = schema["allOf"].as_array().cloned().unwrap_or_default();
        let names: Vec<BTreeSet<String>> = parts.iter().map(|p| self.names(p)).collect();
        for (i, part) in parts.iter().enumerate() {
            let others = names.iter().enumerate().filter(|(j, _)| *j != i);
            let shared: BTreeSet<String> = others.flat_map(|(_, n)| n.iter().cloned()).collect();
            self.fields(part, instance, &shared, out);
        }
        if let (Some(items), Some(values)) = (schema.get("items"), instance.as_array()) {
            values.iter().for_each(|v| self.fields(items, v, &none, out));
        }
        for (field, value) in instance.as_object().into_iter().flatten() {
            if let Some(sub) = schema["properties"].get(field) {
                self.fields(sub, value, &none, out);
            }
        }
    }

    /// The property names a schema (or the component it names) declares at its top level.
    fn names(&self, schema: &Value) -> BTreeSet<String> {
        let target = match schema["$ref"].as_str() {
            Some(r) => &self.root["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        target["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn first_time(&self, key: &str) -> bool {
        self.proven.lock().unwrap().insert(key.to_owned())
    }

    /// A copy without `item` at `pointer`: a key of an object (and of the `required` beside a `properties`), or
    /// a value of an array.
    fn without(&self, pointer: &str, item: &str) -> Doc {
        let mut root = self.root.clone();
        let target = root
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the document has no {pointer}"));
        match target {
            Value::Object(map) => assert!(map.remove(item).is_some(), "no {item} in {pointer}"),
            Value::Array(values) => {
                let before = values.len();
                values.retain(|v| v != item);
                assert!(values.len() < before, "no {item} in {pointer}");
            }
            _ => panic!("{pointer} is neither an object nor an array"),
        }
        if let Some(parent) = pointer.strip_suffix("/properties")
            && let Some(Value::Array(required)) = root.pointer_mut(&format!("{parent}/required"))
        {
            required.retain(|v| v != item);
        }
        Doc::new(root)
    }
}
