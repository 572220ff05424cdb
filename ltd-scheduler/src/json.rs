//! DeepSpeed's config grammar and the typed reads of its values: text is read as JSON, or as
//! hjson (comments, trailing commas, quoteless strings) as DeepSpeed itself does; every read
//! names the key path in its error.

use serde_json::{Map, Value};

use crate::error::{Result, SchedulerError};

/// Deepest nesting of `[` / `{` accepted in a config's text. The hjson reader recurses per
/// level, so deeper text is refused before it is read (no stack overflow on hostile input).
pub const MAX_NESTING: usize = 128;

/// Parses a DeepSpeed config's text: strict JSON first, then hjson (which DeepSpeed reads its
/// files with: `#` and `//` comments, trailing commas, quoteless keys and strings).
///
/// # Errors
/// [`SchedulerError::InvalidJson`] with both readers' messages (line and column) when the text is
/// neither, or when it nests deeper than [`MAX_NESTING`].
///
/// ```
/// let value = ltd_scheduler::parse_deepspeed_text("{\n  # a comment\n  train_batch_size: 8,\n}")?;
/// assert_eq!(value["train_batch_size"], 8);
/// assert!(ltd_scheduler::parse_deepspeed_text("{\"a\": ").is_err());
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
pub fn parse_deepspeed_text(text: &str) -> Result<Value> {
    let json_error = match serde_json::from_str(text) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let depth = nesting_upper_bound(text);
    if depth > MAX_NESTING {
        return Err(SchedulerError::InvalidJson {
            message: format!(
                "{json_error} (and nesting depth {depth} is deeper than the {MAX_NESTING} levels accepted)"
            ),
        });
    }
    read_hjson(text).map_err(|hjson_error| SchedulerError::InvalidJson {
        message: format!("{json_error} (as hjson: {hjson_error})"),
    })
}

/// hjson through deser-hjson, for ASCII text without multiline strings only: its 2.2.6 slices
/// its input at byte offsets that can fall inside a multi-byte character, and indexes past the
/// end of an unterminated `'''` string, and panics (three fuzz finds). DeepSpeed configs need
/// neither, so such text, when it is not JSON, is refused with an error saying why.
fn read_hjson(text: &str) -> std::result::Result<Value, String> {
    if !text.is_ascii() {
        return Err("hjson is read for ASCII text only (write non-ASCII characters as JSON, or as \\u escapes)".into());
    }
    if text.contains("'''") {
        return Err("hjson multiline strings (''') are not accepted".into());
    }
    deser_hjson::from_str(text).map_err(|e| e.to_string())
}

/// An upper bound on the bracket nesting of `text` (brackets inside strings count too).
fn nesting_upper_bound(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A key whose value has no effect, reported by the parsers as data (the caller decides how to
/// show it; the library prints nothing).
///
/// ```
/// let w = ltd_scheduler::ConfigWarning { path: "a.b".into(), message: "has no effect".into() };
/// assert_eq!(w.to_string(), "a.b: has no effect");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key path.
    pub path: String,
    /// Why it has no effect.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// `"auto"`: the placeholder HF's DeepSpeed integration writes for values it fills in itself.
pub(crate) const AUTO: &str = "auto";

/// An optional positive integer that may be `"auto"`: `Ok(None)` for absent, null or `"auto"`
/// (then `path` is pushed on `autos`, so a missing value can be blamed on it later).
pub(crate) fn optional_positive_u64_or_auto(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    autos: &mut Vec<String>,
) -> Result<Option<u64>> {
    if object.get(key).and_then(Value::as_str) == Some(AUTO) {
        autos.push(path.to_owned());
        return Ok(None);
    }
    optional_positive_u64(object, key, path)
}

pub(crate) fn parse_json(text: &str) -> Result<Value> {
    parse_deepspeed_text(text)
}

/// A JSON value as short text for an error message.
pub(crate) fn describe(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        let short: String = text.chars().take(LIMIT).collect();
        format!("{short}...")
    }
}

pub(crate) fn wrong_type(path: &str, expected: &'static str, found: &Value) -> SchedulerError {
    SchedulerError::WrongType {
        path: path.to_owned(),
        expected,
        found: describe(found),
    }
}

/// `None` for an absent key or a JSON null.
pub(crate) fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

pub(crate) fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

pub(crate) fn reject_unknown_keys(
    object: &Map<String, Value>,
    path: &str,
    allowed: &'static [&'static str],
) -> Result<()> {
    let unknown: Vec<String> = object
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .cloned()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(SchedulerError::UnknownKeys {
            path: path.to_owned(),
            unknown,
            expected: allowed.to_vec(),
        })
    }
}

pub(crate) fn required<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value> {
    object.get(key).ok_or_else(|| SchedulerError::MissingKey {
        path: path.to_owned(),
    })
}

pub(crate) fn as_u64(value: &Value, path: &str) -> Result<u64> {
    value
        .as_u64()
        .ok_or_else(|| wrong_type(path, "a non-negative integer", value))
}

pub(crate) fn to_usize(value: u64, path: &str) -> Result<usize> {
    usize::try_from(value).map_err(|_| SchedulerError::WrongType {
        path: path.to_owned(),
        expected: "an integer that fits in usize",
        found: value.to_string(),
    })
}

pub(crate) fn as_f64(value: &Value, path: &str) -> Result<f64> {
    value
        .as_f64()
        .ok_or_else(|| wrong_type(path, "a number", value))
}

pub(crate) fn as_str<'a>(value: &'a Value, path: &str) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(path, "a string", value))
}

pub(crate) fn optional_bool(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>> {
    non_null(object.get(key))
        .map(|value| {
            value
                .as_bool()
                .ok_or_else(|| wrong_type(path, "true or false", value))
        })
        .transpose()
}

pub(crate) fn optional_u64(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u64>> {
    non_null(object.get(key))
        .map(|value| as_u64(value, path))
        .transpose()
}

pub(crate) fn optional_positive_u64(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u64>> {
    let value = optional_u64(object, key, path)?;
    if value == Some(0) {
        return Err(SchedulerError::NotPositive {
            path: path.to_owned(),
            found: "0".into(),
        });
    }
    Ok(value)
}

pub(crate) fn enum_key<T: Copy>(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    names: &'static [&'static str],
    variants: &[T],
) -> Result<T> {
    let name = as_str(required(object, key, path)?, path)?;
    names
        .iter()
        .position(|candidate| *candidate == name)
        .and_then(|index| variants.get(index).copied())
        .ok_or_else(|| SchedulerError::UnknownVariant {
            path: path.to_owned(),
            found: name.to_owned(),
            expected: names,
        })
}

/// The section's own batch size merged with the top-level one the engine injects.
pub(crate) fn merge_batch_size(
    in_section: Option<u64>,
    top_level: Option<u64>,
    section_key: &str,
    top_level_key: &'static str,
) -> Result<Option<u64>> {
    match (in_section, top_level) {
        (Some(value), Some(top_level_value)) if value != top_level_value => {
            Err(SchedulerError::ConflictingBatchSize {
                path: crate::config::paths::random_ltd(section_key),
                value,
                top_level_key,
                top_level_value,
            })
        }
        (in_section, top_level) => Ok(top_level.or(in_section)),
    }
}
