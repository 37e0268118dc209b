//! Feeds arbitrary bytes to `parse_reply`: it must return, never panic, for
//! any input. A parsed reply is formatted so that every field is read.

#![no_main]

use harbormaster_wire::parse_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = parse_reply(data) {
        let text = format!("{reply:?}");
        assert!(!text.is_empty());
    }
});
