//! `harbormaster-testnet`: holds a benchmark test host up for scripts.
//!
//! ```text
//! harbormaster-testnet [--loss PERCENT] [--silent] [--truth FILE]
//! ```
//! Creates the namespaces, writes the expected state of every port to FILE
//! (`port state` per line), prints `SCANNER_NS TARGET_NS` on stdout, then
//! waits until stdin closes and removes everything.

use std::io::{BufRead, Write};

use harbormaster_testnet::{TargetSpec, TestNet};

fn main() {
    let mut loss = 0u8;
    let mut silent = false;
    let mut truth = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loss" => {
                loss = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v <= 100)
                    .unwrap_or_else(|| usage("--loss takes a percentage 0-100"))
            }
            "--silent" => silent = true,
            "--truth" => truth = Some(args.next().unwrap_or_else(|| usage("--truth takes a file"))),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let spec = if silent {
        TargetSpec {
            drop_all: true,
            loss_percent: loss,
            ..TargetSpec::default()
        }
    } else {
        TargetSpec::benchmark(loss)
    };
    let net = match TestNet::create(&spec) {
        Ok(n) => n,
        Err(skip) => {
            eprintln!("harbormaster-testnet: {skip}");
            std::process::exit(1);
        }
    };
    if let Some(path) = truth {
        let mut text = String::with_capacity(65536 * 10);
        for port in 0..=u16::MAX {
            text.push_str(&format!("{port} {}\n", spec.truth(port)));
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("harbormaster-testnet: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
    println!("{} {}", net.scanner_ns, net.target_ns);
    let _ = std::io::stdout().flush();
    // Hold the namespaces (and the listeners) until the caller closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    drop(net);
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "harbormaster-testnet: {msg}; usage: harbormaster-testnet [--loss PERCENT] [--silent] [--truth FILE]"
    );
    std::process::exit(2);
}
