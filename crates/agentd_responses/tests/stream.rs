//! Streaming behaviour of the client against the real-HTTP fake upstream: text, images, errors, terminal
//! events, EOF, idle timeout, size cap, big single-line events, unknown events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use agentd_fake_upstream::{FakeConfig, FakeUpstream, Scenario};
use agentd_responses::{Error, OutputItem, ResponsesClient, StreamEvent, TimeoutKind};
use common::*;

fn events(items: Vec<Result<StreamEvent, Error>>) -> Vec<StreamEvent> {
    items.into_iter().map(|r| r.unwrap()).collect()
}

#[tokio::test]
async fn text_stream_deltas_match_final_text() {
    let fake = fake().await;
    let client = client(&fake);
    let mut stream = client
        .stream(&request(&format!(
            "hello {}",
            Scenario::text().deltas(5).directive()
        )))
        .await
        .unwrap();
    assert!(stream.request_id().unwrap().starts_with("req_"));
    let mut items = Vec::new();
    while let Some(item) = futures_util::StreamExt::next(&mut stream).await {
        items.push(item.unwrap());
    }
    let deltas: String = items
        .iter()
        .filter_map(|e| match e {
            StreamEvent::OutputTextDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        items
            .iter()
            .filter(|e| matches!(e, StreamEvent::OutputTextDelta(_)))
            .count(),
        5
    );
    let last = items.last().unwrap();
    assert!(matches!(last, StreamEvent::Completed(_)));
    assert_eq!(last.response().unwrap().output_text(), deltas);
    for (i, e) in items.iter().enumerate() {
        assert_eq!(e.sequence_number(), Some(i as u64), "{}", e.event_type());
    }
    // The request the fake saw is the one we meant to send.
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test-secret"));
}

#[tokio::test]
async fn done_marker_is_tolerated() {
    let fake = FakeUpstream::start(FakeConfig {
        send_done: true,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let items = events(collect(&client(&fake), &request("just text")).await);
    assert!(matches!(items.last(), Some(StreamEvent::Completed(_))));
}

#[tokio::test]
async fn image_stream_with_partials() {
    let fake = fake().await;
    let req = request(&format!(
        "draw a cat {}",
        Scenario::image().partials(2).directive()
    ));
    let items = events(collect(&client(&fake), &req).await);
    let partials: Vec<_> = items
        .iter()
        .filter_map(|e| match e {
            StreamEvent::PartialImage(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(partials.len(), 2);
    assert_eq!(partials[1].partial_image_index, 1);
    assert!(decode(&partials[0].partial_image_b64.as_str()).starts_with(PNG_MAGIC));
    let done = items
        .iter()
        .find_map(|e| match e {
            StreamEvent::OutputItemDone(d) => match &d.item {
                OutputItem::ImageGenerationCall(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert!(done.is_done());
    assert!(decode(&done.result.as_ref().unwrap().as_str()).starts_with(PNG_MAGIC));
    let StreamEvent::Completed(c) = items.last().unwrap() else {
        panic!("not completed")
    };
    let call = c.response.image_calls().next().unwrap();
    assert_eq!(call.result, done.result);
    let image_gen = c
        .response
        .tool_usage
        .as_ref()
        .unwrap()
        .image_gen
        .as_ref()
        .unwrap();
    assert_eq!(image_gen.output_tokens, 196 + 200);
    assert_eq!(c.response.output_text(), "Here is your image.");
}

#[tokio::test]
async fn nested_error_event_then_failed() {
    let fake = fake().await;
    let items = events(collect(&client(&fake), &request(&Scenario::error().directive())).await);
    let err = items
        .iter()
        .find_map(|e| match e {
            StreamEvent::Error(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(err.error_type.as_deref(), Some("server_error"));
    assert_eq!(err.code.as_deref(), Some("server_error"));
    assert_eq!(err.message, "Sorry, something went wrong.");
    assert!(err.sequence_number.is_some());
    let StreamEvent::Failed(f) = items.last().unwrap() else {
        panic!("not failed")
    };
    assert_eq!(
        f.response.error.as_ref().unwrap().code.as_deref(),
        Some("server_error")
    );
}

#[tokio::test]
async fn flat_error_event_then_failed() {
    let fake = fake().await;
    let items = events(collect(&client(&fake), &request(&Scenario::flat_error().directive())).await);
    let StreamEvent::Error(err) = &items[items.len() - 2] else {
        panic!("no error event")
    };
    assert_eq!(err.code.as_deref(), Some("server_error"));
    assert_eq!(err.error_type, None);
    assert_eq!(err.message, "Sorry, something went wrong.");
    assert!(matches!(items.last(), Some(StreamEvent::Failed(_))));
}

#[tokio::test]
async fn error_event_then_eof_is_unexpected_eof() {
    let fake = fake().await;
    let items = collect(
        &client(&fake),
        &request(&Scenario::error().no_terminal().directive()),
    )
    .await;
    assert!(matches!(items[items.len() - 2], Ok(StreamEvent::Error(_))));
    assert!(matches!(items.last(), Some(Err(Error::UnexpectedEof))));
}

#[tokio::test]
async fn failed_only_and_incomplete() {
    let fake = fake().await;
    let client = client(&fake);
    let items = events(collect(&client, &request(&Scenario::failed().directive())).await);
    let StreamEvent::Failed(f) = items.last().unwrap() else {
        panic!("not failed")
    };
    assert_eq!(f.response.status, "failed");
    assert_eq!(
        f.response.error.as_ref().unwrap().code.as_deref(),
        Some("rate_limit_exceeded")
    );

    let items = events(collect(&client, &request(&Scenario::incomplete().directive())).await);
    let StreamEvent::Incomplete(i) = items.last().unwrap() else {
        panic!("not incomplete")
    };
    assert_eq!(
        i.response.incomplete_details.as_ref().unwrap().reason.as_deref(),
        Some("max_output_tokens")
    );
}

#[tokio::test]
async fn eof_mid_stream_is_unexpected_eof_then_end() {
    let fake = fake().await;
    let items = collect(&client(&fake), &request(&Scenario::eof().directive())).await;
    assert_eq!(items.len(), 5, "4 events then the error");
    assert!(items[..4].iter().all(Result::is_ok));
    assert!(matches!(items[4], Err(Error::UnexpectedEof)));
}

#[tokio::test]
async fn idle_gap_longer_than_idle_timeout() {
    let fake = fake().await;
    let client = ResponsesClient::new(agentd_responses::ClientConfig {
        idle_timeout: Duration::from_millis(200),
        ..config(&fake)
    })
    .unwrap();
    let req = request(&Scenario::text().stall(Duration::from_secs(3)).directive());
    let items = collect(&client, &req).await;
    assert!(matches!(
        items.last(),
        Some(Err(Error::Timeout(TimeoutKind::Idle)))
    ));
}

#[tokio::test]
async fn total_timeout_fires() {
    let fake = fake().await;
    let client = ResponsesClient::new(agentd_responses::ClientConfig {
        total_timeout: Duration::from_millis(300),
        ..config(&fake)
    })
    .unwrap();
    let req = request(
        &Scenario::text()
            .gap(Duration::from_millis(100))
            .deltas(20)
            .directive(),
    );
    let items = collect(&client, &req).await;
    assert!(matches!(
        items.last(),
        Some(Err(Error::Timeout(TimeoutKind::Total)))
    ));
}

#[tokio::test]
async fn event_larger_than_cap_is_rejected() {
    let fake = fake().await;
    let client = ResponsesClient::new(agentd_responses::ClientConfig {
        max_event_bytes: 1024 * 1024,
        ..config(&fake)
    })
    .unwrap();
    for sc in [Scenario::image().big(3), Scenario::text().big_other(3)] {
        let items = collect(&client, &request(&format!("draw {}", sc.directive()))).await;
        assert!(
            matches!(items.last(), Some(Err(Error::EventTooLarge { limit: 1_048_576 }))),
            "{:?}",
            items.last().map(|r| r.as_ref().err())
        );
    }
}

#[tokio::test]
async fn big_single_line_events_in_small_writes() {
    let fake = fake().await;
    let client = client(&fake);
    let req = request(&Scenario::text().big_other(8).chunk(1460).directive());
    let items = events(collect(&client, &req).await);
    let blob = items
        .iter()
        .find_map(|e| match e {
            StreamEvent::Other { kind, raw } if kind == "response.fake_blob" => Some(raw.get().len()),
            _ => None,
        })
        .unwrap();
    assert!(blob > 8_000_000);
    assert!(matches!(items.last(), Some(StreamEvent::Completed(_))));

    let req = request(&format!("draw {}", Scenario::image().big(6).directive()));
    let items = events(collect(&client, &req).await);
    let StreamEvent::Completed(c) = items.last().unwrap() else {
        panic!("not completed")
    };
    let bytes = decode(
        &c.response
            .image_calls()
            .next()
            .unwrap()
            .result
            .as_ref()
            .unwrap()
            .as_str(),
    );
    assert!(bytes.len() >= 6_000_000 && bytes.starts_with(PNG_MAGIC));
}

#[tokio::test]
async fn unknown_events_and_items_surface_as_other() {
    let fake = fake().await;
    let req = request(&format!("draw {}", Scenario::image().unknown().directive()));
    let items = events(collect(&client(&fake), &req).await);
    assert!(
        items
            .iter()
            .any(|e| matches!(e, StreamEvent::Other { kind, .. } if kind == "response.fake_future.event"))
    );
    assert!(
        items
            .iter()
            .any(|e| matches!(e, StreamEvent::Other { kind, .. } if kind == "response.content_part.added"))
    );
    let StreamEvent::Completed(c) = items.last().unwrap() else {
        panic!("not completed")
    };
    assert!(
        c.response
            .output
            .iter()
            .any(|i| matches!(i, OutputItem::Other { kind, .. } if kind == "fake_future_item"))
    );
}

#[tokio::test]
async fn generating_status_with_result_is_done() {
    let fake = fake().await;
    let req = request(&format!("draw {}", Scenario::image().generating().directive()));
    let items = events(collect(&client(&fake), &req).await);
    let StreamEvent::Completed(c) = items.last().unwrap() else {
        panic!("not completed")
    };
    let call = c.response.image_calls().next().unwrap();
    assert_eq!(call.status.as_deref(), Some("generating"));
    assert!(call.is_done());
}

#[tokio::test]
async fn moderation_blocked_call_inside_completed_response() {
    let fake = fake().await;
    let items = events(collect(&client(&fake), &request(&Scenario::moderation().directive())).await);
    let StreamEvent::Completed(c) = items.last().unwrap() else {
        panic!("not completed")
    };
    let call = c.response.image_calls().next().unwrap();
    assert!(!call.is_done() && call.is_failed());
    assert_eq!(call.error_code(), Some("moderation_blocked"));
    assert!(!c.response.output_text().is_empty());
}

#[tokio::test]
async fn large_events_wait_for_a_slot_and_get_it_once_the_holder_has_handled_its_event() {
    let fake = fake().await;
    let client = ResponsesClient::new(agentd_responses::ClientConfig {
        large_events_at_once: 1,
        ..config(&fake)
    })
    .unwrap();
    let req = request(&format!("draw {}", Scenario::image().big(3).directive()));
    // The index of the image's output_item.done in a stream's events.
    async fn to_image(s: &mut agentd_responses::EventStream) {
        loop {
            let ev = futures_util::StreamExt::next(s).await.unwrap().unwrap();
            if let StreamEvent::OutputItemDone(d) = ev
                && matches!(d.item, OutputItem::ImageGenerationCall(_))
            {
                return;
            }
        }
    }
    let mut a = client.stream(&req).await.unwrap();
    to_image(&mut a).await;
    // A holds the one slot until it asks for more; B stops at its image meanwhile.
    let mut b = client.stream(&req).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), to_image(&mut b))
            .await
            .is_err(),
        "B read its image while A held the slot"
    );
    // A reads on past its image: the slot passes to B (A's response.completed, also large, queues behind it).
    let a_rest = tokio::spawn(async move {
        let mut n = 0;
        while let Some(ev) = futures_util::StreamExt::next(&mut a).await {
            ev.unwrap();
            n += 1;
        }
        n
    });
    tokio::time::timeout(Duration::from_secs(20), to_image(&mut b))
        .await
        .expect("B gets the slot once A has handled its image");
    drop(b);
    assert!(a_rest.await.unwrap() > 0, "A finishes once B is gone");
}
