//! The port-list grammar reads command-line and web-form input: it must never
//! panic, and what it accepts must print back to a list that parses the same.
#![no_main]

use harbormaster_probe::PortList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = PortList::parse(text) {
        let again = PortList::parse(&list.to_string()).expect("printed list parses");
        assert_eq!(again, list);
    }
});
