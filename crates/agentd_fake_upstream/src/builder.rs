//! Output items of a scripted turn: the [`Builder`] that appends message and image-call events (§3.3
//! order: added → content/image progress → done) and keeps the finished items for the final response.

use agentd_responses::{
    CreateResponse, ImageGenCallEvent, ImageGenerationCall, ImageGenerationTool, MessageContent, MessageItem,
    OutputItem, OutputItemEvent, OutputTextDeltaEvent, OutputTextDoneEvent, PartialImageEvent, StreamEvent,
};
use serde_json::json;
use serde_json::value::RawValue;

use crate::images::{Format, image_b64};
use crate::scenario::Scenario;
use crate::script::{Step, new_id, other};
use crate::usage;
use crate::validate::parse_size;

pub(crate) fn resolved_tool(tool: &ImageGenerationTool) -> ImageGenerationTool {
    let or = |v: &Option<String>, d: &str| Some(v.clone().unwrap_or_else(|| d.to_owned()));
    ImageGenerationTool {
        model: or(&tool.model, "gpt-image-1"),
        size: or(&tool.size, "auto"),
        quality: or(&tool.quality, "auto"),
        output_format: or(&tool.output_format, "png"),
        background: or(&tool.background, "auto"),
        output_compression: Some(tool.output_compression.unwrap_or(100)),
        partial_images: tool.partial_images,
        input_fidelity: tool.input_fidelity.clone(),
        moderation: or(&tool.moderation, "auto"),
        action: tool.action.clone(),
    }
}

pub(crate) struct Builder<'a> {
    pub(crate) req: &'a CreateResponse,
    pub(crate) sc: &'a Scenario,
    pub(crate) steps: Vec<Step>,
    pub(crate) output: Vec<OutputItem>,
    pub(crate) answer: String,
    pub(crate) image_tokens: u64,
    pub(crate) variant_base: u32,
}

