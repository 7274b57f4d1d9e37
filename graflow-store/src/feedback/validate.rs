//! An answer checked against its request before it is stored: the kind's shape (a boolean, a
//! string, one option, distinct options), a custom request's JSON schema, the size. A refused
//! answer says what was expected; the request stays open.

use graflow_core::feedback::{FeedbackKind, FeedbackRequest, MAX_ANSWER};
use serde_json::Value;

/// What a request accepts, as the store keeps it.
pub(crate) struct Accepts<'a> {
    pub kind: FeedbackKind,
    pub options: &'a [String],
    pub schema: Option<&'a str>,
    pub expected: &'a str,
}

/// `value`, if the request accepts it; why not otherwise.
pub(crate) fn check(accepts: &Accepts<'_>, value: &Value) -> Result<(), String> {
    let size = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
    if size > MAX_ANSWER {
        return Err(format!(
            "the answer has {size} bytes of JSON, more than {MAX_ANSWER}"
        ));
    }
    let expected = || format!("expected {}", accepts.expected);
    match accepts.kind {
        FeedbackKind::Approval => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(format!("{}, got {}", expected(), shape(value))),
        },
        FeedbackKind::Text => match value {
            Value::String(_) => Ok(()),
            _ => Err(format!("expected a text, got {}", shape(value))),
        },
        FeedbackKind::Selection => match value {
            Value::String(s) if accepts.options.contains(s) => Ok(()),
            Value::String(s) => Err(format!("{s:?} is not an option: {}", expected())),
            _ => Err(format!("{}, got {}", expected(), shape(value))),
        },
        FeedbackKind::MultiSelection => {
            let Value::Array(items) = value else {
                return Err(format!("{}, got {}", expected(), shape(value)));
            };
            let mut seen = std::collections::HashSet::new();
            for item in items {
                match item {
                    Value::String(s) if !accepts.options.contains(s) => {
                        return Err(format!("{s:?} is not an option: {}", expected()));
                    }
                    Value::String(s) if !seen.insert(s) => {
                        return Err(format!("{s:?} is chosen twice: {}", expected()));
                    }
                    Value::String(_) => {}
                    other => return Err(format!("{}, got {}", expected(), shape(other))),
                }
            }
            Ok(())
        }
        FeedbackKind::Custom => {
            let schema = accepts
                .schema
                .ok_or_else(|| "the request has no schema to check the answer with".to_owned())?;
            let schema: Value = serde_json::from_str(schema)
                .map_err(|e| format!("the request's schema is not JSON: {e}"))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| format!("the request's schema is not a usable JSON schema: {e}"))?;
            validator.validate(value).map_err(|error| {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() {
                    "the answer".to_owned()
                } else {
                    format!("at {at}")
                };
                format!("{}: {at}: {error}", expected())
            })
        }
        _ => Err(format!(
            "this program does not know requests of kind {}",
            accepts.kind
        )),
    }
}

/// Whether the store can keep `request`: a custom request's schema must be a JSON schema the
/// answers can be checked with (no remote references: none is fetched), or every answer would
/// be refused and its task wait for good.
pub(crate) fn check_request(request: &FeedbackRequest) -> Result<(), String> {
    let Some(schema) = &request.schema else {
        return Ok(());
    };
    let schema: Value = serde_json::from_str(schema)
        .map_err(|e| format!("the answer's schema is not JSON: {e}"))?;
    jsonschema::validator_for(&schema)
        .map(|_| ())
        .map_err(|e| format!("the answer's schema is not a usable JSON schema: {e}"))
}

