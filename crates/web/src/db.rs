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
//! One server owns a data directory: [`Db::open`] takes an exclusive lock on
//! `harbormaster.lock` in it before touching the database, held as long as the
//! handle lives, so a second server cannot mark the first's scans interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created or locked.
    #[error("creating the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// Another process holds the data directory's lock.
    #[error("the data directory {} is in use by another process", .0.display())]
    InUse(PathBuf),
}

impl DbError {
    /// Whether the failure is a full disk (or a full database file).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            DbError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            DbError::InUse(_) => false,
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
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "running" => Status::Running,
            "done" => Status::Done,
            "cancelled" => Status::Cancelled,
            "failed" => Status::Failed,
            _ => Status::Interrupted,
        }
    }
}

/// One port's stored result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredResult {
    /// Port.
    pub port: u16,
    /// open / closed / filtered / stealth.
    pub state: String,
    /// The evidence (syn-ack, rst, icmp-3-13, no-response …).
    pub reason: String,
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
    /// Test name (`common`, `service`, `custom`, `port`, `full`).
    pub test: String,
    /// The ports, compressed (`0-1055`).
    pub ports: String,
    /// `syn` or `connect`.
    pub mode: String,
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
             CREATE INDEX IF NOT EXISTS scans_expires ON scans(expires);",
        )?;
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
                s.id, s.target, s.test, s.ports, s.mode, s.created, s.expires
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_results(&tx, id, results)?;
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
                    Ok(StoredScan {
                        id: r.get(0)?,
                        target: r.get(1)?,
                        test: r.get(2)?,
                        ports: r.get(3)?,
                        mode: r.get(4)?,
                        status: Status::parse(&r.get::<_, String>(5)?),
                        created: r.get(6)?,
                        finished: r.get(7)?,
                        expires: r.get(8)?,
                        watch: r.get::<_, Option<String>>(9)?.and_then(|j| parse_watch(&j)),
                        results: Vec::new(),
                        error: r.get(10)?,
                        rate_limit: r.get(11)?,
                    })
                },
            )
            .optional()?;
        let Some(mut scan) = row else { return Ok(None) };
        let mut stmt = conn.prepare(
            "SELECT port, state, reason, rtt_ms, tries, ttl FROM results WHERE scan_id = ?1 ORDER BY port",
        )?;
        scan.results = stmt
            .query_map(params![id], |r| {
                Ok(StoredResult {
                    port: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    rtt_ms: r.get(3)?,
                    tries: r.get(4)?,
                    ttl: r.get(5)?,
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
        "INSERT OR REPLACE INTO results (scan_id, port, state, reason, rtt_ms, tries, ttl)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in results {
        insert.execute(params![
            id, r.port, r.state, r.reason, r.rtt_ms, r.tries, r.ttl
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
            test: "common".into(),
            ports: "21-23".into(),
            mode: "syn".into(),
            status: Status::Running,
            created: 1,
            finished: None,
            expires,
            watch: None,
            results: Vec::new(),
            error: None,
            rate_limit: None,
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
            state: "open".into(),
            reason: "syn-ack".into(),
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
            state: "stealth".into(),
            reason: "no-response".into(),
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
        s.mode = "connect".into();
        db.insert_running(&s).unwrap();
        db.insert_results("b", &[result(1), result(2)]).unwrap();
        db.insert_results("b", &[result(3)]).unwrap();
        // A crash here: the next start finds the batches, the scan interrupted.
        drop(db);
        let db = Db::open(&dir).unwrap();
        let b = db.load("b").unwrap().unwrap();
        assert_eq!(b.status, Status::Interrupted);
        assert_eq!(b.mode, "connect", "an interrupted scan keeps its mode");
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
}
