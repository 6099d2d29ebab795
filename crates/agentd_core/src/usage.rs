//! What a turn's images cost: each image call is counted once, with the quality and size it was made at; the
//! turn's image usage is the upstream's `tool_usage.image_gen` when reported, else the published tables.

use crate::event::ImageUsage;
use agentd_agents::Agent;
use agentd_responses::{ImageGenerationCall, pricing};
use std::collections::HashSet;

/// The image calls of one turn.
#[derive(Debug, Default)]
pub(crate) struct ImageCalls {
    /// Calls already handled (stored or failed): the same image arrives again in `response.completed`.
    seen: HashSet<String>,
    pub partials: u64,
    /// (quality, size) of each finished call.
    done: Vec<(String, String)>,
}

impl ImageCalls {
    /// `true` the first time a call is seen.
    pub(crate) fn first_sight(&mut self, id: &str) -> bool {
        self.seen.insert(id.to_owned())
    }

    /// A call that turned out not to be finished yet: its result may come later.
    pub(crate) fn forget(&mut self, id: &str) {
        self.seen.remove(id);
    }

    /// Counts a finished call (made, and paid for, whether or not it is stored).
    pub(crate) fn finished(&mut self, agent: &Agent, call: &ImageGenerationCall) {
        let quality = call.quality.clone().unwrap_or_else(|| {
            agent
                .image
                .as_ref()
                .map(|i| i.quality.to_string())
                .unwrap_or_default()
        });
        let size = call
            .size
            .clone()
            .unwrap_or_else(|| agent.image.as_ref().map(|i| i.size.clone()).unwrap_or_default());
        self.done.push((quality, size));
    }

    pub(crate) fn count(&self) -> usize {
        self.done.len()
    }

    /// Image usage: `reported` (the upstream's image output tokens) when given, else the published tables.
    pub(crate) fn usage(&self, agent: &Agent, reported: Option<u64>) -> Option<ImageUsage> {
        if self.done.is_empty() {
            return None;
        }
        let model = image_model(agent);
        let output_tokens = reported.unwrap_or_else(|| {
            let finals: u64 = self
                .done
                .iter()
                .map(|(q, s)| pricing::image_output_tokens(model, q, s))
                .sum();
            finals + pricing::PARTIAL_IMAGE_TOKENS * self.partials
        });
        let usd = output_tokens as f64 * pricing::image_output_usd_per_million(model) / 1_000_000.0;
        Some(ImageUsage {
            images: self.done.len() as u64,
            output_tokens,
            estimated_cost_usd: (usd * 1e6).round() / 1e6,
        })
    }

    /// The estimated cost so far (for re-checking the budget as images arrive).
    pub(crate) fn estimated_usd(&self, agent: &Agent) -> f64 {
        self.usage(agent, None).map_or(0.0, |u| u.estimated_cost_usd)
    }
}

fn image_model(agent: &Agent) -> &str {
    agent.image.as_ref().map_or("gpt-image-2", |i| i.model.as_str())
}
