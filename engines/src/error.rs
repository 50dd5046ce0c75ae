//! The error kinds the daemon branches on, and whether each may have cost money.

/// Why an edit failed. Messages name the engine and say what to do; they never contain the key.
#[derive(thiserror::Error, Debug)]
pub enum EngineError {
    /// Missing or rejected key.
    #[error("{engine}: API key missing or rejected ({detail}); set {var} or [engines.{engine}] api_key in config.toml")]
    Auth {
        /// Engine name.
        engine: String,
        /// The environment variable that holds the key.
        var: &'static str,
        /// What the provider said, without the key.
        detail: String,
    },
    /// Content refusal; never retried, since the same input gets the same answer.
    #[error("{engine} refused the edit: {reason}")]
    Refused {
        /// Engine name.
        engine: String,
        /// The provider's reason (block reason, moderation message, E005…).
        reason: String,
    },
    /// Retries exhausted on 5xx or connection errors, or the circuit is open.
    #[error("{engine} is unavailable: {detail}")]
    Unavailable {
        /// Engine name.
        engine: String,
        /// What failed last.
        detail: String,
    },
    /// Still HTTP 429 after all attempts (or the server asked for a wait longer than allowed).
    #[error("{engine} is rate limiting this account{}; try again later or lower [engines.{engine}] concurrency", retry_hint(*retry_after_s))]
    RateLimited {
        /// Engine name.
        engine: String,
        /// The server's last requested wait, if it gave one.
        retry_after_s: Option<f64>,
    },
    /// No answer in time. `stage` tells how far the edit got, which decides
    /// [`EngineError::maybe_billed`]: `"connect"`, `"upload"`, `"queue"` (not billed) or
    /// `"response"`, `"submit"`, `"running"`, `"result"`, `"download"` (may be billed).
    #[error("{engine} timed out ({stage}); raise [engines.{engine}] request_timeout_s or total_timeout_s if the service is just slow")]
    Timeout {
        /// Engine name.
        engine: String,
        /// Where the time ran out.
        stage: &'static str,
    },
    /// Malformed JSON, text instead of an image, undecodable or empty image, wrong aspect ratio.
    #[error("{engine} sent an unusable reply: {detail}")]
    BadReply {
        /// Engine name.
        engine: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Bad base_url, unreadable workflow, unknown model, 4xx validation errors.
    #[error("{engine}: {detail}")]
    Config {
        /// Engine name.
        engine: String,
        /// What to fix.
        detail: String,
    },
    /// The host's job was cancelled; remote jobs were asked to stop.
    #[error("edit cancelled")]
    Cancelled,
}

fn retry_hint(after: Option<f64>) -> String {
    match after {
        Some(s) => format!(" (it asked to wait {s:.1} s)"),
        None => String::new(),
    }
}

impl EngineError {
    /// True when the provider may have charged for this failed edit, so the ledger can count it.
    ///
    /// Reasoning, per kind:
    /// - `Auth`, `Config`, `RateLimited`, `Unavailable`: the provider rejected or never ran the
    ///   request (4xx validation, 429, 5xx and connection failures are not billed by any of the
    ///   five; fal documents that 5xx failures are free). A circuit-open failure sent nothing.
    /// - `Refused`: Gemini answers refusals with HTTP 200 after spending prompt (and sometimes
    ///   output) tokens, so it may bill; OpenAI (400), fal (422) and Replicate (E005, a failed
    ///   prediction of a per-output-priced model) do not.
    /// - `Timeout`: depends on the stage. `connect`, `upload` and `queue` mean no
    ///   generation started (a queued job is cancelled remotely). `response` (a sync call that
    ///   was sent and never answered), `submit` (a queue submit whose answer never came, so the
    ///   job may exist), `running`, `result` and `download` mean the provider may have generated.
    /// - `BadReply`: the provider answered "successfully" (HTTP 200 with text, a broken image or
    ///   broken JSON), which is when it bills.
    /// - `Cancelled`: the variant does not record how far the edit got; an edit cancelled during
    ///   a sync call or while its remote job ran may still be charged, so it counts as possible.
    ///
    /// ComfyUI is local and never bills: every ComfyUI error answers `false` (except `Cancelled`,
    /// which carries no engine; its price is 0 anyway).
    pub fn maybe_billed(&self) -> bool {
        match self {
            EngineError::Auth { .. }
            | EngineError::Config { .. }
            | EngineError::RateLimited { .. }
            | EngineError::Unavailable { .. } => false,
            EngineError::Refused { engine, .. } => engine == "gemini",
            EngineError::Timeout { engine, stage } => {
                engine != "comfyui"
                    && matches!(
                        *stage,
                        "response" | "submit" | "running" | "result" | "download"
                    )
            }
            EngineError::BadReply { engine, .. } => engine != "comfyui",
            EngineError::Cancelled => true,
        }
    }

