//! `harbormaster db export`: the whole knowledge base in a stable schema
//! (documented in the README, "Export schema").

use std::io::{self, Write};

use harbormaster_knowledge::{PortInfo, SOURCES, entries};
use serde::Serialize;

use crate::args::ExportFormat;

/// Version tag of the export schema; bump it on any incompatible change.
pub const SCHEMA: &str = "harbormaster-kb/1";

#[derive(Serialize)]
struct Export {
    schema: &'static str,
    source: &'static str,
    counts: Counts,
    entries: Vec<PortInfo>,
}

#[derive(Serialize)]
struct Counts {
    entries: usize,
    curated: usize,
    tcp: usize,
    udp: usize,
}

/// Writes every entry in `format`.
/// Errors come back as `io::Error` so a closed pipe stays recognisable.
pub fn export(out: &mut impl Write, format: ExportFormat) -> io::Result<()> {
    match format {
        ExportFormat::Json => {
            let all: Vec<PortInfo> = entries().collect();
            let count = |f: fn(&PortInfo) -> bool| all.iter().filter(|e| f(e)).count();
            let counts = Counts {
                entries: all.len(),
                curated: count(|e| e.curated.is_some()),
                tcp: count(|e| e.proto == harbormaster_knowledge::Proto::Tcp),
                udp: count(|e| e.proto == harbormaster_knowledge::Proto::Udp),
            };
            serde_json::to_writer(
                &mut *out,
                &Export {
                    schema: SCHEMA,
                    source: SOURCES,
                    counts,
                    entries: all,
                },
            )
            .map_err(io::Error::from)?;
            writeln!(out)?;
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_COLUMNS).map_err(csv_io)?;
            for e in entries() {
                let c = e.curated;
                let text = |f: fn(&harbormaster_knowledge::Curated) -> String| {
                    c.map(f).unwrap_or_default()
                };
                w.write_record([
                    e.port.to_string(),
                    e.proto.to_string(),
                    serde_plain(&e.class),
                    serde_plain(&e.registration),
                    e.iana_name.unwrap_or_default().to_string(),
                    e.iana_description.unwrap_or_default().to_string(),
                    c.is_some().to_string(),
                    text(|c| c.title.to_string()),
                    text(|c| c.names.join("; ")),
                    text(|c| c.protocols.join("; ")),
                    text(|c| c.purpose.to_string()),
                    text(|c| c.description.to_string()),
                    text(|c| c.security.to_string()),
                    text(|c| c.close.to_string()),
                    text(|c| {
                        c.related
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    }),
                    text(|c| c.references.join("; ")),
                    text(|c| c.malware.join("; ")),
                    e.iana_aliases.join("; "),
                    e.iana_other_names.join("; "),
                    e.iana_reference.unwrap_or_default().to_string(),
                    e.iana_unauthorized_use.unwrap_or_default().to_string(),
                    text(|c| c.tags.join("; ")),
                    text(|c| c.reviewed.unwrap_or_default().to_string()),
                ])
                .map_err(csv_io)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 23] = [
    "port",
    "proto",
    "class",
    "registration",
    "iana_name",
    "iana_description",
    "curated",
    "title",
    "names",
    "protocols",
    "purpose",
    "description",
    "security",
    "close",
    "related",
    "references",
    "malware",
    "iana_aliases",
    "iana_other_names",
    "iana_reference",
    "iana_unauthorized_use",
    "tags",
    "reviewed",
];

/// Unwraps the I/O error inside a CSV error (a closed pipe must stay recognisable).
fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("CSV encoding failed: {other:?}")),
    }
}

/// The serde name of a unit enum variant (`"system"`, `"assigned"`).
fn serde_plain(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}
