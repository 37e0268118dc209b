//! Feeds arbitrary bytes to `parse_reply` and `other_source`: they must
//! return, never panic, for any input. A parsed reply is formatted so that
//! every field is read.

#![no_main]

use harbormaster_wire::{other_source, parse_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = other_source(data);
    if let Ok(reply) = parse_reply(data) {
        let text = format!("{reply:?}");
        assert!(!text.is_empty());
    }
});
