//! Points 10 and 11: deleting a conversation waits for its turn and then takes everything of it (generated
//! images, uploads no other conversation uses, idempotency results, the run log); a turn continues from the
//! response that was current when it took the lease, however close behind the previous turn it starts.

use crate::support::*;
use crate::{conversation_id, run_id};
use agentd_testkit::ServerProcess;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `POST /v1/uploads` of `png`; the attachment's object id.
async fn upload(server: &ServerProcess, tok: &str, png: Vec<u8>) -> String {
    let part = reqwest::multipart::Part::bytes(png)
        .file_name("input.png")
        .mime_str("image/png")
        .unwrap();
    let res = server
        .http()
        .post(server.url("/v1/uploads"))
        .bearer_auth(tok)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["object_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET /v1/attachments/{id}`: its fresh URL, or the refusal.
async fn attachment_url(server: &ServerProcess, tok: &str, id: &str) -> Result<String, Answer> {
    let a = get(server, &format!("/v1/attachments/{id}"), tok).await;
    if a.status == 200 {
        Ok(a.body["url"].as_str().unwrap().to_owned())
    } else {
        Err(a)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_conversation_takes_its_images_uploads_keys_and_run_log() {
    let cluster = Cluster::new("delete").await;
    let server = cluster.replica().await;
    let tok = token(&server, "acme");
    // An input image to upload twice: one the model drew.
    let source = chat(
        &server,
        &tok,
        &json!({"agent": "designer", "message": "draw a cat"}),
    )
    .await;
    let (status, png) = download(source.body["message"]["attachments"][0]["url"].as_str().unwrap()).await;
    assert!(status == 200 && is_png(&png), "{source:?}");
    let only_x = upload(&server, &tok, png.clone()).await;
    let shared = upload(&server, &tok, png).await;

    // X's first turn, with an Idempotency-Key; deleting X while it runs is refused.
    let first = json!({"agent": "designer", "message": "draw a lighthouse #fake:image stall=3000"});
    let mut live = opened(stream_with(&server, &tok, &first, Some("k1")).await);
    let head = live.until(|e| e.event == "image.progress").await;
    let (run, x) = (run_id(&head[0]), conversation_id(&head[0]));
    let path = format!("/v1/conversations/{x}");
    delete(&server, &path, &tok)
        .await
        .assert_error(409, "conversation_busy");
    let done = live.rest().await.pop().unwrap();
    assert_eq!(done.event, "run.completed", "{done:?}");
    let generated = done.data["message"]["attachments"][0]["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // X's second turn uses both uploads; Y uses the shared one.
    let inputs = json!([{"object_id": only_x}, {"object_id": shared}]);
    let second = json!({"conversation_id": x, "message": "in this style", "attachments": inputs});
    assert_eq!(chat(&server, &tok, &second).await.status, 200);
    let in_y = json!({"agent": "designer", "message": "and here", "attachments": [{"object_id": shared}]});
    let y = chat(&server, &tok, &in_y).await;
    assert_eq!(y.status, 200, "{y:?}");

    let mut urls = Vec::new();
    for id in [&generated, &only_x] {
        let url = attachment_url(&server, &tok, id).await.unwrap();
        assert_eq!(download(&url).await.0, 200);
        urls.push(url);
    }
    assert_eq!(delete(&server, &path, &tok).await.status, 204);

    get(&server, &path, &tok)
        .await
        .assert_error(404, "conversation_not_found");
    for (id, url) in [&generated, &only_x].iter().zip(&urls) {
        let gone = attachment_url(&server, &tok, id)
            .await
            .expect_err("its metadata is gone");
        gone.assert_error(404, "attachment_not_found");
        let (status, _) = download(url).await;
        assert_ne!(status, 200, "the bytes of {id} are gone from the bucket");
    }
    let kept = attachment_url(&server, &tok, &shared)
        .await
        .expect("an upload Y uses stays");
    let (status, bytes) = download(&kept).await;
    assert!(status == 200 && is_png(&bytes));
    let y_conv = get(
        &server,
        &format!(
            "/v1/conversations/{}",
            y.body["conversation_id"].as_str().unwrap()
        ),
        &tok,
    )
    .await;
    assert_eq!(
        y_conv.body["messages"][0]["attachments"][0]["object_id"],
        json!(shared)
    );
    resume(&server, &tok, &run, None)
        .await
        .err()
        .expect("the run log went with the conversation")
        .assert_error(404, "run_not_found");

    // The same key and body: the deleted result is not replayed; the turn runs anew.
    let again = opened(stream_with(&server, &tok, &first, Some("k1")).await)
        .rest()
        .await;
    assert_ne!(again[0].data["run_id"], "replay", "{:?}", names(&again));
    assert_ne!(again[0].data["conversation_id"], json!(x));
    assert_eq!(again.last().unwrap().event, "run.completed");
}

/// Sends `body` to `/v1/chat` until it is not refused as busy (bounded); the answer.
async fn first_accepted(server: &ServerProcess, tok: &str, body: &Value) -> (Answer, u32) {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut refused = 0;
    loop {
        let a = chat(server, tok, body).await;
        if a.status != 409 {
            return (a, refused);
        }
        a.assert_error(409, "conversation_busy");
        refused += 1;
        assert!(Instant::now() < deadline, "busy for {EVENT_WAIT:?}");
    }
}

/// Rounds of the race below: in mutation runs, a context read a moment before the lease (even in the same
/// transaction) lost one round in three to one in five; sixteen catch it almost surely.
const ROUNDS: u32 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_continues_from_the_response_current_when_it_took_the_lease() {
    let cluster = Cluster::new("context").await;
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    let tok = token(&a, "acme");
    let start = chat(&a, &tok, &json!({"agent": "assistant", "message": "round 0"})).await;
    assert_eq!(start.status, 200, "{start:?}");
    let conversation = start.body["conversation_id"].clone();
    let mut previous = start.body["response_id"].as_str().unwrap().to_owned();
    for round in 1..=ROUNDS {
        // A turn runs on A; B asks for the next one the whole time, and takes the lease the moment A lets go.
        let slow = json!({"conversation_id": conversation, "message": format!("round {round} first #fake:text stall=1000")});
        let mut on_a = opened(stream(&a, &tok, &slow).await);
        on_a.until(|e| e.event == "message.delta").await;
        let next = json!({"conversation_id": conversation, "message": format!("round {round} second")});
        let (racer, refused) = first_accepted(&b, &tok, &next).await;
        let done = on_a.rest().await.pop().unwrap();
        assert_eq!(done.event, "run.completed", "{done:?}");
        assert_eq!(racer.status, 200, "{racer:?}");
        assert!(refused > 0, "round {round}: B asked while A's turn ran");
        let sent = cluster.upstream_requests();
        let req = |marker: &str| {
            sent.iter()
                .find(|r| r.to_string().contains(marker))
                .unwrap_or_else(|| panic!("no upstream request for {marker:?}"))
                .clone()
        };
        let first = req(&format!("round {round} first"));
        let second = req(&format!("round {round} second"));
        assert_eq!(first["previous_response_id"], json!(previous));
        assert_eq!(
            second["previous_response_id"], done.data["response_id"],
            "round {round}: B's turn continues from A's, which ended the instant before"
        );
        previous = racer.body["response_id"].as_str().unwrap().to_owned();
    }
}
