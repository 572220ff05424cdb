//! The `ltd` binary end to end: every subcommand, the embedded default, user config files, and
//! bad input (missing file, malformed JSON, invalid keys, bad flag values).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `ltd` binary: `$LTD_BIN`, else the one cargo built for this test, else `./ltd` (the GPU
/// bundle copies both the test binaries and `ltd` to another machine, where cargo's path does
/// not exist).
fn ltd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LTD_BIN") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_ltd"));
    if built.exists() {
        return built;
    }
    let bundled = std::env::current_dir()
        .map(|d| d.join("ltd"))
        .unwrap_or_default();
    if bundled.exists() { bundled } else { built }
}

fn ltd(args: &[&str]) -> Output {
    Command::new(ltd_bin())
        .args(args)
        .output()
        .expect("the ltd binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(args: &[&str]) -> String {
    let o = ltd(args);
    assert!(
        o.status.success(),
        "ltd {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts the exit code and a one-line `error: ...` naming `needle`; returns stderr.
fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let o = ltd(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "ltd {args:?}\nstderr:\n{err}\nstdout:\n{}",
        stdout(&o)
    );
    assert!(
        err.contains(needle),
        "ltd {args:?}: {needle:?} not in stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ltd-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Width and height of a PNG file (decoded, so a corrupt file fails).
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    (info.width, info.height)
}

/// A small user config: encoder, batch_seq_dim, its own schedule, a BigBird section.
const USER_CONFIG: &str = r#"{
  "train_batch_size": 8,
  "train_micro_batch_size_per_gpu": 4,
  "data_efficiency": {
    "enabled": true,
    "data_routing": {
      "enabled": true,
      "random_ltd": {
        "enabled": true,
        "total_layer_num": 6,
        "random_ltd_layer_num": 4,
        "random_ltd_layer_id": [1, 2, 3, 4],
        "model_mask_name": "attention_mask",
        "model_type": "encoder",
        "hidden_state_order": "batch_seq_dim",
        "random_ltd_schedule": {
          "min_value": 64,
          "max_value": 512,
          "schedule_type": "fixed_linear",
          "schedule_config": {"require_steps": 1000, "seq_per_step": 8}
        }
      }
    }
  },
  "sparse_attention": {"mode": "bigbird", "block": 16, "num_random_blocks": 1}
}"#;

// ---------------------------------------------------------------------------------------------
// help

#[test]
fn every_subcommand_has_help_with_examples() {
    let top = ok(&["--help"]);
    for sub in ["plan", "demo", "layout", "bench"] {
        assert!(top.contains(sub), "{top}");
        let help = ok(&[sub, "--help"]);
        assert!(help.contains("Examples:"), "ltd {sub} --help:\n{help}");
        assert!(
            help.contains(&format!("ltd {sub}")),
            "ltd {sub} --help:\n{help}"
        );
    }
}

#[test]
fn unknown_subcommand_and_flag_are_usage_errors() {
    fails(&["frobnicate"], 2, "frobnicate");
    fails(&["plan", "--no-such-flag"], 2, "--no-such-flag");
}

// ---------------------------------------------------------------------------------------------
// plan

#[test]
fn plan_embedded_default() {
    let out = ok(&["plan"]);
    assert!(out.contains("embedded default"), "{out}");
    // The worked example of upstream-semantics.md §1.9: 100,000 -> 1088, 200,000 -> 2048.
    assert!(
        out.lines()
            .any(|l| l.contains("100,000") && l.contains("1088")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("200,000") && l.contains("2048")),
        "{out}"
    );
    assert!(out.contains("43.33%"), "{out}");
    assert!(out.contains("training step"), "terminal chart\n{out}");
    assert!(out.contains("fixed layout, block 16, 16 heads"), "{out}");
    assert!(out.contains("heads 0,4,8,12"), "{out}");
    // Density per head.
    assert!(
        out.lines()
            .filter(|l| l.trim_end().ends_with("14.06%"))
            .count()
            >= 16,
        "{out}"
    );
}

#[test]
fn plan_steps_and_train_tokens() {
    let out = ok(&["plan", "--steps", "1", "--rows", "2"]);
    assert!(out.contains("layer-tokens over 1 steps"), "{out}");
    assert!(
        out.contains("85.94%"),
        "one step saves 1 - (128*22 + 2048*2)/(2048*24) = 85.94%\n{out}"
    );
    // 512 x 2048 tokens per step: 1,048,576,000 tokens = 1000 steps.
    let out = ok(&["plan", "--train-tokens", "1048576000"]);
    assert!(out.contains("= 1,000 steps"), "{out}");
    fails(
        &["plan", "--steps", "10", "--train-tokens", "5"],
        2,
        "cannot be used with",
    );
}

#[test]
fn plan_writes_pngs_a_viewer_can_open() {
    let dir = temp_dir("plan-png");
    let chart = dir.join("r.png");
    let layout = dir.join("layout.png");
    let out = ok(&[
        "plan",
        "--png",
        chart.to_str().unwrap(),
        "--layout-png",
        layout.to_str().unwrap(),
        "--heads",
        "4",
    ]);
    assert!(out.contains("wrote the schedule chart"), "{out}");
    assert_eq!(png_size(&chart), (960, 540));
    let (w, h) = png_size(&layout);
    assert!(w >= 256 && h >= 256, "{w} x {h}");
    fails(
        &[
            "plan",
            "--png",
            dir.join("no/such/dir/r.png").to_str().unwrap(),
        ],
        1,
        "cannot write",
    );
}

#[test]
fn plan_user_config_file() {
    let dir = temp_dir("plan-user");
    let path = write(&dir, "ds.json", USER_CONFIG);
    let out = ok(&["plan", &path, "--heads", "2", "--width", "40", "--ascii"]);
    assert!(out.contains(&path), "{out}");
    assert!(
        out.contains("6 layers, token dropping in 4 (ids 1-4), encoder, batch_seq_dim"),
        "{out}"
    );
    assert!(out.contains("8 sequences x 512 tokens"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("1,000") && l.contains("512")),
        "{out}"
    );
    assert!(
        out.contains("bigbird layout, block 16, 2 heads, at sequence length 512"),
        "{out}"
    );
    assert!(!out.contains('█'), "--ascii\n{out}");
    // --print-config echoes the file.
    let printed = ok(&["plan", &path, "--print-config"]);
    let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(v["sparse_attention"]["mode"], "bigbird");
    // The embedded default round-trips through --print-config.
    let default = ok(&["plan", "--print-config"]);
    let again = write(&dir, "default.json", &default);
    assert!(ok(&["plan", &again]).contains("43.33%"));
}

#[test]
fn plan_config_without_sparse_or_batch() {
    let dir = temp_dir("plan-partial");
    let mut v: serde_json::Value = serde_json::from_str(USER_CONFIG).unwrap();
    v.as_object_mut().unwrap().remove("sparse_attention");
    v.as_object_mut().unwrap().remove("train_batch_size");
    let path = write(&dir, "ds.json", &v.to_string());
    fails(&["plan", &path], 1, "global_batch_size");
    let out = ok(&["plan", &path, "--global-batch", "16"]);
    assert!(out.contains("no sparse_attention section"), "{out}");
    assert!(out.contains("16 sequences"), "{out}");
    let only_sparse = write(
        &dir,
        "sparse.json",
        r#"{"sparse_attention": {"mode": "dense"}}"#,
    );
    let out = ok(&["plan", &only_sparse, "--layout-seq", "64"]);
    assert!(out.contains("Random-LTD: not enabled"), "{out}");
    assert!(out.contains("dense layout"), "{out}");
    let neither = write(&dir, "empty.json", r#"{"train_batch_size": 4}"#);
    fails(&["plan", &neither], 1, "nothing to plan");
}

#[test]
fn plan_bad_input() {
    let dir = temp_dir("plan-bad");
    fails(
        &["plan", dir.join("missing.json").to_str().unwrap()],
        1,
        "cannot read",
    );
    let bad = write(&dir, "bad.json", "{\"data_efficiency\": ");
    let err = fails(&["plan", &bad], 1, "invalid JSON");
    assert!(err.contains("bad.json"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    // Invalid values: the key path is in the message.
    let mut v: serde_json::Value = serde_json::from_str(USER_CONFIG).unwrap();
    v["data_efficiency"]["data_routing"]["random_ltd"]["random_ltd_schedule"]["min_value"] =
        4096.into();
    let p = write(&dir, "min.json", &v.to_string());
    fails(
        &["plan", &p],
        1,
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.min_value",
    );
    let mut v: serde_json::Value = serde_json::from_str(USER_CONFIG).unwrap();
    v["data_efficiency"]["data_routing"]["random_ltd"]["random_ltd_layer_num"] = "four".into();
    let p = write(&dir, "type.json", &v.to_string());
    fails(
        &["plan", &p],
        1,
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_num",
    );
    let mut v: serde_json::Value = serde_json::from_str(USER_CONFIG).unwrap();
    v["sparse_attention"]["num_sliding_window_blok"] = 3.into();
    let p = write(&dir, "typo.json", &v.to_string());
    fails(&["plan", &p], 1, "num_sliding_window_blok");
    let mut v: serde_json::Value = serde_json::from_str(USER_CONFIG).unwrap();
    v["sparse_attention"] =
        serde_json::json!({"mode": "fixed", "num_local_blocks": 5, "num_global_blocks": 2});
    let p = write(&dir, "sparse.json", &v.to_string());
    fails(&["plan", &p], 1, "sparse_attention.num_local_blocks");

    // Bad flag values.
    fails(&["plan", "--steps", "lots"], 2, "--steps");
    fails(&["plan", "--steps", "0"], 2, "at least 1");
    fails(&["plan", "--rows", "1"], 2, "--rows");
    fails(&["plan", "--heads", "0"], 2, "--heads");
}

// ---------------------------------------------------------------------------------------------
// demo

#[test]
fn demo_embedded_default_passes() {
    let out = ok(&["demo", "--device", "cpu"]);
    for needle in [
        "r = 1088 of 2048",
        "r = 136",
        "fixed layout, block 16",
        "sample",
        "gather",
        "route",
        "max error",
        "identical to h",
        "identical to dL/dy",
        "TokenDropRouter",
        "skipped 240 of 512 tokens",
        "43.33%",
        "PASS",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
}

#[test]
fn demo_default_device_says_which_device() {
    let out = ok(&["demo", "--seq", "64", "--step", "0"]);
    assert!(out.contains("device     "), "{out}");
    assert!(out.contains("PASS"), "{out}");
}

#[test]
fn demo_user_config_encoder_batch_seq() {
    let dir = temp_dir("demo-user");
    let path = write(&dir, "ds.json", USER_CONFIG);
    let out = ok(&[
        "demo", "--config", &path, "--step", "500", "--seq", "128", "--heads", "2", "--device",
        "cpu",
    ]);
    assert!(out.contains("encoder"), "{out}");
    assert!(out.contains("batch_seq_dim"), "{out}");
    assert!(out.contains("bigbird layout"), "{out}");
    // step 500 of 1000: r = 288 of 512, scaled to 128: 72.
    assert!(
        out.contains("r = 288 of 512") && out.contains("r = 72"),
        "{out}"
    );
    assert!(out.contains("PASS"), "{out}");
}

#[test]
fn demo_default_step_is_inside_a_short_schedule() {
    // USER_CONFIG's schedule ends at step 1000; the old fixed default step (100k) dropped nothing.
    let dir = temp_dir("demo-short");
    let path = write(&dir, "ds.json", USER_CONFIG);
    let out = ok(&[
        "demo", "--config", &path, "--seq", "128", "--heads", "2", "--device", "cpu",
    ]);
    // The middle of the schedule: step 500, r = 288 of 512, scaled to 128: 72 kept.
    assert!(out.contains("step 500: r = 288 of 512"), "{out}");
    assert!(out.contains("skipped 112 of 256 tokens"), "{out}");
    assert!(out.contains("PASS"), "{out}");
    // A step past the schedule's end keeps every token: a usage error, not a vacuous PASS.
    fails(
        &[
            "demo", "--config", &path, "--step", "5000", "--seq", "128", "--heads", "2",
            "--device", "cpu",
        ],
        2,
        "drop nothing",
    );
}

#[test]
fn demo_fails_when_the_result_is_wrong() {
    let o = ltd(&[
        "demo",
        "--seq",
        "64",
        "--device",
        "cpu",
        "--perturb",
        "0.01",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("error: check failed: output"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn demo_bad_input() {
    fails(
        &["demo", "--hidden", "64", "--heads", "3"],
        2,
        "does not divide",
    );
    fails(&["demo", "--seq", "0"], 2, "--seq");
    fails(&["demo", "--tolerance=-1"], 2, "--tolerance");
    fails(
        &["demo", "--config", "/no/such/file.json"],
        1,
        "cannot read",
    );
    #[cfg(not(feature = "cuda"))]
    {
        fails(&["demo", "--device", "cuda"], 2, "without CUDA support");
        fails(&["demo", "--gpu-attention"], 2, "without CUDA support");
    }
}

// ---------------------------------------------------------------------------------------------
// layout

#[test]
fn layout_text() {
    let out = ok(&["layout", "--mode", "fixed", "--seq", "128"]);
    assert!(
        out.contains("fixed layout: seq 128, block 16 -> 8 x 8 blocks"),
        "{out}"
    );
    // The example of upstream-semantics.md §2.3.2, nb = 8, bidirectional.
    assert!(
        out.contains("####...#\n####...#\n####...#\n####...#\n...#####\n"),
        "{out}"
    );
    let out = ok(&[
        "layout",
        "--mode",
        "local",
        "--seq",
        "64",
        "--attention",
        "uni",
    ]);
    assert!(out.contains("#...\n##..\n.##.\n..##\n"), "{out}");
    let out = ok(&[
        "layout",
        "--mode",
        "variable",
        "--seq",
        "128",
        "--local-window-blocks",
        "2,3",
    ]);
    assert!(out.contains("##......\n##......\n#.###...\n"), "{out}");
    let big = ok(&[
        "layout", "--mode", "dense", "--seq", "4096", "--width", "16",
    ]);
    assert!(big.contains("top-left 16 x 16 of 256 x 256"), "{big}");
    let down = ok(&[
        "layout",
        "--mode",
        "bslongformer",
        "--seq",
        "4096",
        "--width",
        "16",
        "--downsample",
    ]);
    assert!(down.contains("16 x 16 blocks per character"), "{down}");
}

#[test]
fn layout_json_export() {
    let out = ok(&[
        "layout",
        "--mode",
        "bigbird",
        "--seq",
        "200",
        "--heads",
        "2",
        "--different-layout-per-head",
        "--num-random-blocks",
        "2",
        "--seed",
        "7",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["mode"], "bigbird");
    assert_eq!(v["block"], 16);
    assert_eq!(v["heads"], 2);
    assert_eq!(v["seq"], 200);
    assert_eq!(v["nb"], 13);
    assert_eq!(v["params"]["seed"], 7);
    let layout = v["layout"].as_array().unwrap();
    assert_eq!(layout.len(), 2);
    let mut ones = 0;
    for head in layout {
        let rows = head.as_array().unwrap();
        assert_eq!(rows.len(), 13);
        for row in rows {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), 13);
            assert!(row.iter().all(|x| x == 0 || x == 1));
            ones += row.iter().filter(|x| *x == 1).count();
        }
    }
    assert_eq!(v["nnz"], ones);
    let density = v["density"].as_f64().unwrap();
    assert!((density - ones as f64 / (2.0 * 169.0)).abs() < 1e-12);
    // Same seed, same layout.
    let again = ok(&[
        "layout",
        "--mode",
        "bigbird",
        "--seq",
        "200",
        "--heads",
        "2",
        "--different-layout-per-head",
        "--num-random-blocks",
        "2",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(out, again);
}

#[test]
fn layout_png_and_config() {
    let dir = temp_dir("layout");
    let png = dir.join("l.png");
    let out = ok(&[
        "layout",
        "--mode",
        "fixed",
        "--seq",
        "512",
        "--heads",
        "4",
        "--different-layout-per-head",
        "--num-different-global-patterns",
        "4",
        "--png",
        png.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote"), "{out}");
    let (w, h) = png_size(&png);
    assert!(w >= 512 && h >= 512, "{w} x {h}");
    let raw = dir.join("raw.png");
    ok(&[
        "layout",
        "--mode",
        "dense",
        "--seq",
        "64",
        "--heads",
        "2",
        "--png",
        raw.to_str().unwrap(),
        "--cell-pixels",
        "3",
    ]);
    assert_eq!(png_size(&raw), ((2 * 4 + 1) * 3, 4 * 3));
    let cfg = write(&dir, "ds.json", USER_CONFIG);
    let out = ok(&["layout", "--config", &cfg, "--seq", "256", "--heads", "2"]);
    assert!(out.contains("bigbird layout: seq 256"), "{out}");
}

#[test]
fn layout_bad_input() {
    fails(&["layout", "--seq", "64"], 2, "--mode");
    fails(&["layout", "--mode", "fixed"], 2, "--seq");
    fails(
        &["layout", "--mode", "sideways", "--seq", "64"],
        2,
        "sideways",
    );
    fails(&["layout", "--mode", "fixed", "--seq", "0"], 2, "--seq");
    fails(
        &["layout", "--mode", "fixed", "--seq=-3"],
        2,
        "invalid value '-3' for '--seq <SEQ>'",
    );
    fails(
        &[
            "layout",
            "--mode",
            "fixed",
            "--seq",
            "64",
            "--num-random-blocks",
            "2",
        ],
        2,
        "--num-random-blocks does not apply to --mode fixed",
    );
    fails(
        &["layout", "--mode", "fixed", "--seq", "64", "--block", "24"],
        2,
        "--block: 24",
    );
    fails(
        &[
            "layout",
            "--mode",
            "fixed",
            "--seq",
            "64",
            "--num-local-blocks",
            "5",
            "--num-global-blocks",
            "2",
        ],
        2,
        "--num-local-blocks",
    );
    fails(
        &[
            "layout",
            "--mode",
            "bigbird",
            "--seq",
            "32",
            "--num-random-blocks",
            "5",
        ],
        2,
        "--num-random-blocks",
    );
    fails(
        &[
            "layout",
            "--mode",
            "fixed",
            "--seq",
            "64",
            "--attention",
            "sideways",
        ],
        2,
        "sideways",
    );
    let dir = temp_dir("layout-bad");
    let bad = write(&dir, "bad.json", "not json");
    fails(
        &["layout", "--config", &bad, "--seq", "64"],
        1,
        "invalid JSON",
    );
    let no_section = write(&dir, "none.json", "{\"train_batch_size\": 1}");
    fails(
        &["layout", "--config", &no_section, "--seq", "64"],
        1,
        "sparse_attention",
    );
}

// ---------------------------------------------------------------------------------------------
// bench

#[test]
fn bench_prints_ratio_tables() {
    let out = ok(&["bench", "--smoke", "--device", "cpu"]);
    for needle in [
        "ours/memcpy",
        "gather",
        "scatter",
        "route",
        "sampler",
        "vs dense",
        "GFLOP/s",
        "100.0%",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    fails(&["bench", "--device", "tpu"], 2, "tpu");
}
