//! `harbormaster`: the command-line front end.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error (bad argument or
//! input). Errors are one line on stderr, prefixed `harbormaster:`.

mod args;
mod db;
mod page;
mod scan;
mod serve;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use harbormaster_knowledge::{Proto, port_page, search, search_tagged};

use crate::args::{Cli, Command, DbCommand};

/// A failure, split by who has to fix it.
enum Failure {
    /// The user gave something invalid (exit 2).
    Usage(String),
    /// Something went wrong while running (exit 1).
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Runtime(e.into())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                return ExitCode::from(2);
            }
            _ => {
                return report(Failure::Usage(first_line(&e.to_string())));
            }
        },
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(f),
    }
}

fn report(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(msg) => {
            eprintln!("harbormaster: {msg}");
            ExitCode::from(2)
        }
        Failure::Runtime(e) => {
            // A closed pipe (`harbormaster db export | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("harbormaster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Clap's messages put what was wrong in the first paragraph and hints after a
/// blank line; keep the first paragraph, on one line.
fn first_line(msg: &str) -> String {
    let paragraph: Vec<&str> = msg
        .trim_start()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    paragraph
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

fn run(cli: Cli) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Port(a) => {
            let protos: &[Proto] = match (a.tcp, a.udp) {
                (true, false) => &[Proto::Tcp],
                (false, true) => &[Proto::Udp],
                _ => &Proto::ALL,
            };
            if a.json {
                serde_json::to_writer_pretty(&mut out, &port_page(a.port, protos))
                    .map_err(io::Error::from)?;
                writeln!(out)?;
            } else {
                page::write_port_page(&mut out, a.port, protos)?;
            }
        }
        Command::Search(a) => {
            let query = a.words.join(" ");
            let hits = match &a.tag {
                Some(tag) => search_tagged(&query, tag),
                None => search(&query),
            };
            let mut hits = hits.map_err(|e| Failure::Usage(e.to_string()))?;
            let listing = a.tag.is_some() && a.words.is_empty();
            let limit = a.limit.unwrap_or(if listing { 0 } else { 20 });
            if limit > 0 {
                hits.truncate(limit);
            }
            if a.json {
                serde_json::to_writer_pretty(&mut out, &hits).map_err(io::Error::from)?;
                writeln!(out)?;
            } else {
                let what = match &a.tag {
                    Some(tag) if query.is_empty() => format!("tag {tag:?}"),
                    Some(tag) => format!("{query:?} with tag {tag:?}"),
                    None => format!("{query:?}"),
                };
                page::write_search_results(&mut out, &what, &hits)?;
            }
        }
        Command::Db {
            command: DbCommand::Export { format },
        } => {
            db::export(&mut out, format)?;
            let all = harbormaster_knowledge::entries();
            let total = all.len();
            let curated = all.filter(|e| e.curated.is_some()).count();
            eprintln!(
                "harbormaster: exported {total} port/transport entries, {curated} of them curated"
            );
        }
        Command::Serve(a) => serve::run(&a)?,
        Command::Scan(a) => {
            if let Some(path) = &a.output {
                let file = std::fs::File::create(path)
                    .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
                let mut w = io::BufWriter::new(file);
                scan::run(&a, &mut w)?;
                w.flush()?;
            } else {
                scan::run(&a, &mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
