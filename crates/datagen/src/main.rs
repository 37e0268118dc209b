//! `harbormaster-datagen`: rewrites `data/iana/ports.tsv` from the committed upstream files.
//! Run from anywhere inside the workspace: `cargo run -p harbormaster-datagen`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use harbormaster_datagen::{IANA_CSV, OUTPUT_TSV, UPSTREAM_JSON, generate};

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |rel: &str| {
        let path = root.join(rel);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let generated = generate(&read(IANA_CSV)?, &read(UPSTREAM_JSON)?)?;
    let output = root.join(OUTPUT_TSV);
    std::fs::write(&output, &generated.tsv)
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "wrote {} rows to {OUTPUT_TSV}; npm 8.0.35 overrides the 2024 CSV on {} pairs:",
        generated
            .tsv
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        generated.differences.len()
    );
    for d in &generated.differences {
        println!("  {d}");
    }
    Ok(())
}
