//! Regression tests for hostile input through the `ltd` binary (issue 24): files are complete or
//! absent, flags are blamed for flag values, config errors name the key path and length, hjson
//! and "auto" are read, warnings are printed, huge head counts do not panic.

use std::path::PathBuf;
use std::process::{Command, Output};

fn ltd(args: &[&str]) -> Output {
    let bin = std::env::var_os("LTD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ltd")));
    Command::new(bin)
        .args(args)
        .output()
        .expect("the ltd binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ltd-cli-hardening-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &PathBuf) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn png_files_are_replaced_whole_or_left_alone() {
    let dir = scratch("png");
    let png = dir.join("r.png");
    std::fs::write(&png, b"old").unwrap();
    let o = ltd(&["plan", "--png", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // The target is a non-empty directory: the write fails and leaves no temporary file.
    let blocked = dir.join("blocked.png");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    let o = ltd(&[
        "layout",
        "--mode",
        "dense",
        "--seq",
        "64",
        "--png",
        blocked.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
    assert_eq!(names(&dir), ["blocked.png", "r.png"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn global_batch_zero_is_a_usage_error_naming_the_flag() {
    let o = ltd(&["plan", "--global-batch", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--global-batch"), "{}", stderr(&o));
}

const HJSON: &str = r#"{
  # comments and trailing commas, as DeepSpeed reads them
  train_batch_size: "auto",
  data_efficiency: { data_routing: { random_ltd: {
    enabled: true, total_layer_num: 4, random_ltd_layer_num: 2, random_ltd_layer_id: [1, 2,],
    model_mask_name: null, model_type: "decoder", hidden_state_order: "batch_seq_dim",
    random_ltd_schedule: { min_value: 16, max_value: 128, schedule_type: "fixed_linear",
      schedule_config: { require_steps: 100, seq_per_step: 16 } },
  } } },
  sparse_attention: { mode: "bigbird", attention: "unidirectional", num_sliding_window_blocks: 9 },
}"#;

#[test]
fn hjson_auto_and_warnings() {
    let dir = scratch("hjson");
    let path = dir.join("ds.hjson");
    std::fs::write(&path, HJSON).unwrap();
    let p = path.to_str().unwrap();
    let o = ltd(&["plan", p]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("train_batch_size: \"auto\""), "{err}");
    assert!(err.contains("--global-batch"), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("sparse_attention.attention: has no effect"),
        "{err}"
    );
    // With the batch given, the schedule is planned; the layout at length 64 fails naming the
    // config key and the length.
    let o = ltd(&["plan", p, "--global-batch", "8", "--layout-seq", "64"]);
    let err = stderr(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("layer-tokens over 100 steps"));
    assert!(
        err.contains("sparse_attention.num_sliding_window_blocks: 9")
            && err.contains("sequence length 64"),
        "{err}"
    );
    let o = ltd(&["layout", "--config", p, "--seq", "64"]);
    let err = stderr(&o);
    assert!(
        err.contains("sparse_attention.num_sliding_window_blocks") && !err.contains("--num"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_head_counts_do_not_panic() {
    let o = ltd(&[
        "layout",
        "--mode",
        "bigbird",
        "--seq",
        "64",
        "--heads",
        "70000",
        "--different-layout-per-head",
        "--num-random-blocks",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ltd(&[
        "layout",
        "--mode",
        "dense",
        "--seq",
        "16",
        "--heads",
        "18446744073709551615",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
