//! DeepSpeed's `sparse_attention` JSON section (upstream-semantics.md §2.5).
//!
//! Keys, defaults and the modes that use them:
//!
//! | key | default | used by modes |
//! |---|---|---|
//! | `mode` | `"fixed"` | dense, fixed, variable, bigbird, bslongformer |
//! | `block` | 16 | all |
//! | `different_layout_per_head` | false | all but dense |
//! | `num_local_blocks` | 4 | fixed |
//! | `num_global_blocks` | 1 | fixed, bigbird |
//! | `attention` | `"bidirectional"` | fixed, variable |
//! | `horizontal_global_attention` | false | fixed, variable |
//! | `num_different_global_patterns` | 1 | fixed |
//! | `num_random_blocks` | 0 | variable, bigbird |
//! | `local_window_blocks` | `[4]` | variable |
//! | `global_block_indices` | `[0]` | variable, bslongformer |
//! | `global_block_end_indices` | null | variable, bslongformer |
//! | `num_sliding_window_blocks` | 3 | bigbird, bslongformer |
//!
//! As upstream, a key that exists but does not apply to the chosen mode is **ignored** (its value
//! is not even type-checked), so `attention` is never passed to bigbird or bslongformer and they
//! are always bidirectional from JSON; `local_sliding_window` is not reachable from JSON.
//! [`sparse_attention_with_warnings`] returns such keys as [`ConfigWarning`]s. Text is read as
//! JSON or, as DeepSpeed reads it, hjson (comments, trailing commas, quoteless strings).
//! Unlike upstream, a key that no mode knows is an error naming it
//! ([`SparseAttnError::UnknownKeys`]), every used value is type-checked, and every config
//! check names the key path (`sparse_attention.num_local_blocks: ...`). Block indices must be
//! non-negative integers (upstream would let a negative index wrap around like a Python index).

use crate::error::{Result, SparseAttnError};
use crate::layout::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig, SparsityConfig,
    VariableConfig,
};
use serde_json::{Map, Value};

/// The section's name in a DeepSpeed config.
const SECTION: &str = "sparse_attention";

/// Every key the section accepts.
///
/// ```
/// assert!(ltd_sparse_attn::SPARSE_ATTENTION_KEYS.contains(&"num_local_blocks"));
/// ```
pub const SPARSE_ATTENTION_KEYS: [&str; 13] = [
    "mode",
    "block",
    "different_layout_per_head",
    "num_local_blocks",
    "num_global_blocks",
    "attention",
    "horizontal_global_attention",
    "num_different_global_patterns",
    "num_random_blocks",
    "local_window_blocks",
    "global_block_indices",
    "global_block_end_indices",
    "num_sliding_window_blocks",
];

/// Parses a DeepSpeed JSON config into a layout config for `num_heads` heads (the JSON does not
/// carry the head count; models supply it).
///
/// `text` may be a whole DeepSpeed config (an object with a `sparse_attention` key) or the
/// section alone (an object with at least one section key, or `{}`; its other keys are then
/// rejected as unknown). An object with neither is [`SparseAttnError::MissingSection`]. The config's random seed is 0; set it on the returned config if needed.
///
/// ```
/// use ltd_sparse_attn::{SparsityConfig, parse_sparse_attention};
/// let cfg = parse_sparse_attention(
///     r#"{"train_batch_size": 8, "sparse_attention": {"mode": "fixed", "num_local_blocks": 8}}"#, 4,
/// ).unwrap();
/// let SparsityConfig::Fixed(f) = cfg else { panic!() };
/// assert_eq!((f.num_heads, f.num_local_blocks, f.num_global_blocks), (4, 8, 1));
///
/// let err = parse_sparse_attention(
///     r#"{"mode": "fixed", "num_local_blocks": 5, "num_global_blocks": 2}"#, 4).unwrap_err();
/// assert_eq!(err.to_string(),
///     "sparse_attention.num_local_blocks: 5 is not a multiple of num_global_blocks 2");
/// ```
pub fn parse_sparse_attention(text: &str, num_heads: usize) -> Result<SparsityConfig> {
    sparse_attention_from_value(&parse_config_text(text)?, num_heads)
}

/// Deepest bracket nesting accepted in a config's text (the hjson reader recurses per level).
const MAX_NESTING: usize = 128;

