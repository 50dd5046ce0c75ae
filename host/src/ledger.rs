//! The usage ledger: one row per engine request, so `luminary usage` can tell a
//! photographer what the AI engines cost them, per day and engine — including the requests
//! the edit cache answered for free, so the savings are visible too.
//!
//! Costs are estimates from the configured price per call, not the provider's invoice; they
//! are kept as integer micro-dollars so that sums are exact (no `0.30000000000000004` in a
//! bill). Days are UTC, matching how providers bill.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use crate::error::{ErrorCode, JobError};

/// Bumped with each schema change; `open` migrates older ledgers and refuses newer ones.
const SCHEMA_VERSION: i64 = 1;

/// Long enough to wait out a `luminary usage` query in another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How an engine request ended. Stored as text so the ledger stays readable with `sqlite3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The engine returned an edit.
    Ok,
    /// The engine refused the content.
    Refused,
    /// The engine failed or could not be reached.
    Failed,
    /// The client cancelled while the request was under way.
    Cancelled,
    /// No answer in time.
    Timeout,
    /// The provider rejected the key.
    Auth,
    /// The call was under way when the daemon stopped (killed, crashed, power cut): the
    /// provider may have charged for it, so it is counted at its price.
    Interrupted,
    /// Refused before sending: it would have gone past a `[budget]` cap. Costs nothing.
    OverBudget,
}

impl Outcome {
    /// The stored spelling, e.g. `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
            Outcome::Auth => "auth",
            Outcome::Interrupted => "interrupted",
            Outcome::OverBudget => "over_budget",
        }
    }
}

/// One engine request, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerEntry {
    /// When, in UTC unix seconds.
    pub time: i64,
    /// Engine name as configured (`gemini`, `openai`, …).
    pub engine: String,
    /// Model id, since prices differ per model.
    pub model: String,
    /// Preset id, so a photographer can see which looks cost the most.
    pub preset: String,
    /// How the request ended.
    pub outcome: Outcome,
    /// Estimated cost in US dollars. Stored as 0 for cached rows whatever it says.
    pub cost_usd: f64,
    /// Answered by the edit cache: no engine call happened.
    pub cached: bool,
    /// The provider's request id, to quote when disputing a charge.
    pub request_id: Option<String>,
    /// The file the job wrote, to connect a charge with a photo.
    pub output: Option<PathBuf>,
}

impl LedgerEntry {
    /// An engine call that just ended, costed from the configured `price_usd` per call.
    ///
    /// A successful call costs the price. A failed one costs it only if the provider may
    /// have billed (`provider_may_have_billed`: e.g. a timeout after the request was sent,
    /// or a content refusal some providers still charge for) — the engine adapter knows its
    /// provider's rules, the ledger does not.
    pub fn engine_call(
        engine: &str,
        model: &str,
        preset: &str,
        outcome: Outcome,
        price_usd: f64,
        provider_may_have_billed: bool,
    ) -> LedgerEntry {
        let billed = outcome == Outcome::Ok || provider_may_have_billed;
        LedgerEntry {
            time: now_secs(),
            engine: engine.to_string(),
            model: model.to_string(),
            preset: preset.to_string(),
            outcome,
            cost_usd: if billed { price_usd } else { 0.0 },
            cached: false,
            request_id: None,
            output: None,
        }
    }

    /// A request the edit cache answered: free, but shown, so the savings are visible.
    pub fn cache_hit(engine: &str, model: &str, preset: &str) -> LedgerEntry {
        LedgerEntry {
            cached: true,
            ..LedgerEntry::engine_call(engine, model, preset, Outcome::Ok, 0.0, false)
        }
    }
}

/// One line of `luminary usage`: a UTC day and an engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageRow {
    /// UTC date, `YYYY-MM-DD`.
    pub day: String,
    /// Engine name.
    pub engine: String,
    /// Every recorded request that went ahead, engine calls and cache hits alike.
    pub calls: u64,
    /// Those the edit cache answered (`calls - cached` reached the engine).
    pub cached: u64,
    /// Those that did not end `ok` (refused by the provider, failed, cancelled, timeout,
    /// auth).
    pub failed: u64,
    /// Calls not sent because they would have gone past a `[budget]` cap (not in `calls`).
    pub over_budget: u64,
    /// Estimated total in US dollars.
    pub cost_usd: f64,
}

