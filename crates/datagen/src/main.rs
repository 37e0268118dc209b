//! `harbormaster-datagen`: rewrites `data/iana/ports.tsv` from the committed upstream file.
//! Run from anywhere inside the workspace: `cargo run -p harbormaster-datagen`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use harbormaster_datagen::{OUTPUT_TSV, UPSTREAM_JSON, iana_tsv};

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let input = root.join(UPSTREAM_JSON);
    let upstream =
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let tsv = iana_tsv(&upstream)?;
    let output = root.join(OUTPUT_TSV);
    std::fs::write(&output, &tsv).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "wrote {} rows to {}",
        tsv.lines().filter(|l| !l.starts_with('#')).count(),
        OUTPUT_TSV
    );
    Ok(())
}