/// Strict JSON first, then hjson (DeepSpeed's own grammar: comments, trailing commas, quoteless
/// strings); the error gives both readers' messages.
fn parse_config_text(text: &str) -> Result<Value> {
    let json_error = match serde_json::from_str(text) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
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
    if deepest > MAX_NESTING {
        return Err(SparseAttnError::Json(format!(
            "{json_error} (and nesting depth {deepest} is deeper than the {MAX_NESTING} levels accepted)"
        )));
    }
    read_hjson(text).map_err(|hjson_error| {
        SparseAttnError::Json(format!("{json_error} (as hjson: {hjson_error})"))
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

/// A key of the section that has no effect for the chosen mode, as the parser reports it (it
/// prints nothing itself).
///
/// ```
/// let v = serde_json::json!({"mode": "bigbird", "attention": "unidirectional"});
/// let (cfg, warnings) = ltd_sparse_attn::sparse_attention_with_warnings(&v, 2).unwrap();
/// assert_eq!(cfg.mode_name(), "bigbird");
/// assert_eq!(warnings[0].path, "sparse_attention.attention");
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

/// The keys each mode reads (the table in the module docs); any other section key is ignored by
/// upstream's JSON path, so it has no effect.
fn keys_of_mode(mode: &str) -> &'static [&'static str] {
    match mode {
        "dense" => &["mode", "block"],
        "fixed" => &[
            "mode",
            "block",
            "different_layout_per_head",
            "num_local_blocks",
            "num_global_blocks",
            "attention",
            "horizontal_global_attention",
            "num_different_global_patterns",
        ],
        "variable" => &[
            "mode",
            "block",
            "different_layout_per_head",
            "num_random_blocks",
            "local_window_blocks",
            "global_block_indices",
            "global_block_end_indices",
            "attention",
            "horizontal_global_attention",
        ],
        "bigbird" => &[
            "mode",
            "block",
            "different_layout_per_head",
            "num_random_blocks",
            "num_sliding_window_blocks",
            "num_global_blocks",
        ],
        "bslongformer" => &[
            "mode",
            "block",
            "different_layout_per_head",
            "num_sliding_window_blocks",
            "global_block_indices",
            "global_block_end_indices",
        ],
        _ => &SPARSE_ATTENTION_KEYS,
    }
}

/// Warnings for the keys of `map` that `mode` does not read.
fn unused_key_warnings(map: &Map<String, Value>, mode: &str) -> Vec<ConfigWarning> {
    let used = keys_of_mode(mode);
    let mut keys: Vec<&String> = map.keys().filter(|k| !used.contains(&k.as_str())).collect();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let mut message =
                format!("has no effect in mode {mode:?} (upstream's JSON path ignores it)");
            if key == "attention" {
                message.push_str(&format!(
                    "; {mode} layouts from JSON are always bidirectional"
                ));
            }
            ConfigWarning {
                path: format!("{SECTION}.{key}"),
                message,
            }
        })
        .collect()
}

/// [`parse_sparse_attention`] on an already parsed JSON value.
///
/// ```
/// let v = serde_json::json!({"mode": "dense", "block": 32});
/// let cfg = ltd_sparse_attn::sparse_attention_from_value(&v, 2).unwrap();
/// assert_eq!((cfg.mode_name(), cfg.block()), ("dense", 32));
/// ```
pub fn sparse_attention_from_value(value: &Value, num_heads: usize) -> Result<SparsityConfig> {
    sparse_attention_with_warnings(value, num_heads).map(|(config, _)| config)
}

/// [`sparse_attention_from_value`], also returning the keys that have no effect for the chosen
/// mode (see [`ConfigWarning`]).
///
/// ```
/// let v = serde_json::json!({"sparse_attention": {"mode": "dense", "num_local_blocks": 4}});
/// let (_, warnings) = ltd_sparse_attn::sparse_attention_with_warnings(&v, 1).unwrap();
/// assert_eq!(warnings.len(), 1);
/// assert!(warnings[0].to_string().starts_with("sparse_attention.num_local_blocks: has no effect"));
/// ```
pub fn sparse_attention_with_warnings(
    value: &Value,
    num_heads: usize,
) -> Result<(SparsityConfig, Vec<ConfigWarning>)> {
    let root = value.as_object().ok_or_else(|| {
        SparseAttnError::Json(format!(
            "expected a JSON object at the top level, got {}",
            kind(value)
        ))
    })?;
    let section = if let Some(s) = root.get(SECTION) {
        s.as_object().ok_or_else(|| {
            SparseAttnError::config(SECTION, format!("expected an object, got {}", kind(s)))
        })?
    } else if root.is_empty()
        || root
            .keys()
            .any(|k| SPARSE_ATTENTION_KEYS.contains(&k.as_str()))
    {
        root
    } else {
        return Err(SparseAttnError::MissingSection);
    };
    let config = section_to_config(section, num_heads)?;
    let warnings = unused_key_warnings(section, config.mode_name());
    Ok((config, warnings))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed reads of one section object, with key paths in errors.
struct Section<'a> {
    map: &'a Map<String, Value>,
}

