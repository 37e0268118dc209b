//! `harbormaster-testnet`'s argument errors: one line naming the bad flag and
//! exit code 2, before anything is created (no root needed).

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harbormaster-testnet"))
        .args(args)
        .output()
        .expect("run harbormaster-testnet");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_path_flags_are_usage_errors() {
    for (args, says) in [
        (&["--delay", "x"][..], "--delay takes a non-negative number"),
        (&["--delay"][..], "--delay takes a non-negative number"),
        (
            &["--jitter", "-1"][..],
            "--jitter takes a non-negative number",
        ),
        (
            &["--path-loss", "101"][..],
            "--path-loss 101 is out of range",
        ),
        (&["--rate", "0"][..], "--rate 0 is out of range"),
        (&["--queue", "0.5"][..], "--queue 0.5 is out of range"),
        (
            &["--delay", "NaN"][..],
            "--delay takes a non-negative number",
        ),
        (
            &["--spec", "castle"][..],
            "--spec takes benchmark, visitor, router or icmp-limited",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
