//! Scan storage in SQLite. A scan row is written when the scan starts; its
//! results are committed in small batches while it runs (so a crash loses at
//! most the last batch), and its outcome when it ends. The status only becomes
//! "done" in the transaction that stores the last results, so a crash never
//! leaves half a result set behind a "done" status.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a commit is a
//! write to the WAL without an fsync, which a killed process cannot lose (the
//! data is in the kernel's page cache); only a power cut or kernel crash can
//! roll back the last commits, and never corrupts the file. That is the right
//! trade for scan results written every ~250 ms.
//!
//! Values are typed everywhere else ([`PortState`], [`Reason`], [`Protocol`],
//! [`TestKind`], [`ProbeMode`], [`PortList`]); they become text only here, as
//! the same strings their `Display` writes (so databases written before the
//! types keep working), and are parsed back here: a value no type has is
//! [`DbError::Unknown`], never a panic or a silent default.
//!
//! One server owns a data directory: [`Db::open`] takes an exclusive lock on
//! `harbormaster.lock` in it before touching the database, held as long as the
//! handle lives, so a second server cannot mark the first's scans interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use harbormaster_probe::{PortList, PortState, ProbeMode, Protocol, Reason};
use harbormaster_wire::payload::Protocol as Payload;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

use crate::scans::TestKind;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    /// The data directory could not be created or locked.
    #[error("creating the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// Another process holds the data directory's lock.
    #[error("the data directory {} is in use by another process", .0.display())]
    InUse(PathBuf),
    /// A stored value that no typed value has: a damaged database, or one
    /// written by a newer version.
    #[error("the database's {column} column holds a value this version does not know: {reason}")]
    Unknown {
        /// `table.column`.
        column: &'static str,
        /// What was wrong with it, and what is valid.
        reason: String,
    },
}

impl From<rusqlite::Error> for DbError {
    /// A conversion failure raised by [`column`] comes out as
    /// [`DbError::Unknown`]; everything else is SQLite's.
    fn from(e: rusqlite::Error) -> DbError {
        match e {
            rusqlite::Error::FromSqlConversionFailure(idx, ty, source) => {
                match source.downcast::<BadValue>() {
                    Ok(bad) => DbError::Unknown {
                        column: bad.column,
                        reason: bad.reason,
                    },
                    Err(source) => {
                        DbError::Sqlite(rusqlite::Error::FromSqlConversionFailure(idx, ty, source))
                    }
                }
            }
            e => DbError::Sqlite(e),
        }
    }
}

/// Why one stored text did not convert, carried through rusqlite's row
/// closures to [`DbError::Unknown`].
#[derive(Debug, thiserror::Error)]
#[error("{column}: {reason}")]
struct BadValue {
    column: &'static str,
    reason: String,
}

/// Column `idx` (named `column` in errors) read as text and converted by
/// `convert`: the one place stored text becomes a typed value.
fn column<T, E: std::fmt::Display>(
    row: &Row<'_>,
    idx: usize,
    column: &'static str,
    convert: impl FnOnce(&str) -> Result<T, E>,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    convert(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            Box::new(BadValue {
                column,
                reason: e.to_string(),
            }),
        )
    })
}

/// The test of a stored scan: its name, and for a single-port test the one
/// port of its list.
fn stored_test(name: &str, ports: &PortList) -> Result<TestKind, String> {
    let single = || match ports.ports() {
        [port] => Ok(*port),
        _ => Err(format!(
            "a single-port test lists {} ports ({ports})",
            ports.len()
        )),
    };
    TestKind::from_name(name, single)?.ok_or_else(|| {
        format!(
            "unknown test {:?}; expected {}",
            name.chars().take(64).collect::<String>(),
            TestKind::NAMES
        )
    })
}

/// Serialises with `Display` (the stored text).
fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl DbError {
    /// Whether the failure is a full disk (or a full database file).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            DbError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            DbError::InUse(_) | DbError::Unknown { .. } => false,
        }
    }
}

/// Lifecycle of a stored scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Still probing.
    Running,
    /// Finished normally.
    Done,
    /// Stopped early (shutdown or cancellation); results are partial.
    Cancelled,
    /// The server stopped without finishing it (found at the next start).
    Interrupted,
    /// The probe engine or the storage failed (see [`StoredScan::error`]).
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
            Status::Failed => "failed",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    /// Inverts [`Status::as_str`].
    fn from_str(s: &str) -> Result<Status, String> {
        Ok(match s {
            "running" => Status::Running,
            "done" => Status::Done,
            "cancelled" => Status::Cancelled,
            "interrupted" => Status::Interrupted,
            "failed" => Status::Failed,
            _ => {
                return Err(format!(
                    "unknown status {:?}; expected running, done, cancelled, interrupted or failed",
                    s.chars().take(64).collect::<String>()
                ));
            }
        })
    }
}