impl Builder<'_> {
    pub(crate) fn ev(&mut self, e: StreamEvent) {
        self.steps.push(Step::Event(Box::new(e)));
    }

    pub(crate) fn stall(&mut self) {
        if !self.sc.stall.is_zero() {
            self.steps.push(Step::Sleep(self.sc.stall));
        }
    }

    pub(crate) fn message(&mut self, text: &str, status: &str, stall: bool) {
        let output_index = self.output.len() as u32;
        let id = new_id("msg");
        let item = |status: &str, content| {
            OutputItem::Message(MessageItem {
                id: Some(id.clone()),
                status: Some(status.to_owned()),
                role: "assistant".to_owned(),
                content,
                phase: None,
            })
        };
        self.ev(StreamEvent::OutputItemAdded(OutputItemEvent {
            sequence_number: None,
            output_index,
            item: item("in_progress", vec![]),
        }));
        let part = |t: &str| json!({"type":"output_text","annotations":[],"logprobs":[],"text":t});
        self.ev(other(
            json!({"type":"response.content_part.added","item_id":id,"output_index":output_index,
            "content_index":0,"part":part("")}),
        ));
        let chars: Vec<char> = text.chars().collect();
        let per = chars.len().div_ceil(self.sc.deltas.max(1) as usize).max(1);
        for (i, piece) in chars.chunks(per).enumerate() {
            self.ev(StreamEvent::OutputTextDelta(OutputTextDeltaEvent {
                sequence_number: None,
                item_id: id.clone(),
                output_index,
                content_index: 0,
                delta: piece.iter().collect(),
            }));
            if i == 0 && stall {
                self.stall();
            }
        }
        self.ev(StreamEvent::OutputTextDone(OutputTextDoneEvent {
            sequence_number: None,
            item_id: id.clone(),
            output_index,
            content_index: 0,
            text: text.to_owned(),
        }));
        self.ev(other(
            json!({"type":"response.content_part.done","item_id":id,"output_index":output_index,
            "content_index":0,"part":part(text)}),
        ));
        let content = vec![MessageContent::OutputText {
            text: text.to_owned(),
            annotations: vec![],
            logprobs: Some(vec![]),
        }];
        let done = item(status, content);
        self.ev(StreamEvent::OutputItemDone(OutputItemEvent {
            sequence_number: None,
            output_index,
            item: done.clone(),
        }));
        self.output.push(done);
        self.answer.push_str(text);
    }

    pub(crate) fn image(&mut self, n: u32, prompt: &str, blocked: bool) {
        let tool = resolved_tool(&self.req.image_tool().cloned().unwrap_or_default());
        let model = tool.model.clone().unwrap_or_default();
        let size = match tool.size.as_deref() {
            Some("auto") | None => "1024x1024".to_owned(),
            Some(s) => s.to_owned(),
        };
        let quality = match tool.quality.as_deref() {
            Some("auto") | None => "medium".to_owned(),
            Some(q) => q.to_owned(),
        };
        let background = match tool.background.as_deref() {
            Some("transparent") => "transparent",
            _ => "opaque",
        };
        let fmt_name = tool.output_format.clone().unwrap_or_else(|| "png".to_owned());
        let format = Format::from_name(Some(&fmt_name));
        let edit = self.req.previous_response_id.is_some();
        let output_index = self.output.len() as u32;
        let id = new_id("ig");
        let call = |status: &str| ImageGenerationCall {
            id: id.clone(),
            status: Some(status.to_owned()),
            ..Default::default()
        };
        let ig = |id: &str| ImageGenCallEvent {
            sequence_number: None,
            output_index,
            item_id: id.to_owned(),
        };
        self.ev(StreamEvent::OutputItemAdded(OutputItemEvent {
            sequence_number: None,
            output_index,
            item: OutputItem::ImageGenerationCall(call("in_progress")),
        }));
        self.ev(StreamEvent::ImageGenCallInProgress(ig(&id)));
        self.ev(StreamEvent::ImageGenCallGenerating(ig(&id)));
        self.stall();
        let mut done = ImageGenerationCall {
            action: Some(if edit { "edit" } else { "generate" }.to_owned()),
            background: Some(background.to_owned()),
            output_format: Some(fmt_name.clone()),
            quality: Some(quality.clone()),
            size: Some(size.clone()),
            revised_prompt: Some(format!("A detailed rendering of: {prompt}")),
            ..call("completed")
        };
        if blocked {
            done.status = Some("failed".to_owned());
            done.revised_prompt = None;
            done.error = Some(
                json!({"type":"image_generation_user_error","code":"moderation_blocked",
                "message":"Your request was rejected by the safety system. If you believe this is an error, \
                           contact us and include the request ID.",
                "param":null,"moderation_details":{"moderation_stage":"input","categories":["violence"]}}),
            );
        } else {
            let (w, h) = parse_size(&size).unwrap_or((1024, 1024));
            let (pw, ph) = ((w / 16).max(8), (h / 16).max(8));
            let variant = self
                .variant_base
                .wrapping_add(n.wrapping_mul(31))
                .wrapping_add(u32::from(edit) * 977);
            let partials = u32::from(self.sc.partials.or(tool.partial_images).unwrap_or(0).min(3));
            for k in 0..partials {
                let b64 = image_b64(
                    format,
                    pw / 2,
                    ph / 2,
                    variant.wrapping_add(k + 1),
                    self.sc.partial_mb as usize * 1_000_000,
                );
                self.ev(StreamEvent::PartialImage(PartialImageEvent {
                    sequence_number: None,
                    output_index,
                    item_id: id.clone(),
                    partial_image_index: k,
                    partial_image_b64: b64,
                    size: Some(size.clone()),
                    quality: Some(quality.clone()),
                    background: Some(background.to_owned()),
                    output_format: Some(fmt_name.clone()),
                }));
            }
            self.ev(StreamEvent::ImageGenCallCompleted(ig(&id)));
            let big = self.sc.big_mb as usize * 1_000_000;
            done.result = Some(image_b64(format, pw, ph, variant, big));
            if self.sc.generating {
                done.status = Some("generating".to_owned());
            }
            self.image_tokens +=
                usage::image_output_tokens(&model, &quality, &size) + 100 * u64::from(partials);
        }
        let done = OutputItem::ImageGenerationCall(done);
        self.ev(StreamEvent::OutputItemDone(OutputItemEvent {
            sequence_number: None,
            output_index,
            item: done.clone(),
        }));
        self.output.push(done);
    }

    pub(crate) fn unknown_events(&mut self) {
        if !self.sc.unknown {
            return;
        }
        self.ev(other(
            json!({"type":"response.fake_future.event","payload":{"nested":[1,2,3]},"note":"ignore me"}),
        ));
        let output_index = self.output.len() as u32;
        let item = json!({"type":"fake_future_item","id":new_id("ff"),"status":"completed","data":{"x":1}});
        if let Ok(raw) = RawValue::from_string(item.to_string()) {
            let item = OutputItem::Other {
                kind: "fake_future_item".to_owned(),
                raw,
            };
            self.ev(StreamEvent::OutputItemAdded(OutputItemEvent {
                sequence_number: None,
                output_index,
                item: item.clone(),
            }));
            self.ev(StreamEvent::OutputItemDone(OutputItemEvent {
                sequence_number: None,
                output_index,
                item: item.clone(),
            }));
            self.output.push(item);
        }
    }
}
