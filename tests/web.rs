//! The dashboard: `/` and `/assets/...` are served from the binary with the right types and
//! revalidation headers, and every module the page loads is there.

use crate::util;

/// GETs `path`; checks status and content type; returns (headers, body).
async fn check(
    srv: &util::TestServer,
    path: &str,
    extra: &[(&str, &str)],
    status: u16,
    content_type: Option<&str>,
) -> (Vec<(String, String)>, Vec<u8>) {
    let (got, headers, body) = util::http(srv.addr, "GET", path, extra, b"").await;
    assert_eq!(got, status, "GET {path}");
    if let Some(ty) = content_type {
        assert_eq!(
            util::header(&headers, "content-type"),
            Some(ty),
            "GET {path}"
        );
    }
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_assets_are_served_with_their_types() {
    let srv = util::start(util::config()).await;
    let js = "text/javascript; charset=utf-8";
    let cases = [
        ("/", "text/html; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/app.js", js),
        ("/assets/client/connection.js", js),
        ("/assets/client/msgpack.js", js),
        ("/assets/table.js", js),
        ("/assets/chart.js", js),
        (
            "/assets/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs",
            js,
        ),
        (
            "/assets/vendor/lightweight-charts/LICENSE",
            "text/plain; charset=utf-8",
        ),
    ];
    for (path, ty) in cases {
        let (headers, body) = check(&srv, path, &[], 200, Some(ty)).await;
        assert!(!body.is_empty(), "{path} is empty");
        assert_eq!(
            util::header(&headers, "cache-control"),
            Some("no-cache"),
            "{path}"
        );
        assert!(
            util::header(&headers, "etag").is_some(),
            "{path} has no etag"
        );
    }

    let (_, page) = check(&srv, "/", &[], 200, None).await;
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(r#"<script type="module" src="/assets/app.js">"#));
    assert!(page.contains(r#"<table id="symbols" role="grid" tabindex="0""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_revalidates_and_unknown_assets_are_problems() {
    let srv = util::start(util::config()).await;
    let (headers, _) = check(&srv, "/assets/app.js", &[], 200, None).await;
    let etag = util::header(&headers, "etag").unwrap().to_owned();
    let (_, body) = check(
        &srv,
        "/assets/app.js",
        &[("If-None-Match", &etag)],
        304,
        None,
    )
    .await;
    assert!(body.is_empty());
    check(
        &srv,
        "/assets/app.js",
        &[("If-None-Match", "\"stale\"")],
        200,
        None,
    )
    .await;
    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/"] {
        check(&srv, path, &[], 404, Some("application/problem+json")).await;
    }
}
