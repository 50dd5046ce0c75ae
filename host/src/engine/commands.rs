//! `luminary engines`, `luminary usage` and `luminary cache`: what is set up, what was
//! spent, and the stored answers. They read the configuration and the databases directly,
//! so they work whether or not the daemon runs (SQLite handles the concurrent access).

use serde_json::{json, Value};

use crate::cache::EditCache;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::paths::Paths;

use super::remote::{cache_dir, ledger_path, Engines};

/// One line per engine: configured, key present, reachable — without spending money
/// (each provider's free metadata endpoint).
pub fn engines(paths: &Paths, json_out: bool) -> anyhow::Result<i32> {
    let config = Config::load(&paths.config_file)?;
    let engines = Engines::without_storage(&config);
    let rows: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = luminary_engines::NAMES
            .iter()
            .map(|&name| {
                let engines = &engines;
                let configured = config.engines.contains_key(name);
                let default = config.engine.default == name;
                s.spawn(move || match engines.provider(name) {
                    Ok(p) => {
                        let h = p.health();
                        json!({
                            "engine": name,
                            "model": p.model(),
                            "configured": configured,
                            "default": default,
                            "key_variable": p.key_var(),
                            "key_present": h.key_present,
                            "reachable": h.reachable,
                            "price_per_image": p.price_per_image(),
                            "detail": h.detail,
                        })
                    }
                    Err(e) => json!({
                        "engine": name, "configured": configured, "default": default,
                        "reachable": false, "detail": e.to_string(),
                    }),
                })
            })
            .collect();
        let mut rows = vec![json!({
            "engine": "local", "model": concat!("luminary-local-", env!("CARGO_PKG_VERSION")),
            "configured": true, "default": config.engine.default == "local",
            "key_variable": null, "key_present": null, "reachable": true,
            "price_per_image": 0.0, "detail": "built in, offline",
        })];
        rows.extend(handles.into_iter().map(|h| h.join().unwrap_or(Value::Null)));
        rows
    });
    if json_out {
        println!("{}", json!({ "engines": rows }));
        return Ok(0);
    }
    println!(
        "{:<10} {:<34} {:<8} {:<10} {:>7}  detail",
        "engine", "model", "key", "reachable", "$/image"
    );
    for r in &rows {
        let key = match (r["key_present"].as_bool(), r["key_variable"].as_str()) {
            (None, _) => "-".to_string(),
            (Some(true), _) => "present".to_string(),
            (Some(false), _) => "missing".to_string(),
        };
        let hint = match (r["key_present"].as_bool(), r["key_variable"].as_str()) {
            (Some(false), Some(var)) => format!(" (set {var})"),
            _ => String::new(),
        };
        println!(
            "{:<10} {:<34} {:<8} {:<10} {:>7.3}  {}{}{}",
            r["engine"].as_str().unwrap_or(""),
            r["model"].as_str().unwrap_or("?"),
            key,
            if r["reachable"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            r["price_per_image"].as_f64().unwrap_or(0.0),
            if r["default"].as_bool() == Some(true) {
                "[default] "
            } else {
                ""
            },
            r["detail"].as_str().unwrap_or(""),
            hint
        );
    }
    Ok(0)
}

/// Totals by day and engine from the ledger.
pub fn usage(paths: &Paths, json_out: bool, days: Option<u32>) -> anyhow::Result<i32> {
    let ledger = Ledger::open(&ledger_path(&paths.data_dir))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let since = days.map(|d| (now / 86_400 - d as i64 + 1) * 86_400);
    let rows = ledger.totals(since)?;
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    // Each spending cap with what its period has spent and what is left.
    let config = Config::load(&paths.config_file)?;
    let mut budget = Vec::new();
    for cap in config.budget.all_caps() {
        let spent = ledger.spent_since(cap.period.start(now), cap.engine.as_deref())?;
        budget.push((cap.clone(), spent, (cap.micro_usd - spent).max(0)));
    }
    if json_out {
        let budget: Vec<Value> = budget
            .iter()
            .map(|(cap, spent, left)| {
                json!({ "engine": cap.engine, "period": cap.period, "cap_usd": cap.micro_usd as f64 / 1e6,
                        "spent_usd": *spent as f64 / 1e6, "remaining_usd": *left as f64 / 1e6,
                        "key": cap.key() })
            })
            .collect();
        println!(
            "{}",
            json!({ "usage": rows, "total_cost_usd": total, "budget": budget })
        );
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no engine calls recorded");
    } else {
        println!(
            "{:<10} {:<10} {:>6} {:>7} {:>7} {:>8} {:>9}",
            "day", "engine", "calls", "cached", "failed", "over cap", "cost $"
        );
        for r in &rows {
            println!(
                "{:<10} {:<10} {:>6} {:>7} {:>7} {:>8} {:>9.3}",
                r.day, r.engine, r.calls, r.cached, r.failed, r.over_budget, r.cost_usd
            );
        }
        println!("{:<10} {:<10} {:>42.3}", "total", "", total);
    }
    if !budget.is_empty() {
        println!("\nspending caps ({}):", paths.config_file.display());
        for (cap, spent, left) in &budget {
            println!(
                "  {:<44} spent {:>9}, {:>9} left",
                cap.describe(),
                crate::budget::dollars(*spent),
                crate::budget::dollars(*left)
            );
        }
    }
    Ok(0)
}

/// `cache clear` / `cache stats`.
pub fn cache(paths: &Paths, clear: bool, json_out: bool) -> anyhow::Result<i32> {
    let config = Config::load(&paths.config_file)?;
    let cache = EditCache::open(&cache_dir(&paths.cache_dir), config.cache.max_mb << 20)?;
    let stats = if clear {
        cache.clear()?
    } else {
        cache.stats()?
    };
    if json_out {
        println!(
            "{}",
            json!({ "cleared": clear, "entries": stats.entries, "bytes": stats.bytes,
                    "dir": cache.dir(), "max_bytes": config.cache.max_mb << 20 })
        );
    } else if clear {
        println!(
            "removed {} cached answers ({:.1} MB) from {}",
            stats.entries,
            stats.bytes as f64 / 1e6,
            cache.dir().display()
        );
    } else {
        println!(
            "{} cached answers, {:.1} MB of {} MB, in {}",
            stats.entries,
            stats.bytes as f64 / 1e6,
            config.cache.max_mb,
            cache.dir().display()
        );
    }
    Ok(0)
}
