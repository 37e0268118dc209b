//! Feeds arbitrary bytes to every UDP payload parser
//! (`harbormaster_wire::payload`): the first byte picks the parser, the next
//! four are the cookie, the rest is the reply. A parser must never panic,
//! must keep its evidence bounded, and a reply it accepts for a cookie must
//! be refused for a cookie that differs in the lowest bit when the protocol
//! carries a cookie at all.

#![no_main]

use harbormaster_wire::payload::{PAYLOADS, PayloadError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let spec = &PAYLOADS[usize::from(pick) % PAYLOADS.len()];
    let (cookie, reply) = match rest.split_first_chunk::<4>() {
        Some((c, r)) => (u32::from_be_bytes(*c), r),
        None => (0, rest),
    };
    if let Ok(evidence) = spec.parse(reply, cookie) {
        // Every field is read; strings and lists are capped (MAX_TEXT,
        // MAX_ITEMS), so the formatted evidence stays small.
        let text = format!("{evidence:?}");
        assert!(text.len() < 64 * 1024, "{} bytes of evidence", text.len());
        if spec.cookie_bits > 0 {
            assert!(
                matches!(
                    spec.parse(reply, cookie ^ 1),
                    Err(PayloadError::CookieMismatch { .. }) | Err(PayloadError::Malformed(_))
                ),
                "{} accepted the same reply for two cookies",
                spec.protocol
            );
        }
    }
});