    /// Whether this failure says something about the service's health (feeds the circuit
    /// breaker). Refusals, bad keys and bad replies come from a working service.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            EngineError::Unavailable { .. }
                | EngineError::RateLimited { .. }
                | EngineError::Timeout { .. }
        )
    }

    /// Removes the key from every message, in case a provider or a transport error echoed it.
    pub(crate) fn redacted(self, key: Option<&str>) -> EngineError {
        let Some(key) = key.filter(|k| k.len() >= 4) else {
            return self;
        };
        let r = |s: String| redact(&s, key);
        match self {
            EngineError::Auth {
                engine,
                var,
                detail,
            } => EngineError::Auth {
                engine,
                var,
                detail: r(detail),
            },
            EngineError::Refused { engine, reason } => EngineError::Refused {
                engine,
                reason: r(reason),
            },
            EngineError::Unavailable { engine, detail } => EngineError::Unavailable {
                engine,
                detail: r(detail),
            },
            EngineError::BadReply { engine, detail } => EngineError::BadReply {
                engine,
                detail: r(detail),
            },
            EngineError::Config { engine, detail } => EngineError::Config {
                engine,
                detail: r(detail),
            },
            other => other,
        }
    }
}

/// Replaces every occurrence of the key (also percent-encoded) with `<redacted>`.
pub(crate) fn redact(text: &str, key: &str) -> String {
    if key.len() < 4 {
        return text.to_string();
    }
    let mut out = text.replace(key, "<redacted>");
    let encoded: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if encoded != key {
        out = out.replace(&encoded, "<redacted>");
    }
    out
}

/// Cuts provider text to one readable line for an error message.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_follows_the_stage() {
        let t = |stage| EngineError::Timeout {
            engine: "gemini".into(),
            stage,
        };
        assert!(!t("connect").maybe_billed());
        assert!(!t("queue").maybe_billed());
        assert!(t("response").maybe_billed());
        assert!(t("running").maybe_billed());
        assert!(!EngineError::Timeout {
            engine: "comfyui".into(),
            stage: "running"
        }
        .maybe_billed());
        assert!(EngineError::Refused {
            engine: "gemini".into(),
            reason: String::new()
        }
        .maybe_billed());
        assert!(!EngineError::Refused {
            engine: "openai".into(),
            reason: String::new()
        }
        .maybe_billed());
    }

    #[test]
    fn no_error_message_nor_config_debug_shows_the_key() {
        let key = "sk-live-SECRET+key/42";
        let echo = format!(
            "upstream echoed {key} (or {}) back",
            key.replace('+', "%2B").replace('/', "%2F")
        );
        let all = vec![
            EngineError::Auth {
                engine: "gemini".into(),
                var: "GEMINI_API_KEY",
                detail: echo.clone(),
            },
            EngineError::Refused {
                engine: "openai".into(),
                reason: echo.clone(),
            },
            EngineError::Unavailable {
                engine: "fal".into(),
                detail: echo.clone(),
            },
            EngineError::RateLimited {
                engine: "replicate".into(),
                retry_after_s: Some(2.0),
            },
            EngineError::Timeout {
                engine: "gemini".into(),
                stage: "response",
            },
            EngineError::BadReply {
                engine: "gemini".into(),
                detail: echo.clone(),
            },
            EngineError::Config {
                engine: "comfyui".into(),
                detail: echo,
            },
            EngineError::Cancelled,
        ];
        for err in all {
            let err = err.redacted(Some(key));
            let text = format!("{err} / {err:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
        let cfg = crate::ProviderConfig {
            api_key: Some(key.into()),
            ..Default::default()
        };
        let debug = format!("{cfg:?} {cfg:#?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("<set>"),
            "{debug}"
        );
    }

    #[test]
    fn redact_removes_plain_and_encoded_keys() {
        assert_eq!(
            redact("key=abc+def/1 and abc%2Bdef%2F1", "abc+def/1"),
            "key=<redacted> and <redacted>"
        );
        assert_eq!(clip("a\n b   c", 10), "a b c");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
