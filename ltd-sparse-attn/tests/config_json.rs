//! DeepSpeed `sparse_attention` JSON: whole config or section, defaults per mode, ignored keys,
//! typed errors with key paths.

use ltd_sparse_attn::*;

fn err(text: &str) -> SparseAttnError {
    parse_sparse_attention(text, 4).unwrap_err()
}

#[test]
fn every_mode_with_its_keys() {
    let c = parse_sparse_attention(r#"{"mode": "dense", "block": 64}"#, 2).unwrap();
    assert_eq!(
        c,
        SparsityConfig::Dense(DenseConfig {
            block: 64,
            ..DenseConfig::new(2)
        })
    );

    let c = parse_sparse_attention(
        r#"{"sparse_attention": {"mode": "fixed", "block": 32, "different_layout_per_head": true,
            "num_local_blocks": 8, "num_global_blocks": 2, "attention": "unidirectional",
            "num_different_global_patterns": 4}}"#,
        8,
    )
    .unwrap();
    let want = FixedConfig {
        block: 32,
        different_layout_per_head: true,
        num_local_blocks: 8,
        num_global_blocks: 2,
        attention: Direction::Unidirectional,
        num_different_global_patterns: 4,
        ..FixedConfig::new(8)
    };
    assert_eq!(c, SparsityConfig::Fixed(want));

    let c = parse_sparse_attention(
        r#"{"mode": "variable", "num_random_blocks": 2, "local_window_blocks": [2, 3],
            "global_block_indices": [0, 5], "global_block_end_indices": [1, 7],
            "horizontal_global_attention": true}"#,
        1,
    )
    .unwrap();
    let want = VariableConfig {
        num_random_blocks: 2,
        local_window_blocks: vec![2, 3],
        global_block_indices: vec![0, 5],
        global_block_end_indices: Some(vec![1, 7]),
        horizontal_global_attention: true,
        ..VariableConfig::new(1)
    };
    assert_eq!(c, SparsityConfig::Variable(want));

    let c = parse_sparse_attention(
        r#"{"mode": "bigbird", "num_random_blocks": 1, "num_sliding_window_blocks": 5, "num_global_blocks": 2}"#,
        1,
    )
    .unwrap();
    let want = BigBirdConfig {
        num_sliding_window_blocks: 5,
        num_global_blocks: 2,
        ..BigBirdConfig::new(1)
    };
    assert_eq!(c, SparsityConfig::BigBird(want));

    let c = parse_sparse_attention(
        r#"{"mode": "bslongformer", "num_sliding_window_blocks": 5, "global_block_indices": [2],
            "global_block_end_indices": null}"#,
        1,
    )
    .unwrap();
    let want = BSLongformerConfig {
        num_sliding_window_blocks: 5,
        global_block_indices: vec![2],
        ..BSLongformerConfig::new(1)
    };
    assert_eq!(c, SparsityConfig::BSLongformer(want));
}

#[test]
fn keys_of_other_modes_are_ignored_as_upstream() {
    // `attention` is not passed to bigbird or bslongformer (always bidirectional from JSON),
    // even when its value would be invalid; `num_local_blocks` means nothing to dense.
    let c =
        parse_sparse_attention(r#"{"mode": "bigbird", "attention": "unidirectional"}"#, 1).unwrap();
    let SparsityConfig::BigBird(b) = c else {
        panic!("bigbird expected")
    };
    assert_eq!(b.attention, Direction::Bidirectional);
    let c =
        parse_sparse_attention(r#"{"mode": "bslongformer", "attention": "nonsense"}"#, 1).unwrap();
    assert_eq!(c.mode_name(), "bslongformer");
    let c = parse_sparse_attention(r#"{"mode": "dense", "num_local_blocks": "x"}"#, 1).unwrap();
    assert_eq!(c.mode_name(), "dense");
}

#[test]
fn errors_name_the_key_path() {
    assert_eq!(
        err(r#"{"sparse_attention": {"num_local_blocks": 5, "num_global_blocks": 2}}"#).to_string(),
        "sparse_attention.num_local_blocks: 5 is not a multiple of num_global_blocks 2"
    );
    assert_eq!(
        err(r#"{"block": 20}"#).to_string(),
        "sparse_attention.block: 20 is not a supported block size; expected one of 16, 32, 64, 128"
    );
    assert_eq!(
        err(r#"{"mode": "sliding"}"#).to_string(),
        "sparse_attention.mode: \"sliding\" is not a supported mode; expected one of \"dense\", \"fixed\", \"variable\", \"bigbird\", \"bslongformer\""
    );
    assert!(
        err(r#"{"attention": "causal"}"#)
            .to_string()
            .starts_with("sparse_attention.attention: \"causal\"")
    );
    assert!(
        err(r#"{"num_local_blocks": -4}"#)
            .to_string()
            .starts_with("sparse_attention.num_local_blocks: -4")
    );
    assert!(
        err(r#"{"num_local_blocks": 4.5}"#)
            .to_string()
            .contains("non-negative integer")
    );
    assert!(
        err(r#"{"horizontal_global_attention": 1}"#)
            .to_string()
            .contains("true or false")
    );
    assert!(
        err(r#"{"mode": "variable", "local_window_blocks": [4, -1]}"#)
            .to_string()
            .starts_with("sparse_attention.local_window_blocks[1]: -1")
    );
    assert!(
        err(r#"{"mode": "variable", "global_block_indices": 3}"#)
            .to_string()
            .starts_with("sparse_attention.global_block_indices: 3")
    );
    assert!(
        err(
            r#"{"mode": "variable", "global_block_indices": [0], "global_block_end_indices": [0]}"#
        )
        .to_string()
        .starts_with("sparse_attention.global_block_end_indices[0]")
    );
    assert!(
        err(r#"{"sparse_attention": 3}"#)
            .to_string()
            .starts_with("sparse_attention: expected an object")
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = err(r#"{"mode": "fixed", "num_locall_blocks": 4, "blok": 16}"#);
    match &e {
        SparseAttnError::UnknownKeys { path, keys, .. } => {
            assert_eq!(path, "sparse_attention");
            assert_eq!(
                keys,
                &vec!["blok".to_string(), "num_locall_blocks".to_string()]
            );
        }
        other => panic!("expected UnknownKeys, got {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("sparse_attention: unknown key(s) [\"blok\", \"num_locall_blocks\"]")
    );
}

#[test]
fn whole_configs_without_the_section_and_bad_json() {
    assert!(matches!(
        err(r#"{"train_batch_size": 8}"#),
        SparseAttnError::MissingSection
    ));
    assert!(matches!(err("{"), SparseAttnError::Json(_)));
    assert!(matches!(err("[1, 2]"), SparseAttnError::Json(_)));
    // num_heads comes from the model; 0 is invalid.
    assert!(
        parse_sparse_attention("{}", 0)
            .unwrap_err()
            .to_string()
            .starts_with("sparse_attention.num_heads")
    );
}

#[test]
fn parsed_config_builds_the_expected_layout() {
    let c = parse_sparse_attention(r#"{"sparse_attention": {"mode": "fixed"}}"#, 1).unwrap();
    let l = c.make_layout(128).unwrap();
    assert_eq!(
        render_head_text(&l, 0),
        "####...#\n####...#\n####...#\n####...#\n...#####\n...#####\n...#####\n...#####\n"
    );
}