/// Why the ledger could not be read or written. Recording failures should be logged, not
/// fail the job: the photographer's edit matters more than its bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be read or written: locked by another process for too long,
    /// damaged, or the disk is full.
    #[error("usage ledger {}: {error}", path.display())]
    Db {
        /// The ledger file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// The ledger's folder could not be created.
    #[error("usage ledger folder {}: {error}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The ledger was written by a newer Luminary whose layout this one does not know.
    #[error(
        "usage ledger {}: written by a newer Luminary (schema {found}, this one knows up to \
         {known}). Update Luminary to read it",
        path.display()
    )]
    NewerSchema {
        /// The ledger file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build understands.
        known: i64,
    },
}

impl From<LedgerError> for JobError {
    fn from(e: LedgerError) -> JobError {
        JobError::new(ErrorCode::Internal, e.to_string())
    }
}

/// The usage ledger, shared by the daemon's threads and by `luminary usage` in another
/// process.
pub struct Ledger {
    /// The database file, kept for error messages.
    path: PathBuf,
    /// One connection serialises this process's threads; SQLite's file locks serialise
    /// processes.
    conn: Mutex<Connection>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| LedgerError::Io {
                path: parent.to_path_buf(),
                error,
            })?;
        }
        let db = |error| LedgerError::Db {
            path: path.to_path_buf(),
            error,
        };
        let mut conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // WAL: `luminary usage` reads while the daemon records.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(db)?;
        // FULL: these rows are what a photographer checks a provider's bill against; one
        // extra fsync per engine call (seconds apart) is nothing.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            tx.execute_batch(
                "CREATE TABLE calls (
                    id             INTEGER PRIMARY KEY,
                    time           INTEGER NOT NULL,  -- UTC unix seconds
                    engine         TEXT NOT NULL,
                    model          TEXT NOT NULL,
                    preset         TEXT NOT NULL,
                    outcome        TEXT NOT NULL,     -- Outcome::as_str
                    cost_micro_usd INTEGER NOT NULL,  -- integer, so sums are exact
                    cached         INTEGER NOT NULL,  -- 0 or 1
                    request_id     TEXT,
                    output         TEXT
                );
                CREATE INDEX calls_time ON calls (time);",
            )
            .map_err(db)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Appends one request. Cached rows are stored at cost 0 whatever the entry says: the
    /// cache exists so that they cost nothing.
    pub fn record(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        insert(&self.lock(), entry).map_err(self.db())
    }

    /// Records a call about to be sent, as `interrupted` at its full price, and returns its
    /// row for [`Ledger::finish`]. If the daemon dies while the provider works, the row
    /// stays and the photographer still sees a call that may have been billed.
    pub fn begin(&self, entry: &LedgerEntry) -> Result<i64, LedgerError> {
        let started = LedgerEntry {
            outcome: Outcome::Interrupted,
            ..entry.clone()
        };
        self.record(&started)?;
        Ok(self.lock().last_insert_rowid())
    }

    /// [`Ledger::begin`] for a call under spending caps: in one transaction, the spending of
    /// each cap's period is summed and, if the call's price would take any past its cap, the
    /// call is recorded as refused (`over_budget`, cost 0) and the first such cap returned
    /// instead of a row. One transaction, so concurrent calls cannot both pass a cap.
    pub fn begin_within(
        &self,
        entry: &LedgerEntry,
        caps: &[crate::budget::Cap],
    ) -> Result<Result<i64, crate::budget::Exceeded>, LedgerError> {
        let price = micro_usd(entry);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let mut exceeded = None;
        for cap in caps {
            let spent = spent_since(&tx, cap.period.start(entry.time), cap.engine.as_deref())
                .map_err(self.db())?;
            if spent.saturating_add(price) > cap.micro_usd {
                exceeded = Some(crate::budget::Exceeded {
                    cap: cap.clone(),
                    spent_micro_usd: spent,
                    price_micro_usd: price,
                });
                break;
            }
        }
        let row = LedgerEntry {
            outcome: match exceeded {
                Some(_) => Outcome::OverBudget,
                None => Outcome::Interrupted,
            },
            cost_usd: if exceeded.is_some() {
                0.0
            } else {
                entry.cost_usd
            },
            ..entry.clone()
        };
        insert(&tx, &row).map_err(self.db())?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(self.db())?;
        Ok(match exceeded {
            Some(e) => Err(e),
            None => Ok(id),
        })
    }

    /// What was spent since `since` (UTC unix seconds), on `engine` or on all, in
    /// micro-dollars.
    pub fn spent_since(&self, since: i64, engine: Option<&str>) -> Result<i64, LedgerError> {
        spent_since(&self.lock(), since, engine).map_err(self.db())
    }

    /// Replaces a row from [`Ledger::begin`] with how the call ended.
    pub fn finish(&self, id: i64, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let micro = micro_usd(entry);
        self.lock()
            .execute(
                "UPDATE calls SET outcome = ?1, cost_micro_usd = ?2, request_id = ?3 WHERE id = ?4",
                params![entry.outcome.as_str(), micro, entry.request_id, id],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Requests at or after `since` (UTC unix seconds; `None` for all), summed per UTC day
    /// and engine, oldest day first.
    pub fn totals(&self, since: Option<i64>) -> Result<Vec<UsageRow>, LedgerError> {
        let conn = self.lock();
        // Floor division, so the day of a (pre-1970) negative time is right too.
        let mut stmt = conn
            .prepare(
                "SELECT CASE WHEN time >= 0 THEN time / 86400 ELSE (time - 86399) / 86400 END
                        AS day,
                        engine, SUM(outcome <> 'over_budget'), SUM(cached),
                        SUM(outcome NOT IN ('ok', 'over_budget')), SUM(cost_micro_usd),
                        SUM(outcome = 'over_budget')
                 FROM calls WHERE time >= ?1
                 GROUP BY day, engine ORDER BY day, engine",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([since.unwrap_or(i64::MIN)], |r| {
                Ok(UsageRow {
                    day: day_string(r.get::<_, i64>(0)?.saturating_mul(86_400)),
                    engine: r.get(1)?,
                    calls: r.get::<_, i64>(2)?.max(0) as u64,
                    cached: r.get::<_, i64>(3)?.max(0) as u64,
                    failed: r.get::<_, i64>(4)?.max(0) as u64,
                    cost_usd: r.get::<_, i64>(5)? as f64 / 1e6,
                    over_budget: r.get::<_, i64>(6)?.max(0) as u64,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an unfinished transaction on drop, so a poisoned lock still
        // guards a usable connection.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |error| LedgerError::Db {
            path: self.path.clone(),
            error,
        }
    }
}

/// An entry's cost as stored: integer micro-dollars, 0 for cached rows whatever it says.
fn micro_usd(entry: &LedgerEntry) -> i64 {
    if entry.cached || !entry.cost_usd.is_finite() {
        0
    } else {
        (entry.cost_usd.max(0.0) * 1e6).round() as i64
    }
}

fn insert(conn: &Connection, entry: &LedgerEntry) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO calls (time, engine, model, preset, outcome, cost_micro_usd, \
         cached, request_id, output) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            entry.time,
            entry.engine,
            entry.model,
            entry.preset,
            entry.outcome.as_str(),
            micro_usd(entry),
            entry.cached,
            entry.request_id,
            entry
                .output
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        ],
    )
    .map(|_| ())
}

