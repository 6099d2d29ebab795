//! (a) The document lists exactly the routes the router serves, with the methods, statuses and scopes they
//! really have.

use crate::doc::{Doc, METHODS};
use crate::http::{answer, probe, served_paths, token_with};
use agentd_auth::Scope;
use agentd_testkit::TestApp;
use std::collections::BTreeSet;

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let app = TestApp::postgres().await;
    let doc = Doc::fetch(&app).await;
    let served: BTreeSet<String> = served_paths(&agentd_http::router(app.state.clone()))
        .iter()
        .map(|p| agentd_http::openapi_path(p))
        .collect();
    let documented: BTreeSet<String> = doc.root["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "served but not documented"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not served"
    );
    for p in [
        "/",
        "/playground/{file}",
        "/playground/config.json",
        "/openapi.json",
        "/healthz",
        "/readyz",
    ] {
        assert!(documented.contains(p), "{p}");
    }

    // Each documented operation reaches its handler and answers a documented status; other methods are 405.
    let all = app.token("acme", "u1", None);
    let ops = doc.operations();
    for path in &documented {
        for m in METHODS {
            if ops.contains(&(m.to_owned(), path.clone())) {
                let (status, body) = answer(&doc, m, path, probe(&app, m, path, Some(&all))).await;
                let fallback = body["error"]["message"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("No route"));
                assert!(
                    status != 405 && !fallback,
                    "{m} {path} is documented but not served: {body}"
                );
            } else {
                let res = probe(&app, m, path, Some(&all)).send().await.unwrap();
                assert_eq!(res.status(), 405, "{m} {path} is served but not documented");
            }
        }
    }

    // The bearer scheme: no token is 401 exactly where the document asks for one; a token without the named
    // scopes is 403; each documented alternative alone is enough.
    for (m, path) in &ops {
        let alternatives = doc.scopes(m, path);
        let (status, _) = answer(&doc, m, path, probe(&app, m, path, None)).await;
        assert_eq!(
            status == 401,
            !alternatives.is_empty(),
            "{m} {path} without a token: {status}"
        );
        if alternatives.is_empty() {
            continue;
        }
        let named: Vec<String> = alternatives.concat();
        let others: Vec<String> = Scope::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .filter(|s| !named.contains(s))
            .collect();
        let (status, body) = answer(
            &doc,
            m,
            path,
            probe(&app, m, path, Some(&token_with(&app, &others))),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{m} {path}"
        );
        for scopes in &alternatives {
            let (status, _) = answer(
                &doc,
                m,
                path,
                probe(&app, m, path, Some(&token_with(&app, scopes))),
            )
            .await;
            assert!(
                !matches!(status, 401 | 403),
                "{m} {path} with {scopes:?}: {status}"
            );
        }
    }
}
