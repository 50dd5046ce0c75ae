//! Preset parameters: validated against the preset's JSON Schema before any work.

use luminary_plugin_api::PresetDescriptor;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, JobError};

/// Validates `given` against the preset's schema, coercing strings from the command line
/// (`--param strength=0.5`) to the declared type, and fills in defaults.
pub fn resolve_params(
    preset: &PresetDescriptor,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, JobError> {
    let bad = |msg: String| {
        JobError::new(
            ErrorCode::BadRequest,
            format!("preset '{}': {msg}", preset.id),
        )
    };
    let empty = Map::new();
    let props = preset
        .params_schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Map::new();
    for (key, value) in given {
        let Some(schema) = props.get(key) else {
            let names: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err(bad(if names.is_empty() {
                format!("has no parameters, but '{key}' was given")
            } else {
                format!(
                    "has no parameter '{key}'; its parameters are: {}",
                    names.join(", ")
                )
            }));
        };
        let ty = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let v = match (ty, value) {
            ("number" | "integer", Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .ok_or_else(|| bad(format!("parameter '{key}' must be a number (got '{s}')")))?,
            ("boolean", Value::String(s)) => match s.trim() {
                "true" | "yes" | "on" | "1" => Value::Bool(true),
                "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => {
                    return Err(bad(format!(
                        "parameter '{key}' must be true or false (got '{s}')"
                    )))
                }
            },
            (_, v) => v.clone(),
        };
        match ty {
            "number" | "integer" => {
                let f = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("parameter '{key}' must be a number")))?;
                if ty == "integer" && f.fract() != 0.0 {
                    return Err(bad(format!(
                        "parameter '{key}' must be a whole number (got {f})"
                    )));
                }
                let min = schema.get("minimum").and_then(Value::as_f64);
                let max = schema.get("maximum").and_then(Value::as_f64);
                if min.is_some_and(|m| f < m) || max.is_some_and(|m| f > m) {
                    return Err(bad(format!(
                        "parameter '{key}' must be between {} and {} (got {f})",
                        min.map_or("-∞".into(), |m| m.to_string()),
                        max.map_or("∞".into(), |m| m.to_string())
                    )));
                }
            }
            "boolean" if !v.is_boolean() => {
                return Err(bad(format!("parameter '{key}' must be true or false")))
            }
            "string" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad(format!("parameter '{key}' must be text")))?;
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                    if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                        let names: Vec<String> = allowed
                            .iter()
                            .filter_map(|a| a.as_str().map(String::from))
                            .collect();
                        return Err(bad(format!(
                            "parameter '{key}' must be one of {} (got '{s}')",
                            names.join(", ")
                        )));
                    }
                }
            }
            _ => {}
        }
        out.insert(key.clone(), v);
    }
    for (key, schema) in props {
        if !out.contains_key(key) {
            if let Some(d) = schema.get("default") {
                out.insert(key.clone(), d.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use luminary_plugin_api::PresetDescriptor;
    use serde_json::json;

    fn preset() -> PresetDescriptor {
        PresetDescriptor::look("p", "P", "d").params(json!({
            "type": "object",
            "properties": {
                "strength": {"type": "number", "minimum": 0, "maximum": 2, "default": 1.0},
                "filter": {"type": "string", "enum": ["red", "none"], "default": "red"}
            }
        }))
    }

    #[test]
    fn cli_strings_are_coerced_and_defaults_filled() {
        let given = json!({"strength": "0.5"}).as_object().unwrap().clone();
        let p = resolve_params(&preset(), &given).unwrap();
        assert_eq!(p["strength"], json!(0.5));
        assert_eq!(p["filter"], json!("red"));
    }

    #[test]
    fn out_of_range_unknown_and_bad_enum_values_say_what_is_wrong() {
        let e = |v: Value| {
            resolve_params(&preset(), v.as_object().unwrap())
                .unwrap_err()
                .message
        };
        assert!(e(json!({"strength": "3"})).contains("between 0 and 2"));
        assert!(e(json!({"strenght": 1})).contains("has no parameter 'strenght'"));
        assert!(e(json!({"filter": "blue"})).contains("one of red, none"));
        assert!(e(json!({"strength": "lots"})).contains("must be a number"));
    }
}
