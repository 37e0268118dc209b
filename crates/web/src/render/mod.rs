//! Server-rendered HTML, one file per page family: the frame and error pages
//! here, the start page (`home`), port pages (`port`) and scan pages (`scan`).
//! Pages work without JavaScript; `live.js` only makes the grid fill in place.
//! maud escapes every interpolated value.

mod home;
mod port;
mod scan;

pub use home::{Offer, Visitor, home};
pub use port::port;
pub use scan::scan;

use maud::{DOCTYPE, Markup, html};

/// Everything the page frame needs.
pub struct Frame<'a> {
    /// Page title.
    pub title: &'a str,
    /// Reload every N seconds (progress without JavaScript).
    pub refresh: Option<u32>,
}

/// Wraps a page body.
pub fn page(frame: Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · Harbormaster" }
                link rel="stylesheet" href="/static/style.css";
                @if let Some(s) = frame.refresh {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
                script src="/static/live.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Harbormaster" }
                    form.jump action="/port" method="get" {
                        label for="jump-n" { "Port" }
                        input #jump-n name="n" type="number" min="0" max="65535" required placeholder="0–65535";
                        button { "Look up" }
                    }
                }
                main { (body) }
                footer { "Harbormaster probes only the address a request comes from, and only after you ask. " a href="/api/ports/0" { "JSON API" } }
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
            p { a href="/" { "Back to the start page" } }
        }
    }
}

/// A text's paragraphs (separated by blank lines in the data) as `<p>`s.
fn paragraphs(text: &str) -> Markup {
    html! { @for p in text.split("\n\n") { p { (p) } } }
}
