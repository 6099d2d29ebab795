//! Turns a request and a [`Scenario`] into a script: the ordered stream events (wire doc §3.3 order, with
//! optional stalls) and the final response object (§2) used both as the terminal event's snapshot and as the
//! non-streaming body. Sequence numbers, chunking and gaps are applied later by the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentd_responses::{
    CreateResponse, IncompleteDetails, ResponseError, ResponseEvent, ResponseObject, StreamError,
    StreamEvent, Tool, ToolUsage,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::builder::{Builder, resolved_tool};
use crate::scenario::{Kind, Scenario, TextPlacement};
use crate::usage;

/// One step of a streamed turn.
#[derive(Debug, Clone)]
pub enum Step {
    Event(Box<StreamEvent>),
    Sleep(Duration),
}

/// A scripted turn.
#[derive(Debug, Clone)]
pub struct Turn {
    pub steps: Vec<Step>,
    /// Final response object (status completed / failed / incomplete).
    pub response: ResponseObject,
}

/// A random id with a wire-like prefix (`resp_`, `msg_`, `ig_`…).
pub fn new_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}_{n:032x}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// An `Other` event from JSON (used for content_part events, unknown events, flat errors).
pub fn other(value: Value) -> StreamEvent {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    match RawValue::from_string(value.to_string()) {
        Ok(raw) => StreamEvent::Other { kind, raw },
        Err(_) => StreamEvent::Error(StreamError {
            message: "fake: bad raw event".to_owned(),
            ..Default::default()
        }),
    }
}

/// The scenario a request asks for (directive, else the implicit rule) and the prompt without directive.
pub fn scenario_for(req: &CreateResponse) -> (Scenario, String) {
    let text = req.last_user_text().unwrap_or_default();
    if let Some((sc, line)) = Scenario::find_in(&text) {
        return (sc, text.replace(&line, "").trim().to_owned());
    }
    let lower = text.to_lowercase();
    let wants_image = ["draw", "image", "picture", "paint", "photo"]
        .iter()
        .any(|w| lower.contains(w));
    let sc = if req.image_tool().is_some() && wants_image {
        Scenario::image()
    } else {
        Scenario::text()
    };
    (sc, text)
}

/// Builds the turn for a request.
pub fn build(req: &CreateResponse, sc: &Scenario, prompt: &str, model: &str, response_id: &str) -> Turn {
    let tools: Vec<Tool> = req
        .tools
        .iter()
        .flatten()
        .map(|t| match t {
            Tool::ImageGeneration(t) => Tool::ImageGeneration(resolved_tool(t)),
            other => other.clone(),
        })
        .collect();
    let mut snapshot = ResponseObject {
        id: response_id.to_owned(),
        object: "response".to_owned(),
        created_at: Some(now()),
        status: "in_progress".to_owned(),
        instructions: req.instructions.clone(),
        model: model.to_owned(),
        parallel_tool_calls: Some(true),
        previous_response_id: req.previous_response_id.clone(),
        store: Some(req.store.unwrap_or(true)),
        tool_choice: Some(req.tool_choice.clone().unwrap_or_else(|| json!("auto"))),
        tools,
        truncation: Some("disabled".to_owned()),
        metadata: Some(req.metadata.clone().unwrap_or_default()),
        safety_identifier: req.safety_identifier.clone(),
        ..Default::default()
    };
    let variant_base = req.previous_response_id.as_deref().map_or(7, |p| {
        p.bytes()
            .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
    });
    let mut b = Builder {
        req,
        sc,
        steps: vec![],
        output: vec![],
        answer: String::new(),
        image_tokens: 0,
        variant_base,
    };
    let created = ResponseEvent {
        sequence_number: None,
        response: snapshot.clone(),
    };
    b.ev(StreamEvent::Created(created.clone()));
    b.ev(StreamEvent::InProgress(created));
    if sc.big_other_mb > 0 {
        let blob = "A".repeat(sc.big_other_mb as usize * 1_000_000);
        b.ev(other(json!({"type":"response.fake_blob","blob":blob})));
    }
    b.unknown_events();

    let short: String = prompt.chars().take(80).collect();
    let mut status = "completed";
    let mut error = None;
    let mut incomplete = None;
    let mut failure_event = None;
    match sc.kind {
        Kind::Text | Kind::Eof => {
            let nul = if sc.nul { "\0" } else { "" };
            let mut text = format!("This is the fake upstream answering:{nul} {short}");
            let pad = sc.text_kb as usize * 1000;
            while text.len() < pad {
                text.push_str(" lorem ipsum dolor sit amet");
            }
            b.message(&text, "completed", true);
        }
        Kind::Image => {
            let text = if sc.images == 1 {
                "Here is your image."
            } else {
                "Here are your images."
            };
            if matches!(sc.text, TextPlacement::Before | TextPlacement::Both) {
                b.message("Sure, creating it now.", "completed", false);
            }
            for n in 0..sc.images {
                b.image(n, prompt, false);
            }
            if matches!(sc.text, TextPlacement::After | TextPlacement::Both) {
                b.message(text, "completed", false);
            }
        }
        Kind::Moderation => {
            b.image(0, prompt, true);
            b.message(
                "I couldn't create that image because the request was blocked by the safety system.",
                "completed",
                false,
            );
        }
        Kind::Error | Kind::FlatError => {
            b.stall();
            let message = "Sorry, something went wrong.";
            failure_event = Some(if sc.kind == Kind::Error {
                StreamEvent::Error(StreamError {
                    sequence_number: None,
                    error_type: Some("server_error".to_owned()),
                    code: Some("server_error".to_owned()),
                    message: message.to_owned(),
                    param: None,
                })
            } else {
                other(json!({"type":"error","code":"server_error","message":message,"param":null}))
            });
            status = "failed";
            error = Some(ResponseError {
                code: Some("server_error".to_owned()),
                message: message.to_owned(),
            });
        }
        Kind::Failed => {
            b.stall();
            status = "failed";
            error = Some(ResponseError {
                code: Some("rate_limit_exceeded".to_owned()),
                message:
                    "Request too large for gpt-5.5 on tokens per min (TPM): Limit 30000, Requested 41000."
                        .to_owned(),
            });
        }
        Kind::Incomplete => {
            b.message("This answer was cut short because", "incomplete", true);
            status = "incomplete";
            incomplete = Some(IncompleteDetails {
                reason: Some("max_output_tokens".to_owned()),
            });
        }
    }
    if let Some(e) = failure_event {
        b.ev(e);
    }
    b.unknown_events();

    snapshot.status = status.to_owned();
    snapshot.output = std::mem::take(&mut b.output);
    snapshot.error = error;
    snapshot.incomplete_details = incomplete;
    snapshot.completed_at = (status == "completed").then(now);
    snapshot.usage = Some(usage::mainline(prompt, &b.answer));
    if b.image_tokens > 0 && !sc.no_tool_usage {
        snapshot.tool_usage = Some(ToolUsage {
            image_gen: Some(usage::image_gen(prompt, b.image_tokens)),
            web_search: None,
        });
    }
    let terminal = ResponseEvent {
        sequence_number: None,
        response: snapshot.clone(),
    };
    let no_terminal = sc.no_terminal && matches!(sc.kind, Kind::Error | Kind::FlatError);
    if !no_terminal {
        b.ev(match status {
            "failed" => StreamEvent::Failed(terminal),
            "incomplete" => StreamEvent::Incomplete(terminal),
            _ => StreamEvent::Completed(terminal),
        });
    }
    Turn {
        steps: b.steps,
        response: snapshot,
    }
}
