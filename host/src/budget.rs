//! Spending caps: `[budget]` in config.toml, a daily and a monthly cap in US dollars, for
//! all engines together and per engine. A paid engine call that would take the spending of
//! a period past a cap is refused before anything is sent (`budget_exceeded`); answers from
//! the edit cache cost nothing and are always allowed.
//!
//! What counts as spent is the usage ledger's estimate (the configured price per call,
//! calls that may have been billed included), in UTC days and months, as providers bill.
//! The check and the ledger row of the call happen in one ledger transaction
//! (`Ledger::begin_within`), so two jobs racing for the last dollar cannot both pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[budget]`: caps for all engines together, and `[budget.engines.<name>]` per engine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Most to spend per UTC day on all engines together, US dollars.
    pub daily_usd: Option<f64>,
    /// Most to spend per UTC calendar month on all engines together, US dollars.
    pub monthly_usd: Option<f64>,
    /// Caps of one engine (`gemini`, `openai`, …).
    pub engines: BTreeMap<String, EngineCaps>,
}

/// `[budget.engines.<name>]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineCaps {
    /// Most to spend per UTC day on this engine, US dollars.
    pub daily_usd: Option<f64>,
    /// Most to spend per UTC calendar month on this engine, US dollars.
    pub monthly_usd: Option<f64>,
}

/// A cap's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The UTC day.
    Day,
    /// The UTC calendar month.
    Month,
}

impl Period {
    /// When the period that holds `now` began (UTC unix seconds).
    pub fn start(self, now: i64) -> i64 {
        match self {
            Period::Day => now.div_euclid(86_400) * 86_400,
            Period::Month => month_start(now),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    fn spent_when(self) -> &'static str {
        match self {
            Period::Day => "today",
            Period::Month => "this month",
        }
    }
}

/// One cap that applies to a call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cap {
    /// The engine it is for; `None`: all engines together.
    pub engine: Option<String>,
    /// Day or month.
    pub period: Period,
    /// The cap, integer micro-dollars (as the ledger counts).
    pub micro_usd: i64,
}

impl Cap {
    /// The config key that sets it, for "how to raise it".
    pub fn key(&self) -> String {
        let name = match self.period {
            Period::Day => "daily_usd",
            Period::Month => "monthly_usd",
        };
        match &self.engine {
            Some(e) => format!("[budget.engines.{e}] {name}"),
            None => format!("[budget] {name}"),
        }
    }

    /// In words: "the daily budget for gemini ($2.00)".
    pub fn describe(&self) -> String {
        let whose = match &self.engine {
            Some(e) => format!(" for {e}"),
            None => " for all engines".to_string(),
        };
        format!(
            "the {} budget{whose} ({})",
            self.period.word(),
            dollars(self.micro_usd)
        )
    }
}

/// A call refused by a cap: which, and what the period has spent.
#[derive(Clone, Debug, PartialEq)]
pub struct Exceeded {
    /// The cap.
    pub cap: Cap,
    /// Spent in the cap's period so far, micro-dollars.
    pub spent_micro_usd: i64,
    /// What the call would cost, micro-dollars.
    pub price_micro_usd: i64,
}

impl Exceeded {
    /// The job's message: the cap, what was spent, and how to raise it.
    pub fn message(&self, config_file: &std::path::Path) -> String {
        format!(
            "this call ({}) would go past {}: {} spent {}; cached edits stay free. To spend \
             more, raise {} in {}",
            dollars(self.price_micro_usd),
            self.cap.describe(),
            dollars(self.spent_micro_usd),
            self.cap.period.spent_when(),
            self.cap.key(),
            config_file.display()
        )
    }
}

/// `$1.234` with at least two decimals, from micro-dollars.
pub fn dollars(micro: i64) -> String {
    let v = micro as f64 / 1e6;
    if (v * 100.0).fract().abs() < 1e-9 {
        format!("${v:.2}")
    } else {
        format!("${v:.3}")
    }
}

/// Micro-dollars of a configured amount (negative and non-finite amounts are 0: nothing
/// may be spent).
fn micro(usd: f64) -> i64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as i64
    } else {
        0
    }
}

