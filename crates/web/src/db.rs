//! Scan storage in SQLite. A scan row is written when the scan starts and
//! completed — with every result — in one transaction when it ends, so a crash
//! or shutdown never leaves half a result set behind a "done" status.

use std::path::Path;
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
    /// The data directory could not be created.
    #[error("creating the data directory: {0}")]
    Io(#[from] std::io::Error),
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
    /// The probe engine failed.
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
}

/// The database handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Db(Arc<Mutex<Connection>>);

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Db {
    /// Opens (creating if needed) `dir/harbormaster.sqlite3`, and marks scans a
    /// previous process left running as interrupted.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join("harbormaster.sqlite3"))?;
        Db::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Db, DbError> {
        Db::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Db, DbError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS scans (
                id TEXT PRIMARY KEY, target TEXT NOT NULL, test TEXT NOT NULL,
                ports TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
                created INTEGER NOT NULL, finished INTEGER, expires INTEGER NOT NULL,
                watch TEXT);
             CREATE TABLE IF NOT EXISTS results (
                scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
                port INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
                rtt_ms REAL, tries INTEGER NOT NULL, ttl INTEGER,
                PRIMARY KEY (scan_id, port));
             CREATE INDEX IF NOT EXISTS scans_expires ON scans(expires);
             UPDATE scans SET status = 'interrupted' WHERE status = 'running';",
        )?;
        Ok(Db(Arc::new(Mutex::new(conn))))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Stores the outcome and every result in one transaction.
    pub fn finish(
        &self,
        id: &str,
        status: Status,
        watch: Option<&StoredWatch>,
        results: &[StoredResult],
    ) -> Result<(), DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO results (scan_id, port, state, reason, rtt_ms, tries, ttl)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in results {
                insert.execute(params![
                    id, r.port, r.state, r.reason, r.rtt_ms, r.tries, r.ttl
                ])?;
            }
        }
        let watch_json = watch.map(|w| {
            serde_json::json!({
                "pings_sent": w.pings_sent, "ping_replies": w.ping_replies,
                "unsolicited": w.unsolicited, "unsolicited_examples": w.unsolicited_examples,
            })
            .to_string()
        });
        tx.execute(
            "UPDATE scans SET status = ?2, finished = ?3, watch = ?4 WHERE id = ?1",
            params![id, status.as_str(), unix_now(), watch_json],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A stored scan with its results.
    pub fn load(&self, id: &str) -> Result<Option<StoredScan>, DbError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, target, test, ports, mode, status, created, finished, expires, watch
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
        db.finish("a", Status::Done, Some(&watch), &results)
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
}
