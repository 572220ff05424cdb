//! `ltd train` end to end on a tiny model: the comparison's files and summary, checkpoints and
//! resuming, and every bad input the issue names (a corrupt checkpoint, a checkpoint of another
//! config, `--data` empty, a directory, or not UTF-8) failing with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ltd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LTD_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_ltd"))
}

fn ltd(args: &[&str]) -> Output {
    Command::new(ltd_bin())
        .args(args)
        .output()
        .expect("the ltd binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = ltd(args);
    assert!(
        o.status.success(),
        "ltd {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Asserts exit code 1 and an `error:` line containing every needle; returns stderr.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = ltd(args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "ltd {args:?}\nstderr:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "ltd {args:?}: {n:?} not in stderr:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ltd-train-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 3-layer model small enough for a debug build: Random-LTD on layer 1.
const TINY: &[&str] = &[
    "train",
    "--layers",
    "3",
    "--width",
    "16",
    "--heads",
    "2",
    "--seq-len",
    "16",
    "--batch",
    "2",
    "--steps",
    "4",
    "--eval-windows",
    "2",
    "--val-fraction",
    "0.001",
    "--quiet",
];

fn tiny(extra: &[&str]) -> Vec<String> {
    TINY.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run_ok(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn run_fails(args: &[String], needles: &[&str]) -> String {
    fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        needles,
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn compare_writes_csvs_charts_and_the_saving() {
    let out = temp_dir("compare");
    let stdout = run_ok(&tiny(&["--compare", "--sparse", "--out", &s(&out)]));
    for needle in [
        "runs: baseline, random-ltd, sparse",
        "layer-tokens",
        "saved",
        "val loss",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    for run in ["baseline", "random-ltd", "sparse"] {
        let csv = std::fs::read_to_string(out.join(format!("{run}.csv"))).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], ltd_train::CSV_HEADER);
        assert_eq!(lines.len(), 5, "{csv}");
        assert!(
            !lines[4].split(',').nth(2).unwrap().is_empty(),
            "final row has a val loss: {csv}"
        );
    }
    for png in ["loss-vs-steps.png", "loss-vs-layer-tokens.png"] {
        assert_eq!(&std::fs::read(out.join(png)).unwrap()[1..4], b"PNG");
    }
    // Random-LTD's summary row shows fewer layer-tokens than the baseline.
    let ltd_row = stdout
        .lines()
        .find(|l| l.starts_with("random-ltd "))
        .unwrap();
    assert!(!ltd_row.contains(" 0.0%"), "{ltd_row}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn checkpoints_resume_and_reject_corrupt_or_foreign_ones() {
    let dir = temp_dir("ckpt");
    let (ck, out) = (dir.join("ck"), dir.join("out"));
    let first = run_ok(&tiny(&[
        "--save",
        &s(&ck),
        "--save-every",
        "2",
        "--out",
        &s(&out),
    ]));
    assert!(first.contains("random-ltd: val loss"), "{first}");
    let csv = std::fs::read_to_string(out.join("random-ltd.csv")).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        assert!(ck.join("random-ltd").join(f).is_file(), "{f}");
    }
    // Resuming a finished run reproduces its log.
    let again = run_ok(&tiny(&["--resume", &s(&ck), "--out", &s(&out)]));
    assert!(again.contains("resumed at step 4 of 4"), "{again}");
    assert_eq!(
        std::fs::read_to_string(out.join("random-ltd.csv")).unwrap(),
        csv
    );

    // A checkpoint of another config: the error names state.json and the key.
    run_fails(
        &tiny(&["--resume", &s(&ck), "--seed", "99", "--out", &s(&out)]),
        &["state.json", "seed was 1234, this run has 99"],
    );
    // A checkpoint of another run kind.
    run_fails(
        &tiny(&["--resume", &s(&ck), "--baseline", "--out", &s(&out)]),
        &["baseline"],
    );
    // A corrupt (truncated) weights file: named, and left as it was.
    let model = ck.join("random-ltd").join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 7]).unwrap();
    run_fails(
        &tiny(&["--resume", &s(&ck), "--out", &s(&out)]),
        &["model.safetensors", "truncated"],
    );
    assert_eq!(std::fs::read(&model).unwrap().len(), bytes.len() - 7);
    // Garbage in state.json.
    std::fs::write(ck.join("random-ltd").join("state.json"), b"{\"format\": 3").unwrap();
    run_fails(
        &tiny(&["--resume", &s(&ck), "--out", &s(&out)]),
        &["state.json", "not a valid checkpoint"],
    );
    // No checkpoint at all.
    run_fails(
        &tiny(&["--resume", &s(&dir.join("nothing")), "--out", &s(&out)]),
        &["nothing", "no such directory"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_data_files_are_clear_errors() {
    let dir = temp_dir("data");
    let out = s(&dir.join("out"));
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    run_fails(
        &tiny(&["--data", &s(&empty), "--out", &out]),
        &["empty.txt", "the file is empty"],
    );
    run_fails(
        &tiny(&["--data", &s(&dir), "--out", &out]),
        &["is a directory"],
    );
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait, encore du caf\xe9").unwrap();
    run_fails(
        &tiny(&["--data", &s(&latin1), "--out", &out]),
        &["latin1.txt", "not valid UTF-8", "offset 3"],
    );
    let short = dir.join("short.txt");
    std::fs::write(&short, "far too short").unwrap();
    run_fails(
        &tiny(&["--data", &s(&short), "--out", &out]),
        &["short.txt", "need at least 2"],
    );
    run_fails(
        &tiny(&["--data", &s(&dir.join("missing.txt")), "--out", &out]),
        &["missing.txt"],
    );
    // A user text that is long enough trains.
    let good = dir.join("good.txt");
    std::fs::write(&good, "All happy families are alike. ".repeat(200)).unwrap();
    let stdout = run_ok(&tiny(&["--data", &s(&good), "--out", &out]));
    assert!(stdout.contains("good.txt"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_mismatches_name_the_key() {
    let dir = temp_dir("config");
    let ds = dir.join("ds.json");
    let mut v: serde_json::Value =
        serde_json::from_str(ltd_train::DEFAULT_DEEPSPEED_CONFIG).unwrap();
    v["train_batch_size"] = serde_json::json!(2);
    std::fs::write(&ds, v.to_string()).unwrap();
    // The file says 6 layers for Random-LTD; --layers 3 contradicts it.
    let args: Vec<String> = [
        "train",
        &s(&ds),
        "--layers",
        "3",
        "--width",
        "16",
        "--heads",
        "2",
        "--seq-len",
        "128",
        "--steps",
        "1",
        "--quiet",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    run_fails(&args, &["ds.json", "total_layer_num: 6", "--layers 3"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_refuses_before_running_when_a_variant_cannot_run() {
    let dir = temp_dir("early");
    // Two layers leave no middle layer for Random-LTD: refused before the baseline trains.
    let mut args = tiny(&["--compare", "--out", &s(&dir)]);
    args[2] = "2".into(); // --layers 2
    let err = run_fails(
        &args,
        &["Random-LTD is not enabled", "--layers 2", "3 or more"],
    );
    assert!(!dir.join("baseline.csv").exists(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn profile_env_prints_where_the_time_goes() {
    let dir = temp_dir("profile");
    let args = tiny(&["--out", &s(&dir)]); // Random-LTD on layer 1
    let o = Command::new(ltd_bin())
        .args(&args)
        .env("LTD_TRAIN_PROFILE", "1")
        .output()
        .expect("the ltd binary runs");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("random-ltd: where the time goes"), "{out}");
    for phase in [
        "backward",
        "optimizer",
        "loss",
        "block: attention",
        "block: ln2 + mlp",
        "random-ltd: gather",
        "random-ltd: route",
    ] {
        assert!(out.contains(phase), "{phase:?} missing:\n{out}");
    }
    // Off by default.
    assert!(!run_ok(&args).contains("where the time goes"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn data_parallel_flags_are_checked_before_anything_runs() {
    run_fails(
        &tiny(&["--world-size", "2", "--rank", "2"]),
        &["--rank 2 of --world-size 2"],
    );
    run_fails(
        &tiny(&["--world-size", "3"]),
        &["train_batch_size (--batch) 2 over --world-size 3"],
    );
    let usage = |extra: &[&str], needle: &str| {
        let o = ltd(&tiny(extra).iter().map(String::as_str).collect::<Vec<_>>());
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    };
    usage(&["--world-size", "2"], "needs --nccl-id-file");
    usage(
        &["--world-size", "2", "--nccl-id-file", "/nonexistent/id"],
        "expected --device cuda",
    );
    // A world of one with an id file asks for the NCCL path, which needs a GPU too.
    usage(
        &["--nccl-id-file", "/nonexistent/id"],
        "expected --device cuda",
    );
    // A world of one is the ordinary run.
    let out = temp_dir("world-one");
    let stdout = run_ok(&tiny(&[
        "--world-size",
        "1",
        "--rank",
        "0",
        "--out",
        &s(&out),
    ]));
    assert!(stdout.contains("val loss"), "{stdout}");
    assert!(!stdout.contains("data-parallel"), "{stdout}");
    std::fs::remove_dir_all(&out).unwrap();
}
