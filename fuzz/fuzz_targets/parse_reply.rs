//! Feeds arbitrary bytes to `parse_reply`, `udp_payload` and
//! `is_link_housekeeping`: they must return, never panic, for any input. A
//! parsed reply is formatted so that every field is read, and a UDP payload
//! must lie inside the input.

#![no_main]

use harbormaster_wire::{is_link_housekeeping, parse_reply, udp_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = is_link_housekeeping(data);
    if let Ok(reply) = parse_reply(data) {
        let text = format!("{reply:?}");
        assert!(!text.is_empty());
    }
    if let Some(payload) = udp_payload(data) {
        assert!(payload.len() + 8 <= data.len());
    }
});
