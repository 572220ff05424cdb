//! DeepSpeed's `optimizer` and `scheduler` JSON sections, mapped to [`AdamWParams`] and
//! [`LrSchedule`]. Errors are strings starting with the key path (the caller adds the file).

use serde_json::{Map, Value};

use crate::lr::{LrSchedule, Warmup};
use crate::optim::AdamWParams;

type Obj = Map<String, Value>;

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, String> {
    v.as_object()
        .ok_or_else(|| format!("{path}: {v}; expected a JSON object"))
}

fn number(params: &Obj, key: &str, path: &str, default: f64) -> Result<f64, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{path}.{key}: {v}; expected a number")),
    }
}

fn count(params: &Obj, key: &str, path: &str) -> Result<Option<u64>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{path}.{key}: {v}; expected a non-negative integer")),
    }
}

fn reject_unknown(params: &Obj, path: &str, known: &[&str]) -> Result<(), String> {
    let unknown: Vec<&String> = params
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{path}: unknown key(s) {unknown:?}; expected only {known:?}"
        ))
    }
}

/// `optimizer` → AdamW. Accepts `AdamW`, and `Adam` with `adam_w_mode` true (DeepSpeed's
/// default). Missing values take torch's AdamW defaults; `lr_flag` overrides `lr`.
pub(crate) fn optimizer_from(
    section: Option<&Value>,
    lr_flag: Option<f64>,
) -> Result<AdamWParams, String> {
    let mut p = AdamWParams::default();
    if let Some(section) = section.filter(|v| !v.is_null()) {
        let s = object(section, "optimizer")?;
        let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
        let params = match s.get("params") {
            None | Some(Value::Null) => &Obj::new(),
            Some(v) => object(v, "optimizer.params")?,
        };
        let path = "optimizer.params";
        match kind.to_ascii_lowercase().as_str() {
            "adamw" => {}
            "adam" => {
                if params.get("adam_w_mode").and_then(Value::as_bool) == Some(false) {
                    return Err(
                        "optimizer.params.adam_w_mode: false; only AdamW (decoupled weight decay) is supported".to_owned(),
                    );
                }
            }
            _ => {
                return Err(format!(
                    "optimizer.type: {:?}; expected \"AdamW\" or \"Adam\"",
                    s.get("type").unwrap_or(&Value::Null)
                ));
            }
        }
        reject_unknown(
            params,
            path,
            &[
                "lr",
                "betas",
                "eps",
                "weight_decay",
                "adam_w_mode",
                "torch_adam",
                "fused",
            ],
        )?;
        p.lr = number(params, "lr", path, p.lr)?;
        p.eps = number(params, "eps", path, p.eps)?;
        p.weight_decay = number(params, "weight_decay", path, p.weight_decay)?;
        if let Some(b) = params.get("betas").filter(|v| !v.is_null()) {
            let pair = b
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
                .ok_or_else(|| format!("{path}.betas: {b}; expected two numbers"))?;
            (p.beta1, p.beta2) = pair;
        }
    }
    if let Some(lr) = lr_flag {
        p.lr = lr;
    }
    Ok(p)
}

fn warmup_type(params: &Obj, path: &str) -> Result<Warmup, String> {
    match params.get("warmup_type") {
        None | Some(Value::Null) => Ok(Warmup::Log),
        Some(Value::String(s)) if s == "log" => Ok(Warmup::Log),
        Some(Value::String(s)) if s == "linear" => Ok(Warmup::Linear),
        Some(v) => Err(format!(
            "{path}.warmup_type: {v}; expected \"log\" or \"linear\""
        )),
    }
}

