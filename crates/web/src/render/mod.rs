//! Server-rendered HTML, one file per page family: the frame and error pages
//! here, the start page (`home`), port pages and search (`port`) and scan pages
//! (`scan`). Pages work without JavaScript; `live.js` only makes the grid fill
//! in place and `home.js` only ticks the Custom choice while its field is used.
//! maud escapes every interpolated value.

mod home;
mod port;
mod scan;

pub use home::{Offer, Visitor, home};
pub use port::{MAX_QUERY, SearchView, port, search};
pub use scan::scan;

use maud::{DOCTYPE, Markup, html};

/// Everything the page frame needs.
pub struct Frame<'a> {
    /// Page title.
    pub title: &'a str,
    /// Reload every N seconds (progress without JavaScript).
    pub refresh: Option<u32>,
}

/// Extras of one page's `<head>` beyond the [`Frame`].
#[derive(Default)]
pub struct Head<'a> {
    /// The page's canonical path (e.g. `/port/21` for `/port/021`).
    pub canonical: Option<&'a str>,
    /// Further scripts (paths under `/static/`), loaded deferred.
    pub scripts: &'a [&'a str],
}

/// Wraps a page body.
pub fn page(frame: Frame<'_>, body: Markup) -> Markup {
    page_with(frame, Head::default(), body)
}

/// The site's icon: a harbour beacon on the accent colour, as SVG (served at
/// `/favicon.ico` and `/static/icon.svg`).
pub const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0b5d7a"/><path d="M16 5l5 6h-3v12h5l-7 4-7-4h5V11h-3z" fill="#fff"/></svg>"##;

/// Wraps a page body, with per-page `<head>` extras.
pub fn page_with(frame: Frame<'_>, head: Head<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (frame.title) " · Harbormaster" }
                link rel="icon" href="/static/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/static/style.css";
                @if let Some(c) = head.canonical { link rel="canonical" href=(c); }
                @if let Some(s) = frame.refresh {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
                script src="/static/live.js" defer {}
                @for s in head.scripts { script src=(s) defer {} }
            }
            body {
                header.site {
                    a.brand href="/" { "Harbormaster" }
                    form.jump role="search" aria-label="Look up a port" action="/search" method="get" {
                        label.vh for="jump-q" { "Port number or name" }
                        input #jump-q name="q" type="search" maxlength=(MAX_QUERY) required placeholder="22, ssh, netbus";
                        button { "Look up" }
                    }
                }
                main #main { (body) }
                footer { "Harbormaster probes only the address a request comes from, and only after you ask. " a href="/search" { "Search ports" } " · " a href="/api/ports/0" { "JSON API" } }
            }
        }
    }
}

/// An error page body.
pub fn error_body(heading: &str, message: &str, extra: Option<Markup>) -> Markup {
    html! {
        section.error {
            h1 { (heading) }
            p { (message) }
            @if let Some(x) = extra { (x) }
            p { a href="/" { "Back to the start page" } " · " a href="/search" { "Search ports" } }
        }
    }
}

/// A text's paragraphs (separated by blank lines in the data) as `<p>`s.
fn paragraphs(text: &str) -> Markup {
    html! { @for p in text.split("\n\n") { p { (p) } } }
}
