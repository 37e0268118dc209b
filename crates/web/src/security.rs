//! Headers every response carries, so that a browser holds our pages to what
//! they need: our own scripts, styles and forms only, never inside a frame, no
//! referrer sent to the links on port pages, no content-type guessing, and no
//! caching of pages that carry a visitor's address, token or results.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The policy of every page: no inline script or style (the pages have none),
/// nothing from other origins, no framing, forms post only to us.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Adds the security headers, and `Cache-Control: no-store` unless the
/// handler marked the response `public` (the static assets do).
pub async fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Only public assets may be cached (their handlers say so); everything else
    // carries an address, a token or results. (Event streams come with
    // `no-cache` from axum; `no-store` is stricter.)
    let public = h
        .get(header::CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes().starts_with(b"public"));
    if !public {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