/// One port's stored result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredResult {
    /// Port.
    pub port: u16,
    /// Transport (a column of its own since it was typed; older rows are TCP).
    pub proto: Protocol,
    /// What came back.
    pub state: PortState,
    /// The evidence.
    pub reason: Reason,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Probes sent.
    pub tries: u8,
    /// Reply TTL.
    pub ttl: Option<u8>,
}

/// What the ping and unsolicited-packet watch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoredWatch {
    /// Echo requests sent.
    pub pings_sent: u32,
    /// Echo replies received.
    pub ping_replies: u32,
    /// Unsolicited packets received.
    pub unsolicited: u32,
    /// The first few, described.
    pub unsolicited_examples: Vec<String>,
}

/// A stored scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredScan {
    /// Unguessable id (also the share link).
    pub id: String,
    /// The probed address.
    pub target: String,
    /// The test.
    pub test: TestKind,
    /// The ports (stored and serialised compressed: `0-1055`).
    #[serde(serialize_with = "display")]
    pub ports: PortList,
    /// How it probed.
    pub mode: ProbeMode,
    /// Lifecycle.
    pub status: Status,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub finished: Option<u64>,
    /// Unix seconds after which it is deleted.
    pub expires: u64,
    /// The watch, when the mode could run one.
    pub watch: Option<StoredWatch>,
    /// Results, by port.
    pub results: Vec<StoredResult>,
    /// Why a failed scan failed, in words for the visitor.
    pub error: Option<String>,
    /// What the probe found about the address's rate limit on ICMP errors
    /// or RSTs, in one line ([`harbormaster_probe::RateLimitReport`]).
    pub rate_limit: Option<String>,
    /// What each answering UDP port said when asked again (UDP tests only).
    pub exposure: Vec<StoredReflection>,
}

/// Most findings kept per port of a UDP test.
pub const MAX_FINDINGS_PER_PORT: usize = 16;
/// Most exposure rows kept per scan.
pub const MAX_REFLECTIONS: usize = 64;

/// One request's outcome at one answering UDP port: what the replies showed
/// and how much came back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReflection {
    /// The port asked.
    pub port: u16,
    /// The protocol of the request (`ssdp`, `dns`, `memcached`, …).
    pub protocol: Payload,
    /// What the replies showed, one line each.
    pub findings: Vec<String>,
    /// An SSDP reply's SERVER header.
    pub server: Option<String>,
    /// An SSDP reply's LOCATION header.
    pub location: Option<String>,
    /// An SSDP reply's USN header.
    pub usn: Option<String>,
    /// Requests sent.
    pub request_packets: u32,
    /// UDP payload bytes sent.
    pub request_bytes: u64,
    /// Valid replies received.
    pub reply_packets: u32,
    /// UDP payload bytes received.
    pub reply_bytes: u64,
}

impl Serialize for StoredReflection {
    /// Its fields, the protocol as its name, and `amplification` (reply
    /// bytes per request byte) as the pages show it.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StoredReflection", 11)?;
        st.serialize_field("port", &self.port)?;
        st.serialize_field("protocol", &self.protocol.to_string())?;
        st.serialize_field("findings", &self.findings)?;
        st.serialize_field("server", &self.server)?;
        st.serialize_field("location", &self.location)?;
        st.serialize_field("usn", &self.usn)?;
        st.serialize_field("request_packets", &self.request_packets)?;
        st.serialize_field("request_bytes", &self.request_bytes)?;
        st.serialize_field("reply_packets", &self.reply_packets)?;
        st.serialize_field("reply_bytes", &self.reply_bytes)?;
        st.serialize_field("amplification", &((self.factor() * 10.0).round() / 10.0))?;
        st.end()
    }
}

impl StoredReflection {
    /// Reply bytes per request byte; 0 when nothing was sent.
    pub fn factor(&self) -> f64 {
        if self.request_bytes == 0 {
            0.0
        } else {
            self.reply_bytes as f64 / self.request_bytes as f64
        }
    }
}