impl Section<'_> {
    fn err(key: &str, msg: String) -> SparseAttnError {
        SparseAttnError::config(format!("{SECTION}.{key}"), msg)
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => as_index(v).ok_or_else(|| {
                Self::err(
                    key,
                    format!("{v} is not a valid value; expected a non-negative integer"),
                )
            }),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(Self::err(
                key,
                format!("{v} is not a valid value; expected true or false"),
            )),
        }
    }

    fn string(&self, key: &str, default: &'static str) -> Result<String> {
        match self.map.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(Self::err(
                key,
                format!("{v} is not a valid value; expected a string"),
            )),
        }
    }

    fn direction(&self) -> Result<Direction> {
        let s = self.string("attention", "bidirectional")?;
        Direction::parse(&s, &format!("{SECTION}.attention"))
    }

    fn list(&self, key: &str, default: &[usize]) -> Result<Vec<usize>> {
        match self.map.get(key) {
            None => Ok(default.to_vec()),
            Some(v) => self.list_value(key, v),
        }
    }

    fn list_value(&self, key: &str, v: &Value) -> Result<Vec<usize>> {
        let arr = v.as_array().ok_or_else(|| {
            Self::err(
                key,
                format!("{v} is not a valid value; expected a list of non-negative integers"),
            )
        })?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| {
                as_index(x).ok_or_else(|| {
                    Self::err(
                        &format!("{key}[{i}]"),
                        format!("{x} is not a valid value; expected a non-negative integer"),
                    )
                })
            })
            .collect()
    }

    fn optional_list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.list_value(key, v).map(Some),
        }
    }
}

fn as_index(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|x| usize::try_from(x).ok())
}

fn section_to_config(map: &Map<String, Value>, num_heads: usize) -> Result<SparsityConfig> {
    let mut unknown: Vec<String> = map
        .keys()
        .filter(|k| !SPARSE_ATTENTION_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(SparseAttnError::UnknownKeys {
            path: SECTION.into(),
            keys: unknown,
            expected: SPARSE_ATTENTION_KEYS.join(", "),
        });
    }
    let s = Section { map };
    let mode = s.string("mode", "fixed")?;
    let block = s.usize("block", 16)?;
    let config: SparsityConfig = match mode.as_str() {
        "dense" => {
            let mut c = DenseConfig::new(num_heads);
            c.block = block;
            c.into()
        }
        "fixed" => {
            let mut c = FixedConfig::new(num_heads);
            c.block = block;
            c.different_layout_per_head = s.bool("different_layout_per_head", false)?;
            c.num_local_blocks = s.usize("num_local_blocks", 4)?;
            c.num_global_blocks = s.usize("num_global_blocks", 1)?;
            c.attention = s.direction()?;
            c.horizontal_global_attention = s.bool("horizontal_global_attention", false)?;
            c.num_different_global_patterns = s.usize("num_different_global_patterns", 1)?;
            c.into()
        }
        "variable" => {
            let mut c = VariableConfig::new(num_heads);
            c.block = block;
            c.different_layout_per_head = s.bool("different_layout_per_head", false)?;
            c.num_random_blocks = s.usize("num_random_blocks", 0)?;
            c.local_window_blocks = s.list("local_window_blocks", &[4])?;
            c.global_block_indices = s.list("global_block_indices", &[0])?;
            c.global_block_end_indices = s.optional_list("global_block_end_indices")?;
            c.attention = s.direction()?;
            c.horizontal_global_attention = s.bool("horizontal_global_attention", false)?;
            c.into()
        }
        "bigbird" => {
            let mut c = BigBirdConfig::new(num_heads);
            c.block = block;
            c.different_layout_per_head = s.bool("different_layout_per_head", false)?;
            c.num_random_blocks = s.usize("num_random_blocks", 0)?;
            c.num_sliding_window_blocks = s.usize("num_sliding_window_blocks", 3)?;
            c.num_global_blocks = s.usize("num_global_blocks", 1)?;
            c.into()
        }
        "bslongformer" => {
            let mut c = BSLongformerConfig::new(num_heads);
            c.block = block;
            c.different_layout_per_head = s.bool("different_layout_per_head", false)?;
            c.num_sliding_window_blocks = s.usize("num_sliding_window_blocks", 3)?;
            c.global_block_indices = s.list("global_block_indices", &[0])?;
            c.global_block_end_indices = s.optional_list("global_block_end_indices")?;
            c.into()
        }
        other => {
            return Err(Section::err(
                "mode",
                format!(
                    "{other:?} is not a supported mode; expected one of \"dense\", \"fixed\", \"variable\", \"bigbird\", \"bslongformer\""
                ),
            ));
        }
    };
    config.validate().map_err(|e| e.with_key_prefix(SECTION))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fixed() {
        let c = parse_sparse_attention("{}", 2).unwrap();
        assert_eq!(c, SparsityConfig::Fixed(FixedConfig::new(2)));
        let c = parse_sparse_attention(r#"{"sparse_attention": {}}"#, 2).unwrap();
        assert_eq!(c, SparsityConfig::Fixed(FixedConfig::new(2)));
    }

    #[test]
    fn bigbird_json_default_has_no_random_blocks() {
        let c = parse_sparse_attention(r#"{"mode": "bigbird"}"#, 1).unwrap();
        let SparsityConfig::BigBird(b) = c else {
            panic!("not bigbird")
        };
        assert_eq!(b.num_random_blocks, 0);
    }
}
