//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, minimized by cargo-fuzz) through
//! the same entry functions the fuzz targets call, on stable Rust: every input must return
//! without a panic. `LTD_FUZZ_CORPUS` points at another corpus directory (for example where the
//! test binary runs without the source tree).

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    std::env::var_os("LTD_FUZZ_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"))
}

#[test]
fn every_committed_corpus_input_runs_clean() {
    let root = corpus_dir();
    for target in ltd_cli::fuzz::TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus of {target} at {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            // A panic names the input that caused it.
            let result = std::panic::catch_unwind(|| ltd_cli::fuzz::run_target(target, &data));
            assert!(result.is_ok(), "{target}: {} panicked", path.display());
            count += 1;
        }
        assert!(count > 0, "the corpus of {target} is empty");
    }
}