/// What a person typed (`--graflow-answer ID VALUE`) as the JSON the request wants: `yes`/`no`
/// (also `y`, `n`, `true`, `false`, `approve`, `reject`) for an approval, the text as it is,
/// the option as it is, a JSON array or a comma-separated list of options, JSON for a custom
/// request.
pub(crate) fn parse_text(kind: FeedbackKind, text: &str) -> Result<Value, String> {
    match kind {
        FeedbackKind::Approval => match text.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "approve" | "approved" => Ok(Value::Bool(true)),
            "no" | "n" | "false" | "reject" | "rejected" => Ok(Value::Bool(false)),
            other => Err(format!(
                "expected yes or no, got {:?}",
                crate::limits::clean(other, 64)
            )),
        },
        FeedbackKind::Text | FeedbackKind::Selection => Ok(Value::String(text.to_owned())),
        FeedbackKind::MultiSelection => {
            let trimmed = text.trim();
            if trimmed.starts_with('[') {
                serde_json::from_str(trimmed).map_err(|e| format!("not a JSON array: {e}"))
            } else if trimmed.is_empty() {
                Ok(Value::Array(Vec::new()))
            } else {
                Ok(Value::Array(
                    trimmed
                        .split(',')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .collect(),
                ))
            }
        }
        _ => serde_json::from_str(text).map_err(|e| format!("not JSON: {e}")),
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn accepts<'a>(
        kind: FeedbackKind,
        options: &'a [String],
        schema: Option<&'a str>,
    ) -> Accepts<'a> {
        Accepts {
            kind,
            options,
            schema,
            expected: "it",
        }
    }

    #[test]
    fn each_kind_takes_its_shape_only() {
        let none: [String; 0] = [];
        let options = ["blue".to_owned(), "green".to_owned()];
        assert!(check(&accepts(FeedbackKind::Approval, &none, None), &json!(true)).is_ok());
        assert!(check(&accepts(FeedbackKind::Approval, &none, None), &json!("yes")).is_err());
        assert!(check(&accepts(FeedbackKind::Text, &none, None), &json!("hi")).is_ok());
        assert!(check(&accepts(FeedbackKind::Text, &none, None), &json!(1)).is_err());
        let select = accepts(FeedbackKind::Selection, &options, None);
        assert!(check(&select, &json!("blue")).is_ok());
        let refused = check(&select, &json!("red")).unwrap_err();
        assert!(refused.contains("\"red\" is not an option"), "{refused}");
        let multi = accepts(FeedbackKind::MultiSelection, &options, None);
        assert!(check(&multi, &json!(["blue", "green"])).is_ok());
        assert!(check(&multi, &json!([])).is_ok());
        assert!(check(&multi, &json!(["blue", "blue"])).is_err());
        assert!(check(&multi, &json!(["red"])).is_err());
        assert!(check(&multi, &json!("blue")).is_err());
    }

    #[test]
    fn a_custom_answer_is_checked_against_its_schema() {
        let none: [String; 0] = [];
        let schema = r#"{"type":"object","properties":{"count":{"type":"integer","minimum":0}},"required":["count"]}"#;
        let custom = accepts(FeedbackKind::Custom, &none, Some(schema));
        assert!(check(&custom, &json!({"count": 3})).is_ok());
        let refused = check(&custom, &json!({"count": "three"})).unwrap_err();
        assert!(refused.contains("/count"), "{refused}");
        assert!(check(&custom, &json!({})).is_err());
    }

    #[test]
    fn a_huge_answer_is_refused_whatever_its_kind() {
        let none: [String; 0] = [];
        let big = "x".repeat(MAX_ANSWER + 1);
        let refused = check(&accepts(FeedbackKind::Text, &none, None), &json!(big)).unwrap_err();
        assert!(refused.contains("more than"), "{refused}");
    }

    #[test]
    fn typed_answers_read_as_their_kind() {
        assert_eq!(
            parse_text(FeedbackKind::Approval, "Yes").unwrap(),
            json!(true)
        );
        assert_eq!(
            parse_text(FeedbackKind::Approval, "no").unwrap(),
            json!(false)
        );
        assert!(parse_text(FeedbackKind::Approval, "maybe").is_err());
        assert_eq!(
            parse_text(FeedbackKind::MultiSelection, "a, b").unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            parse_text(FeedbackKind::MultiSelection, "[\"a\"]").unwrap(),
            json!(["a"])
        );
        assert_eq!(
            parse_text(FeedbackKind::Custom, "{\"a\":1}").unwrap(),
            json!({"a": 1})
        );
        assert!(parse_text(FeedbackKind::Custom, "{").is_err());
    }

    proptest! {
        /// Any text, as any kind, against any schema text: an answer or a reason, never a panic.
        #[test]
        fn hostile_answers_and_schemas_never_panic(text in ".{0,200}", schema in ".{0,200}", kind in 0usize..5) {
            let kind = [FeedbackKind::Approval, FeedbackKind::Text, FeedbackKind::Selection, FeedbackKind::MultiSelection, FeedbackKind::Custom][kind];
            let options = ["a".to_owned()];
            if let Ok(value) = parse_text(kind, &text) {
                let _ = check(&accepts(kind, &options, Some(&schema)), &value);
            }
        }
    }
}