fn spent_since(conn: &Connection, since: i64, engine: Option<&str>) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(SUM(cost_micro_usd), 0) FROM calls WHERE time >= ?1 \
         AND (?2 IS NULL OR engine = ?2)",
        params![since, engine],
        |r| r.get(0),
    )
}

/// The UTC date (`YYYY-MM-DD`) of a unix time. Hand-written (Howard Hinnant's
/// civil-from-days) because a date library for one function is not worth its build time.
pub fn day_string(unix_secs: i64) -> String {
    // Days since 0000-03-01, so that the leap day ends each 400-year era's year.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEB_28_2024: i64 = 1_709_078_400; // 2024-02-28T00:00:00Z
    const DAY: i64 = 86_400;

    fn at(time: i64, entry: LedgerEntry) -> LedgerEntry {
        LedgerEntry { time, ..entry }
    }

    fn call(engine: &str, outcome: Outcome, price: f64, may_have_billed: bool) -> LedgerEntry {
        LedgerEntry::engine_call(
            engine,
            "model-x",
            "essentials.golden-hour",
            outcome,
            price,
            may_have_billed,
        )
    }

    fn row(
        day: &str,
        engine: &str,
        calls: u64,
        cached: u64,
        failed: u64,
        cost_usd: f64,
    ) -> UsageRow {
        UsageRow {
            day: day.into(),
            engine: engine.into(),
            calls,
            cached,
            failed,
            cost_usd,
            over_budget: 0,
        }
    }

    #[test]
    fn totals_group_by_utc_day_and_engine() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("usage.sqlite")).unwrap();
        let last_second_of_28th = FEB_28_2024 + DAY - 1;
        let leap_day = FEB_28_2024 + DAY;
        for e in [
            at(
                FEB_28_2024 + 3600,
                call("gemini", Outcome::Ok, 0.039, false),
            ),
            at(
                last_second_of_28th,
                call("gemini", Outcome::Ok, 0.039, false),
            ),
            at(FEB_28_2024 + 60, call("openai", Outcome::Ok, 0.167, false)),
            // A timeout after the request went out: the provider may have billed.
            at(
                FEB_28_2024 + 120,
                call("openai", Outcome::Timeout, 0.167, true),
            ),
            // Rejected key: nothing billed.
            at(
                FEB_28_2024 + 180,
                call("openai", Outcome::Auth, 0.167, false),
            ),
            at(leap_day, call("gemini", Outcome::Ok, 0.039, false)),
            at(
                leap_day + 10,
                call("gemini", Outcome::Refused, 0.039, false),
            ),
            at(
                leap_day + 20,
                LedgerEntry::cache_hit("gemini", "model-x", "essentials.golden-hour"),
            ),
            at(
                leap_day + 30,
                LedgerEntry::cache_hit("gemini", "model-x", "essentials.golden-hour"),
            ),
        ] {
            ledger.record(&e).unwrap();
        }
        assert_eq!(
            ledger.totals(None).unwrap(),
            vec![
                row("2024-02-28", "gemini", 2, 0, 0, 0.078),
                row("2024-02-28", "openai", 3, 0, 2, 0.334),
                row("2024-02-29", "gemini", 4, 2, 1, 0.039),
            ]
        );
        assert_eq!(
            ledger.totals(Some(leap_day)).unwrap(),
            vec![row("2024-02-29", "gemini", 4, 2, 1, 0.039)],
            "`since` is inclusive"
        );
        assert_eq!(ledger.totals(Some(leap_day + DAY)).unwrap(), vec![]);
    }

    #[test]
    fn cost_sums_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("usage.sqlite")).unwrap();
        for _ in 0..3 {
            ledger
                .record(&at(FEB_28_2024, call("fal", Outcome::Ok, 0.1, false)))
                .unwrap();
        }
        // 0.1 + 0.1 + 0.1 in f64 is 0.30000000000000004; the ledger says 0.3.
        assert_eq!(ledger.totals(None).unwrap()[0].cost_usd, 0.3);
    }

    #[test]
    fn cached_rows_cost_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("usage.sqlite")).unwrap();
        // Even if a caller mistakenly prices a cache hit, the ledger stores 0.
        let mispriced = LedgerEntry {
            cached: true,
            ..at(FEB_28_2024, call("replicate", Outcome::Ok, 0.05, false))
        };
        ledger.record(&mispriced).unwrap();
        ledger
            .record(&at(
                FEB_28_2024,
                LedgerEntry::cache_hit("replicate", "flux", "film.portra"),
            ))
            .unwrap();
        assert_eq!(
            ledger.totals(None).unwrap(),
            vec![row("2024-02-28", "replicate", 2, 2, 0, 0.0)]
        );
    }

    #[test]
    fn rows_keep_request_id_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        let ledger = Ledger::open(&path).unwrap();
        let entry = LedgerEntry {
            request_id: Some("req_8f2c".into()),
            output: Some(PathBuf::from("/photos/IMG_0042-golden-hour.tif")),
            ..at(FEB_28_2024, call("openai", Outcome::Ok, 0.167, false))
        };
        ledger.record(&entry).unwrap();
        let stored: (String, String, String, i64, bool) = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT outcome, request_id, output, cost_micro_usd, cached FROM calls",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            stored,
            (
                "ok".into(),
                "req_8f2c".into(),
                "/photos/IMG_0042-golden-hour.tif".into(),
                167_000,
                false
            )
        );
    }

    #[test]
    fn reopening_keeps_rows_and_a_second_handle_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        // A folder that does not exist yet, like a fresh data dir.
        let path = dir.path().join("data/usage.sqlite");
        {
            let daemon = Ledger::open(&path).unwrap();
            daemon
                .record(&at(FEB_28_2024, call("gemini", Outcome::Ok, 0.039, false)))
                .unwrap();
            let cli = Ledger::open(&path).unwrap();
            assert_eq!(
                cli.totals(None).unwrap().len(),
                1,
                "the CLI sees the daemon's row"
            );
        }
        let reopened = Ledger::open(&path).unwrap();
        reopened
            .record(&at(FEB_28_2024, call("gemini", Outcome::Ok, 0.039, false)))
            .unwrap();
        assert_eq!(
            reopened.totals(None).unwrap(),
            vec![row("2024-02-28", "gemini", 2, 0, 0, 0.078)]
        );
    }

    #[test]
    fn threads_record_concurrently() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ledger>();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        let ledger = Ledger::open(&path).unwrap();
        let other_process = Ledger::open(&path).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let ledger = if t % 2 == 0 { &ledger } else { &other_process };
                s.spawn(move || {
                    for _ in 0..50 {
                        ledger
                            .record(&at(FEB_28_2024, call("comfyui", Outcome::Ok, 0.002, false)))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(
            ledger.totals(None).unwrap(),
            vec![row("2024-02-28", "comfyui", 200, 0, 0, 0.4)]
        );
    }

    #[test]
    fn a_newer_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        drop(Ledger::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 7)
            .unwrap();
        let err = Ledger::open(&path).err().expect("newer schema refused");
        assert!(matches!(
            err,
            LedgerError::NewerSchema {
                found: 7,
                known: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("usage.sqlite"));
    }

    #[test]
    fn usage_rows_serialise_as_the_cli_prints_them() {
        let json = serde_json::to_value(row("2024-02-29", "gemini", 4, 2, 1, 0.039)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "day": "2024-02-29", "engine": "gemini",
                "calls": 4, "cached": 2, "failed": 1, "cost_usd": 0.039, "over_budget": 0
            })
        );
    }

    #[test]
    fn a_call_cut_off_by_a_kill_stays_counted_and_a_finished_one_is_updated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        let ledger = Ledger::open(&path).unwrap();
        let sent = LedgerEntry::engine_call("gemini", "m", "p", Outcome::Ok, 0.039, true);
        let done = ledger.begin(&sent).unwrap();
        let _lost = ledger.begin(&sent).unwrap();
        let refused = LedgerEntry::engine_call("gemini", "m", "p", Outcome::Refused, 0.039, false);
        ledger.finish(done, &refused).unwrap();
        drop(ledger); // the daemon dies with the second call under way
        let rows = Ledger::open(&path).unwrap().totals(None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].calls, rows[0].failed), (2, 2));
        assert!((rows[0].cost_usd - 0.039).abs() < 1e-9, "{:?}", rows[0]);
    }

    fn gemini_daily(usd_micro: i64) -> Vec<crate::budget::Cap> {
        vec![crate::budget::Cap {
            engine: Some("gemini".into()),
            period: crate::budget::Period::Day,
            micro_usd: usd_micro,
        }]
    }

    #[test]
    fn a_call_past_a_cap_is_refused_recorded_and_free_and_other_engines_and_days_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("usage.sqlite")).unwrap();
        let caps = gemini_daily(100_000); // $0.10 a day on gemini
        let at_noon = |e: LedgerEntry| at(FEB_28_2024 + DAY / 2, e);
        for _ in 0..2 {
            let id = ledger
                .begin_within(&at_noon(call("gemini", Outcome::Ok, 0.04, true)), &caps)
                .unwrap()
                .expect("under the cap");
            // Still "interrupted" (counted at its price) until it finishes: spent all the same.
            let _ = id;
        }
        let refused = ledger
            .begin_within(&at_noon(call("gemini", Outcome::Ok, 0.04, true)), &caps)
            .unwrap()
            .expect_err("$0.12 would pass $0.10");
        assert_eq!(refused.spent_micro_usd, 80_000);
        assert_eq!(refused.price_micro_usd, 40_000);
        // Another engine (whose caps are its own: none here), and gemini the next day, are
        // not held by today's gemini cap.
        assert!(ledger
            .begin_within(&at_noon(call("openai", Outcome::Ok, 0.04, true)), &[])
            .unwrap()
            .is_ok());
        assert!(ledger
            .begin_within(
                &at(FEB_28_2024 + DAY, call("gemini", Outcome::Ok, 0.04, true)),
                &caps
            )
            .unwrap()
            .is_ok());
        let rows = ledger.totals(None).unwrap();
        let feb28 = rows
            .iter()
            .find(|r| r.day == "2024-02-28" && r.engine == "gemini")
            .unwrap();
        // Two calls (may have been billed), and the refusal at no cost.
        assert_eq!((feb28.calls, feb28.over_budget), (2, 1));
        assert!((feb28.cost_usd - 0.08).abs() < 1e-9, "{feb28:?}");
        let refusals: i64 = ledger
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM calls WHERE outcome = 'over_budget' AND cost_micro_usd = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(refusals, 1);
    }

    #[test]
    fn concurrent_calls_cannot_both_take_the_last_dollar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        let ledger = std::sync::Arc::new(Ledger::open(&path).unwrap());
        let caps = gemini_daily(100_000);
        // Threads of this daemon and a second process with its own connection.
        let other = std::sync::Arc::new(Ledger::open(&path).unwrap());
        let passed: usize = (0..10)
            .map(|i| {
                let l = if i % 2 == 0 {
                    ledger.clone()
                } else {
                    other.clone()
                };
                let caps = caps.clone();
                std::thread::spawn(move || {
                    l.begin_within(&call("gemini", Outcome::Ok, 0.03, true), &caps)
                        .unwrap()
                        .is_ok()
                })
            })
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(passed, 3, "$0.10 admits three calls of $0.03");
    }

    #[test]
    fn day_string_on_known_dates() {
        for (secs, day) in [
            (0, "1970-01-01"),
            (86_399, "1970-01-01"),
            (86_400, "1970-01-02"),
            (-1, "1969-12-31"),
            (946_598_400, "1999-12-31"),
            (951_782_400, "2000-02-29"), // divisible by 400: leap
            (951_868_800, "2000-03-01"),
            (FEB_28_2024 + DAY - 1, "2024-02-28"),
            (1_709_164_800, "2024-02-29"),
            (1_709_164_800 + DAY - 1, "2024-02-29"),
            (1_709_251_200, "2024-03-01"),
            (1_735_689_599, "2024-12-31"), // day 366 of a leap year
            (2_147_483_647, "2038-01-19"), // the 32-bit rollover second
            (4_107_456_000, "2100-02-28"), // divisible by 100 only: not leap
            (4_107_542_400, "2100-03-01"),
        ] {
            assert_eq!(day_string(secs), day, "day_string({secs})");
        }
    }
}