/// Every payload protocol this version stores, for reading the text back.
const PAYLOADS: [Payload; 15] = [
    Payload::Echo,
    Payload::Chargen,
    Payload::Qotd,
    Payload::Dns,
    Payload::Ntp,
    Payload::NtpControl,
    Payload::NtpPrivate,
    Payload::Snmp,
    Payload::Ssdp,
    Payload::Mdns,
    Payload::Coap,
    Payload::Memcached,
    Payload::Portmapper,
    Payload::Tftp,
    Payload::OpenVpn,
];

/// Inverts the payload protocol's `Display`.
fn parse_payload(text: &str) -> Result<Payload, String> {
    PAYLOADS
        .into_iter()
        .find(|p| p.to_string() == text)
        .ok_or_else(|| {
            format!(
                "unknown UDP protocol {:?}; expected one of {}",
                text.chars().take(64).collect::<String>(),
                PAYLOADS.map(|p| p.to_string()).join(", ")
            )
        })
}

/// The database handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// The data directory's lock, released when the last handle is dropped.
    _lock: Option<Arc<File>>,
}

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "harbormaster.lock";

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Db {
    /// Locks `dir` for this process (failing with [`DbError::InUse`] if another
    /// holds it), opens (creating if needed) `dir/harbormaster.sqlite3`, and
    /// marks scans a previous process left running as interrupted.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DbError::InUse(dir.into())),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let conn = Connection::open(dir.join("harbormaster.sqlite3"))?;
        Db::init(conn, Some(Arc::new(lock)))
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Db, DbError> {
        Db::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, lock: Option<Arc<File>>) -> Result<Db, DbError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS scans (
                id TEXT PRIMARY KEY, target TEXT NOT NULL, test TEXT NOT NULL,
                ports TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
                created INTEGER NOT NULL, finished INTEGER, expires INTEGER NOT NULL,
                watch TEXT, error TEXT);
             CREATE TABLE IF NOT EXISTS results (
                scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
                port INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
                rtt_ms REAL, tries INTEGER NOT NULL, ttl INTEGER,
                PRIMARY KEY (scan_id, port));
             CREATE INDEX IF NOT EXISTS scans_expires ON scans(expires);
             CREATE TABLE IF NOT EXISTS exposure (
                scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL, port INTEGER NOT NULL, protocol TEXT NOT NULL,
                findings TEXT NOT NULL, server TEXT, location TEXT, usn TEXT,
                request_packets INTEGER NOT NULL, request_bytes INTEGER NOT NULL,
                reply_packets INTEGER NOT NULL, reply_bytes INTEGER NOT NULL,
                PRIMARY KEY (scan_id, seq));",
        )?;
        // Databases from before the transport was stored: every row was TCP.
        let has_proto: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('results') WHERE name = 'proto'",
            [],
            |r| r.get(0),
        )?;
        if !has_proto {
            conn.execute_batch(
                "ALTER TABLE results ADD COLUMN proto TEXT NOT NULL DEFAULT 'tcp';",
            )?;
        }
        // Databases from before failure reasons were stored.
        let has_error: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('scans') WHERE name = 'error'",
            [],
            |r| r.get(0),
        )?;
        if !has_error {
            conn.execute_batch("ALTER TABLE scans ADD COLUMN error TEXT;")?;
        }
        // Databases from before rate limits were reported.
        let has_rate_limit: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('scans') WHERE name = 'rate_limit'",
            [],
            |r| r.get(0),
        )?;
        if !has_rate_limit {
            conn.execute_batch("ALTER TABLE scans ADD COLUMN rate_limit TEXT;")?;
        }
        conn.execute_batch("UPDATE scans SET status = 'interrupted' WHERE status = 'running';")?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            _lock: lock,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the database file grow by at most `pages` more pages, so tests can
    /// make writes fail as on a full disk.
    #[cfg(test)]
    pub(crate) fn cap_growth(&self, pages: u32) {
        let conn = self.conn();
        let now: u32 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let _: u32 = conn
            .query_row(
                &format!("PRAGMA max_page_count = {}", now + pages),
                [],
                |r| r.get(0),
            )
            .unwrap();
    }

    /// Records a scan that has just started.
    pub fn insert_running(&self, s: &StoredScan) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO scans (id, target, test, ports, mode, status, created, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
            params![
                s.id,
                s.target,
                s.test.name(),
                s.ports.to_string(),
                s.mode.as_str(),
                s.created,
                s.expires
            ],
        )?;
        Ok(())
    }

    /// Stores a batch of a running scan's results in one transaction.
    pub fn insert_results(&self, id: &str, results: &[StoredResult]) -> Result<(), DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_results(&tx, id, results)?;
        tx.commit()?;
        Ok(())
    }

    /// Stores the outcome, with the results not stored yet, in one transaction.
    pub fn finish(
        &self,
        id: &str,
        status: Status,
        error: Option<&str>,
        watch: Option<&StoredWatch>,
        results: &[StoredResult],
    ) -> Result<(), DbError> {
        self.finish_with(id, status, error, watch, results, &[])
    }

    /// [`Db::finish`] with a UDP test's exposure findings, stored in the same
    /// transaction (at most [`MAX_REFLECTIONS`] rows of at most
    /// [`MAX_FINDINGS_PER_PORT`] findings; the rest is dropped).
    pub fn finish_with(
        &self,
        id: &str,
        status: Status,
        error: Option<&str>,
        watch: Option<&StoredWatch>,
        results: &[StoredResult],
        exposure: &[StoredReflection],
    ) -> Result<(), DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_results(&tx, id, results)?;
        insert_exposure(&tx, id, exposure)?;
        let watch_json = watch.map(|w| {
            serde_json::json!({
                "pings_sent": w.pings_sent, "ping_replies": w.ping_replies,
                "unsolicited": w.unsolicited, "unsolicited_examples": w.unsolicited_examples,
            })
            .to_string()
        });
        tx.execute(
            "UPDATE scans SET status = ?2, finished = ?3, watch = ?4, error = ?5 WHERE id = ?1",
            params![id, status.as_str(), unix_now(), watch_json, error],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores what the probe found about the scan's rate limit.
    pub fn set_rate_limit(&self, id: &str, note: &str) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE scans SET rate_limit = ?2 WHERE id = ?1",
            params![id, note],
        )?;
        Ok(())
    }

    /// A stored scan with its results.
    pub fn load(&self, id: &str) -> Result<Option<StoredScan>, DbError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, target, test, ports, mode, status, created, finished, expires, watch,
                        error, rate_limit
                 FROM scans WHERE id = ?1",
                params![id],
                |r| {
                    let ports = column(r, 3, "scans.ports", PortList::parse)?;
                    Ok(StoredScan {
                        id: r.get(0)?,
                        target: r.get(1)?,
                        test: column(r, 2, "scans.test", |t| stored_test(t, &ports))?,
                        ports,
                        mode: column(r, 4, "scans.mode", str::parse)?,
                        status: column(r, 5, "scans.status", str::parse)?,
                        created: r.get(6)?,
                        finished: r.get(7)?,
                        expires: r.get(8)?,
                        watch: r.get::<_, Option<String>>(9)?.and_then(|j| parse_watch(&j)),
                        results: Vec::new(),
                        error: r.get(10)?,
                        rate_limit: r.get(11)?,
                        exposure: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut scan) = row else { return Ok(None) };
        let mut stmt = conn.prepare(
            "SELECT port, state, reason, rtt_ms, tries, ttl, proto FROM results WHERE scan_id = ?1
             ORDER BY port",
        )?;
        scan.results = stmt
            .query_map(params![id], |r| {
                Ok(StoredResult {
                    port: r.get(0)?,
                    proto: column(r, 6, "results.proto", str::parse)?,
                    state: column(r, 1, "results.state", str::parse)?,
                    reason: column(r, 2, "results.reason", str::parse)?,
                    rtt_ms: r.get(3)?,
                    tries: r.get(4)?,
                    ttl: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT port, protocol, findings, server, location, usn, request_packets,
                    request_bytes, reply_packets, reply_bytes
             FROM exposure WHERE scan_id = ?1 ORDER BY seq",
        )?;
        scan.exposure = stmt
            .query_map(params![id], |r| {
                Ok(StoredReflection {
                    port: r.get(0)?,
                    protocol: column(r, 1, "exposure.protocol", parse_payload)?,
                    findings: column(r, 2, "exposure.findings", |j| {
                        serde_json::from_str::<Vec<String>>(j).map_err(|e| e.to_string())
                    })?,
                    server: r.get(3)?,
                    location: r.get(4)?,
                    usn: r.get(5)?,
                    request_packets: r.get(6)?,
                    request_bytes: r.get(7)?,
                    reply_packets: r.get(8)?,
                    reply_bytes: r.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(scan))
    }

    /// Deletes scans past their expiry; returns how many.
    pub fn purge_expired(&self, now: u64) -> Result<usize, DbError> {
        Ok(self.conn().execute(
            "DELETE FROM scans WHERE expires < ?1 AND status != 'running'",
            params![now],
        )?)
    }
}

fn insert_results(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    results: &[StoredResult],
) -> Result<(), DbError> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO results (scan_id, port, state, reason, rtt_ms, tries, ttl, proto)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in results {
        insert.execute(params![
            id,
            r.port,
            r.state.as_str(),
            r.reason.to_string(),
            r.rtt_ms,
            r.tries,
            r.ttl,
            r.proto.as_str()
        ])?;
    }
    Ok(())
}

fn insert_exposure(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    exposure: &[StoredReflection],
) -> Result<(), DbError> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO exposure (scan_id, seq, port, protocol, findings, server,
            location, usn, request_packets, request_bytes, reply_packets, reply_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for (seq, x) in exposure.iter().take(MAX_REFLECTIONS).enumerate() {
        let findings: Vec<&String> = x.findings.iter().take(MAX_FINDINGS_PER_PORT).collect();
        insert.execute(params![
            id,
            seq,
            x.port,
            x.protocol.to_string(),
            serde_json::Value::from(findings.iter().map(|f| f.as_str()).collect::<Vec<_>>())
                .to_string(),
            x.server,
            x.location,
            x.usn,
            x.request_packets,
            x.request_bytes,
            x.reply_packets,
            x.reply_bytes
        ])?;
    }
    Ok(())
}

fn parse_watch(json: &str) -> Option<StoredWatch> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0) as u32;
    Some(StoredWatch {
        pings_sent: n("pings_sent"),
        ping_replies: n("ping_replies"),
        unsolicited: n("unsolicited"),
        unsolicited_examples: v
            .get("unsolicited_examples")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(id: &str, expires: u64) -> StoredScan {
        StoredScan {
            id: id.into(),
            target: "198.51.100.4".into(),
            test: TestKind::Common,
            ports: PortList::parse("21-23").unwrap(),
            mode: ProbeMode::Syn,
            status: Status::Running,
            created: 1,
            finished: None,
            expires,
            watch: None,
            results: Vec::new(),
            error: None,
            rate_limit: None,
            exposure: Vec::new(),
        }
    }

    #[test]
    fn scans_round_trip_and_expire() {
        let db = Db::in_memory().unwrap();
        db.insert_running(&scan("a", 100)).unwrap();
        db.insert_running(&scan("b", 10_000)).unwrap();
        assert_eq!(db.load("a").unwrap().unwrap().status, Status::Running);
        let results = vec![StoredResult {
            port: 22,
            proto: Protocol::Tcp,
            state: PortState::Open,
            reason: Reason::SynAck,
            rtt_ms: Some(1.5),
            tries: 1,
            ttl: Some(64),
        }];
        let watch = StoredWatch {
            pings_sent: 3,
            ping_replies: 0,
            unsolicited: 1,
            unsolicited_examples: vec!["udp 137->137".into()],
        };
        db.finish("a", Status::Done, None, Some(&watch), &results)
            .unwrap();
        let a = db.load("a").unwrap().unwrap();
        assert_eq!(a.status, Status::Done);
        assert_eq!(a.results, results);
        assert_eq!(a.watch, Some(watch));
        assert!(db.load("nope").unwrap().is_none());
        assert_eq!(db.purge_expired(1000).unwrap(), 1);
        assert!(db.load("a").unwrap().is_none());
        assert!(
            db.load("b").unwrap().is_some(),
            "running scans are never purged"
        );
    }

    fn reflection(port: u16, findings: usize) -> StoredReflection {
        StoredReflection {
            port,
            protocol: Payload::Ssdp,
            findings: (0..findings).map(|i| format!("finding {i}")).collect(),
            server: Some("Linux UPnP/1.1 MiniUPnPd/2.3".into()),
            location: Some("http://198.18.0.2:5000/rootDesc.xml".into()),
            usn: None,
            request_packets: 1,
            request_bytes: 94,
            reply_packets: 13,
            reply_bytes: 5396,
        }
    }

    #[test]
    fn exposure_findings_round_trip_bounded_and_typed() {
        let db = Db::in_memory().unwrap();
        db.insert_running(&scan("u", 10_000)).unwrap();
        let many: Vec<StoredReflection> = (0..100).map(|i| reflection(i, 40)).collect();
        db.finish_with("u", Status::Done, None, None, &[], &many)
            .unwrap();
        let u = db.load("u").unwrap().unwrap();
        assert_eq!(u.exposure.len(), MAX_REFLECTIONS);
        assert_eq!(u.exposure[0].findings.len(), MAX_FINDINGS_PER_PORT);
        assert_eq!(u.exposure[3], {
            let mut r = reflection(3, MAX_FINDINGS_PER_PORT);
            r.findings.truncate(MAX_FINDINGS_PER_PORT);
            r
        });
        assert!((u.exposure[0].factor() - 5396.0 / 94.0).abs() < 1e-9);
        // A protocol this version does not know is a typed error.
        db.conn()
            .execute("UPDATE exposure SET protocol = 'gopher' WHERE seq = 0", [])
            .unwrap();
        match db.load("u") {
            Err(DbError::Unknown { column, reason }) => {
                assert_eq!(column, "exposure.protocol");
                assert!(
                    reason.contains("unknown UDP protocol \"gopher\""),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Deleting the scan deletes its findings.
        db.conn()
            .execute("DELETE FROM scans WHERE id = 'u'", [])
            .unwrap();
        let left: u32 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM exposure", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn running_scans_become_interrupted_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("hm-db-{}", std::process::id()));
        let db = Db::open(&dir).unwrap();
        db.insert_running(&scan("x", 10)).unwrap();
        drop(db);
        let db = Db::open(&dir).unwrap();
        assert_eq!(db.load("x").unwrap().unwrap().status, Status::Interrupted);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn result(port: u16) -> StoredResult {
        StoredResult {
            port,
            proto: Protocol::Tcp,
            state: PortState::Stealth,
            reason: Reason::NoResponse,
            rtt_ms: None,
            tries: 3,
            ttl: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hm-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn batches_are_committed_before_the_scan_ends() {
        let dir = temp_dir("batches");
        let db = Db::open(&dir).unwrap();
        let mut s = scan("b", 10_000);
        s.mode = ProbeMode::Connect;
        db.insert_running(&s).unwrap();
        db.insert_results("b", &[result(1), result(2)]).unwrap();
        db.insert_results("b", &[result(3)]).unwrap();
        // A crash here: the next start finds the batches, the scan interrupted.
        drop(db);
        let db = Db::open(&dir).unwrap();
        let b = db.load("b").unwrap().unwrap();
        assert_eq!(b.status, Status::Interrupted);
        assert_eq!(
            b.mode,
            ProbeMode::Connect,
            "an interrupted scan keeps its mode"
        );
        assert_eq!(b.results, vec![result(1), result(2), result(3)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_rest_and_a_failure_reason_are_stored_at_the_end() {
        let db = Db::in_memory().unwrap();
        db.insert_running(&scan("f", 10_000)).unwrap();
        db.insert_results("f", &[result(1)]).unwrap();
        db.finish(
            "f",
            Status::Failed,
            Some("the disk is full"),
            None,
            &[result(2)],
        )
        .unwrap();
        let f = db.load("f").unwrap().unwrap();
        assert_eq!(f.status, Status::Failed);
        assert_eq!(f.error.as_deref(), Some("the disk is full"));
        assert_eq!(f.results, vec![result(1), result(2)]);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = temp_dir("lock");
        let first = Db::open(&dir).unwrap();
        first.insert_running(&scan("live", 10_000)).unwrap();
        match Db::open(&dir) {
            Err(DbError::InUse(d)) => assert_eq!(d, dir),
            other => panic!("expected InUse, got {other:?}"),
        }
        assert_eq!(
            first.load("live").unwrap().unwrap().status,
            Status::Running,
            "the refused open touched nothing"
        );
        drop(first);
        assert!(Db::open(&dir).is_ok(), "the lock goes with the handle");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn databases_without_the_error_column_are_migrated() {
        let dir = temp_dir("migrate");
        std::fs::create_dir_all(&dir).unwrap();
        let old = Connection::open(dir.join("harbormaster.sqlite3")).unwrap();
        old.execute_batch(
            "CREATE TABLE scans (
                id TEXT PRIMARY KEY, target TEXT NOT NULL, test TEXT NOT NULL,
                ports TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
                created INTEGER NOT NULL, finished INTEGER, expires INTEGER NOT NULL,
                watch TEXT);
             INSERT INTO scans VALUES ('old', '198.51.100.4', 'common', '21', 'syn', 'done',
                1, 2, 10000, NULL);",
        )
        .unwrap();
        drop(old);
        let db = Db::open(&dir).unwrap();
        let s = db.load("old").unwrap().unwrap();
        assert_eq!((s.status, s.error), (Status::Done, None));
        db.insert_running(&scan("new", 10_000)).unwrap();
        db.finish("new", Status::Failed, Some("why"), None, &[])
            .unwrap();
        assert_eq!(
            db.load("new").unwrap().unwrap().error.as_deref(),
            Some("why")
        );
        // The rate-limit column is added too.
        assert_eq!(db.load("old").unwrap().unwrap().rate_limit, None);
        db.set_rate_limit("new", "this host limits its ICMP errors to about 1/s")
            .unwrap();
        assert_eq!(
            db.load("new").unwrap().unwrap().rate_limit.as_deref(),
            Some("this host limits its ICMP errors to about 1/s")
        );
        drop(db);
        // Opening again does not try to add the column twice.
        Db::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The schema and text a database had before values were typed (no
    /// `proto` column), filled with raw SQL as an older version wrote it.
    fn old_database(dir: &Path, extra: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let old = Connection::open(dir.join("harbormaster.sqlite3")).unwrap();
        old.execute_batch(&format!(
            "CREATE TABLE scans (
                id TEXT PRIMARY KEY, target TEXT NOT NULL, test TEXT NOT NULL,
                ports TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
                created INTEGER NOT NULL, finished INTEGER, expires INTEGER NOT NULL,
                watch TEXT, error TEXT);
             CREATE TABLE results (
                scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
                port INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
                rtt_ms REAL, tries INTEGER NOT NULL, ttl INTEGER,
                PRIMARY KEY (scan_id, port));
             INSERT INTO scans VALUES
                ('c', '198.51.100.4', 'common', '21-23,80', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('s', '198.51.100.4', 'service', '0-1055', 'connect', 'done', 1, 2, 10000, NULL, NULL),
                ('u', '198.51.100.4', 'custom', '8000-8002', 'connect', 'done', 1, 2, 10000, NULL, NULL),
                ('f', '198.51.100.4', 'full', '0-65535', 'syn', 'cancelled', 1, 2, 10000, NULL, NULL),
                ('p', '198.51.100.4', 'port', '3389', 'scripted', 'done', 1, 2, 10000, NULL, NULL);
             INSERT INTO results VALUES
                ('c', 21, 'open', 'syn-ack', 0.5, 1, 64),
                ('c', 22, 'closed', 'rst', 0.25, 1, 64),
                ('c', 23, 'filtered', 'icmp-3-13', NULL, 2, 250),
                ('c', 80, 'stealth', 'no-response', NULL, 3, NULL),
                ('s', 1, 'filtered', 'icmpv6-1-4', NULL, 1, 60),
                ('s', 2, 'open', 'connected', 1.0, 1, NULL),
                ('s', 3, 'closed', 'conn-refused', NULL, 1, NULL),
                ('s', 4, 'filtered', 'host-unreach', NULL, 1, NULL),
                ('s', 5, 'filtered', 'net-unreach', NULL, 1, NULL),
                ('u', 8000, 'open', 'syn-ack-only', 0.5, 1, 64),
                ('u', 8001, 'open', 'syn-ack-wildcard', 0.5, 1, 64);
             {extra}"
        ))
        .unwrap();
    }

    #[test]
    fn databases_written_as_text_before_the_types_read_back_typed() {
        let dir = temp_dir("typed-compat");
        old_database(&dir, "");
        let db = Db::open(&dir).unwrap();
        let c = db.load("c").unwrap().unwrap();
        assert_eq!(
            (c.test, c.mode, c.ports.ports()),
            (TestKind::Common, ProbeMode::Syn, &[21, 22, 23, 80][..])
        );
        let got: Vec<(u16, Protocol, PortState, Reason)> = c
            .results
            .iter()
            .map(|r| (r.port, r.proto, r.state, r.reason))
            .collect();
        let icmp = |v6, icmp_type, code| Reason::Icmp {
            v6,
            icmp_type,
            code,
        };
        use PortState::*;
        use Protocol::Tcp;
        assert_eq!(
            got,
            [
                (21, Tcp, Open, Reason::SynAck),
                (22, Tcp, Closed, Reason::Rst),
                (23, Tcp, Filtered, icmp(false, 3, 13)),
                (80, Tcp, Stealth, Reason::NoResponse),
            ]
        );
        assert_eq!(c.results[0].rtt_ms, Some(0.5));
        assert_eq!(c.results[2].ttl, Some(250));
        let s = db.load("s").unwrap().unwrap();
        assert_eq!(
            (s.test, s.mode, s.ports.len()),
            (TestKind::Service, ProbeMode::Connect, 1056)
        );
        let reasons: Vec<Reason> = s.results.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                icmp(true, 1, 4),
                Reason::Connected,
                Reason::ConnRefused,
                Reason::HostUnreachable,
                Reason::NetUnreachable
            ]
        );
        let u = db.load("u").unwrap().unwrap();
        assert_eq!(u.test, TestKind::Custom);
        assert_eq!(
            u.results.iter().map(|r| r.reason).collect::<Vec<_>>(),
            [Reason::SynAckOnly, Reason::SynAckWildcard]
        );
        let f = db.load("f").unwrap().unwrap();
        assert_eq!(
            (f.test, f.ports.len(), f.status),
            (TestKind::Full, 65_536, Status::Cancelled)
        );
        let p = db.load("p").unwrap().unwrap();
        assert_eq!(
            (p.test, p.mode),
            (TestKind::Port(3389), ProbeMode::Scripted)
        );
        // Written back by this version, the same text is stored, so an older
        // binary can still read what a newer one wrote.
        db.insert_running(&StoredScan {
            id: "n".into(),
            ..p.clone()
        })
        .unwrap();
        db.finish("n", Status::Done, None, None, &c.results)
            .unwrap();
        drop(db);
        let raw = Connection::open(dir.join("harbormaster.sqlite3")).unwrap();
        let row: (String, String, String) = raw
            .query_row(
                "SELECT test, ports, mode FROM scans WHERE id = 'n'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("port".into(), "3389".into(), "scripted".into()));
        let texts: Vec<(String, String, String)> = raw
            .prepare("SELECT state, reason, proto FROM results WHERE scan_id = 'n' ORDER BY port")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want = [
            ("open", "syn-ack"),
            ("closed", "rst"),
            ("filtered", "icmp-3-13"),
            ("stealth", "no-response"),
        ];
        assert_eq!(
            texts,
            want.map(|(s, r)| (s.to_string(), r.to_string(), "tcp".to_string()))
        );
        drop(raw);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_stored_values_are_typed_errors_naming_the_column() {
        let dir = temp_dir("typed-unknown");
        old_database(
            &dir,
            "INSERT INTO scans VALUES
                ('m', '198.51.100.4', 'common', '21', 'raw', 'done', 1, 2, 10000, NULL, NULL),
                ('t', '198.51.100.4', 'weekly', '21', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('q', '198.51.100.4', 'port', '21-22', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('l', '198.51.100.4', 'custom', '21-x', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('st', '198.51.100.4', 'common', '21', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('re', '198.51.100.4', 'common', '21', 'syn', 'done', 1, 2, 10000, NULL, NULL),
                ('ss', '198.51.100.4', 'common', '21', 'syn', 'paused', 1, 2, 10000, NULL, NULL);
             INSERT INTO results VALUES
                ('st', 21, 'half-open', 'syn-ack', NULL, 1, NULL),
                ('re', 21, 'filtered', 'icmp-3-999', NULL, 1, NULL);",
        );
        let db = Db::open(&dir).unwrap();
        let cases = [
            ("m", "scans.mode", "unknown probe mode \"raw\""),
            ("t", "scans.test", "unknown test \"weekly\""),
            ("q", "scans.test", "a single-port test lists 2 ports"),
            ("l", "scans.ports", "21-x"),
            ("st", "results.state", "unknown port state \"half-open\""),
            ("re", "results.reason", "unknown reason \"icmp-3-999\""),
            ("ss", "scans.status", "unknown status \"paused\""),
        ];
        for (id, want_column, want_reason) in cases {
            match db.load(id) {
                Err(DbError::Unknown { column, reason }) => {
                    assert_eq!(column, want_column, "{id}");
                    assert!(reason.contains(want_reason), "{id}: {reason}");
                }
                other => panic!("{id}: expected DbError::Unknown, got {other:?}"),
            }
        }
        let e = db.load("st").unwrap_err().to_string();
        assert!(
            e.starts_with("the database's results.state column holds a value this version does not know: unknown port state \"half-open\"; expected open, closed"),
            "{e}"
        );
        // The good rows of the same database still load.
        assert_eq!(db.load("c").unwrap().unwrap().results.len(), 4);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