impl BudgetConfig {
    /// Every cap that applies to a call to `engine`.
    pub fn caps_for(&self, engine: &str) -> Vec<Cap> {
        let mut caps = Vec::new();
        let mut push = |engine: Option<&str>, period, usd: Option<f64>| {
            if let Some(usd) = usd {
                caps.push(Cap {
                    engine: engine.map(str::to_string),
                    period,
                    micro_usd: micro(usd),
                });
            }
        };
        push(None, Period::Day, self.daily_usd);
        push(None, Period::Month, self.monthly_usd);
        if let Some(e) = self.engines.get(engine) {
            push(Some(engine), Period::Day, e.daily_usd);
            push(Some(engine), Period::Month, e.monthly_usd);
        }
        caps
    }

    /// Every configured cap (for `luminary usage`).
    pub fn all_caps(&self) -> Vec<Cap> {
        let mut caps = self.caps_for("");
        caps.retain(|c| c.engine.is_none());
        for name in self.engines.keys() {
            caps.extend(
                self.caps_for(name)
                    .into_iter()
                    .filter(|c| c.engine.is_some()),
            );
        }
        caps
    }

    /// Whether any cap is set.
    pub fn is_set(&self) -> bool {
        !self.all_caps().is_empty()
    }
}

/// The first second (UTC) of the calendar month that holds `unix_secs`.
pub fn month_start(unix_secs: i64) -> i64 {
    // Howard Hinnant's civil-from-days and days-from-civil, as `ledger::day_string`.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let doe = z.rem_euclid(146_097); // day of the 400-year era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    // Back to the 1st of the same month: `day - 1` days earlier.
    (unix_secs.div_euclid(86_400) - (day - 1)) * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAR_31_2024_2359: i64 = 1_711_929_540; // 2024-03-31T23:59:00Z
    const FEB_29_2024_1200: i64 = 1_709_208_000; // 2024-02-29T12:00:00Z

    #[test]
    fn periods_start_at_utc_midnight_and_on_the_first_of_the_month() {
        assert_eq!(Period::Day.start(MAR_31_2024_2359), 1_711_843_200); // 03-31 00:00
        assert_eq!(Period::Month.start(MAR_31_2024_2359), 1_709_251_200); // 03-01 00:00
        assert_eq!(Period::Month.start(FEB_29_2024_1200), 1_706_745_600); // 02-01 00:00
        assert_eq!(Period::Month.start(1_709_251_200), 1_709_251_200); // the 1st itself
        assert_eq!(Period::Month.start(0), 0); // 1970-01-01
    }

    #[test]
    fn caps_apply_in_total_and_per_engine() {
        let b: BudgetConfig = toml::from_str(
            "daily_usd = 5\nmonthly_usd = 50\n[engines.gemini]\ndaily_usd = 0.1\n\
             [engines.openai]\nmonthly_usd = 3\n",
        )
        .unwrap();
        let g = b.caps_for("gemini");
        assert_eq!(g.len(), 3);
        assert!(g.contains(&Cap {
            engine: Some("gemini".into()),
            period: Period::Day,
            micro_usd: 100_000
        }));
        assert_eq!(
            b.caps_for("fal").len(),
            2,
            "only the total caps apply to fal"
        );
        assert_eq!(b.all_caps().len(), 4);
        assert!(BudgetConfig::default().all_caps().is_empty());
        assert!(toml::from_str::<BudgetConfig>("dayly_usd = 1").is_err());
    }

    #[test]
    fn a_refusal_names_the_cap_what_was_spent_and_how_to_raise_it() {
        let e = Exceeded {
            cap: Cap {
                engine: Some("gemini".into()),
                period: Period::Day,
                micro_usd: 2_000_000,
            },
            spent_micro_usd: 1_975_000,
            price_micro_usd: 39_000,
        };
        let m = e.message(std::path::Path::new("/home/a/.config/luminary/config.toml"));
        assert!(
            m.contains("this call ($0.039) would go past the daily budget for gemini ($2.00)"),
            "{m}"
        );
        assert!(m.contains("$1.975 spent today"), "{m}");
        assert!(
            m.contains(
                "raise [budget.engines.gemini] daily_usd in /home/a/.config/luminary/config.toml"
            ),
            "{m}"
        );
    }
}
