//! The port-list grammar reads command-line and web-form input: it must never
//! panic, what it accepts must print back to a list that parses the same, and
//! counting from merged ranges (what the web's cap check uses before expanding
//! anything) must agree with the list itself.
#![no_main]

use harbormaster_probe::{CapError, PortList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = PortList::parse(text);
    assert_eq!(
        PortList::count(text).ok(),
        parsed.as_ref().ok().map(PortList::len)
    );
    if let Ok(list) = parsed {
        let again = PortList::parse(&list.to_string()).expect("printed list parses");
        assert_eq!(again, list);
        // The cap is derived from the input so that both sides of it are reached.
        let cap = usize::from(data[0]) * 8;
        match PortList::parse_capped(text, cap) {
            Ok(capped) => assert!(capped == list && list.len() <= cap),
            Err(CapError::TooManyPorts { count, .. }) => assert!(count == list.len() && count > cap),
            Err(CapError::TooLong { .. } | CapError::TooManyItems { .. }) => {}
            Err(CapError::Spec(e)) => panic!("parse accepted what parse_capped rejects: {e}"),
        }
    }
});
