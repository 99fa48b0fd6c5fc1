//! The live dashboard: static assets under `web/`, compiled into the binary so `tickcast serve`
//! needs nothing on disk. `/` is the page; `/assets/...` holds its modules, styles and the
//! vendored chart library.
//!
//! Asset names carry no content hash, so every response is `Cache-Control: no-cache` with a
//! strong `ETag`: browsers revalidate and get a `304` while the binary is unchanged, and never
//! keep running a stale module after an upgrade.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::protocol::Problem;
use crate::protocol::ProblemCode;

/// One embedded file.
struct Asset {
    /// Path below `/assets/` (the page itself is `index.html`, served at `/`).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!("../../web/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("table.js", JS),
    asset!("chart.js", JS),
    asset!("portfolio.js", JS),
    asset!("book.js", JS),
    // The shared TypeScript client (clients/js), compiled: `npm run build` there copies it here.
    asset!("client/book.js", JS),
    asset!("client/client.js", JS),
    asset!("client/connection.js", JS),
    asset!("client/errors.js", JS),
    asset!("client/events.js", JS),
    asset!("client/frames.js", JS),
    asset!("client/index.js", JS),
    asset!("client/msgpack.js", JS),
    asset!("client/rest.js", JS),
    asset!("client/seq.js", JS),
    asset!(
        "vendor/lightweight-charts/lightweight-charts.standalone.production.mjs",
        JS
    ),
    asset!(
        "vendor/lightweight-charts/LICENSE",
        "text/plain; charset=utf-8"
    ),
    asset!(
        "vendor/lightweight-charts/VERSION",
        "text/plain; charset=utf-8"
    ),
];

/// ETags, one per asset in `ASSETS` order: FNV-1a of the bytes, computed once on first use.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header")
        })
        .collect()
});

/// `GET /`: the dashboard page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/{*path}`.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return Problem::new(ProblemCode::NotFound, "no such asset").into_response();
    };
    let asset = &ASSETS[i];
    let etag = ETAGS[i].clone();
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    });
    let cache = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_once_with_a_type() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(
                ASSETS[..i].iter().all(|b| b.path != a.path),
                "{} listed twice",
                a.path
            );
        }
        assert_eq!(ETAGS.len(), ASSETS.len());
    }

    /// A module the shared client's build adds to web/client/ must be served, or the page breaks.
    #[test]
    fn every_shared_client_module_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/client");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("web/client exists") {
            let name = entry.expect("readable dir entry").file_name();
            let path = format!("client/{}", name.to_string_lossy());
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{path} is not embedded"
            );
            seen += 1;
        }
        assert!(seen > 0, "web/client is empty");
    }
}