/// `scheduler` → a step schedule and its `total_num_steps`. No section: a constant rate (as
/// DeepSpeed without a scheduler). `WarmupLR`/`WarmupDecayLR` peak at `warmup_max_lr`
/// (DeepSpeed default 0.001), unless `--lr` was given, which sets the peak.
pub(crate) fn scheduler_from(
    section: Option<&Value>,
    optimizer: &AdamWParams,
) -> Result<(LrSchedule, Option<u64>), String> {
    let Some(section) = section.filter(|v| !v.is_null()) else {
        return Ok((
            LrSchedule::Warmup {
                warmup_min_lr: optimizer.lr,
                warmup_max_lr: optimizer.lr,
                warmup_num_steps: 0,
                warmup_type: Warmup::Linear,
            },
            None,
        ));
    };
    let s = object(section, "scheduler")?;
    let params = match s.get("params") {
        None | Some(Value::Null) => &Obj::new(),
        Some(v) => object(v, "scheduler.params")?,
    };
    let path = "scheduler.params";
    let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
    let warmup_num_steps = count(params, "warmup_num_steps", path)?.unwrap_or(1000);
    let total = count(params, "total_num_steps", path)?;
    let need_total =
        || total.ok_or_else(|| format!("{path}.total_num_steps: missing; {kind} needs it"));
    let schedule = match kind {
        "WarmupLR" | "WarmupDecayLR" => {
            let known = [
                "warmup_min_lr",
                "warmup_max_lr",
                "warmup_num_steps",
                "warmup_type",
                "total_num_steps",
                "last_batch_iteration",
            ];
            reject_unknown(params, path, &known)?;
            let warmup_min_lr = number(params, "warmup_min_lr", path, 0.0)?;
            let warmup_max_lr = number(params, "warmup_max_lr", path, 0.001)?;
            let warmup_type = warmup_type(params, path)?;
            if kind == "WarmupLR" {
                LrSchedule::Warmup {
                    warmup_min_lr,
                    warmup_max_lr,
                    warmup_num_steps,
                    warmup_type,
                }
            } else {
                LrSchedule::WarmupDecay {
                    warmup_min_lr,
                    warmup_max_lr,
                    warmup_num_steps,
                    total_num_steps: need_total()?,
                    warmup_type,
                }
            }
        }
        "WarmupCosineLR" => {
            let known = [
                "total_num_steps",
                "warmup_min_ratio",
                "warmup_num_steps",
                "cos_min_ratio",
                "warmup_type",
                "last_batch_iteration",
            ];
            reject_unknown(params, path, &known)?;
            LrSchedule::WarmupCosine {
                lr: optimizer.lr,
                warmup_min_ratio: number(params, "warmup_min_ratio", path, 0.0)?,
                warmup_num_steps,
                cos_min_ratio: number(params, "cos_min_ratio", path, 0.0001)?,
                total_num_steps: need_total()?,
                warmup_type: warmup_type(params, path)?,
            }
        }
        _ => {
            return Err(format!(
                "scheduler.type: {:?}; expected \"WarmupLR\", \"WarmupDecayLR\" or \"WarmupCosineLR\"",
                s.get("type").unwrap_or(&Value::Null)
            ));
        }
    };
    Ok((schedule, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optimizer_section_maps_and_rejects() {
        let v = json!({"type": "AdamW", "params": {"lr": 0.01, "betas": [0.8, 0.9], "eps": 1e-6, "weight_decay": 0.0}});
        let p = optimizer_from(Some(&v), None).unwrap();
        assert_eq!(
            (p.lr, p.beta1, p.beta2, p.eps, p.weight_decay),
            (0.01, 0.8, 0.9, 1e-6, 0.0)
        );
        assert_eq!(optimizer_from(Some(&v), Some(0.5)).unwrap().lr, 0.5);
        let sgd = json!({"type": "SGD"});
        assert!(
            optimizer_from(Some(&sgd), None)
                .unwrap_err()
                .starts_with("optimizer.type")
        );
        let typo = json!({"type": "AdamW", "params": {"betass": [0.9, 0.9]}});
        assert!(
            optimizer_from(Some(&typo), None)
                .unwrap_err()
                .contains("betass")
        );
    }

    #[test]
    fn scheduler_sections_map() {
        let opt = AdamWParams::default();
        let v = json!({"type": "WarmupDecayLR", "params": {"total_num_steps": 100, "warmup_max_lr": 0.002, "warmup_num_steps": 10}});
        let (s, total) = scheduler_from(Some(&v), &opt).unwrap();
        assert_eq!(total, Some(100));
        assert_eq!(s.lr_at(10), 0.002);
        let missing = json!({"type": "WarmupCosineLR", "params": {}});
        assert!(
            scheduler_from(Some(&missing), &opt)
                .unwrap_err()
                .contains("total_num_steps")
        );
        let (constant, none) = scheduler_from(None, &opt).unwrap();
        assert_eq!(
            (constant.lr_at(0), constant.lr_at(99), none),
            (opt.lr, opt.lr, None)
        );
    }
}
