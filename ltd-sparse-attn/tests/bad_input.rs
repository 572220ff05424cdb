//! Every op returns a typed error on bad caller input (never panics), naming the bad value and
//! the expected one.

use half::bf16;
use ltd_sparse_attn::*;

fn shape(heads: usize, seq_len: usize, head_dim: usize) -> AttentionShape {
    AttentionShape {
        batch: 1,
        heads,
        seq_len,
        head_dim,
    }
}

fn run_forward(
    layout: &Layout,
    s: AttentionShape,
    lens: [usize; 3],
    opts: &AttentionOptions<'_, f32>,
) -> Result<()> {
    let (q, k, v) = (
        vec![0.0f32; lens[0]],
        vec![0.0f32; lens[1]],
        vec![0.0f32; lens[2]],
    );
    let mut out = vec![0.0f32; s.qkv_len()];
    let mut lse = vec![0.0f32; s.lse_len()];
    attention_forward(
        layout,
        s,
        &AttentionInputs {
            q: &q,
            k: &k,
            v: &v,
        },
        opts,
        &mut out,
        &mut lse,
    )
}

#[test]
fn attention_shape_errors() {
    let layout = DenseConfig::new(2).make_layout(40).unwrap(); // 3 blocks of 16
    let s = shape(2, 40, 8);
    let n = s.qkv_len();
    let none = AttentionOptions::new();
    assert!(run_forward(&layout, s, [n, n, n], &none).is_ok());

    // Wrong head count.
    let e = run_forward(&layout, shape(3, 40, 8), [n / 2 * 3; 3], &none).unwrap_err();
    assert_eq!(
        e.to_string(),
        "head count mismatch: the inputs have 3 heads but the layout has 2"
    );
    // D mismatch: k has D = 4.
    let e = run_forward(&layout, s, [n, n / 2, n], &none).unwrap_err();
    assert_eq!(
        e.to_string(),
        "k: expected 640 elements ([B,H,L,D] = 1x2x40x8), got 320 elements"
    );
    // Layout for another length.
    let e = run_forward(&layout, shape(2, 64, 8), [1024; 3], &none).unwrap_err();
    assert!(
        matches!(
            e,
            SparseAttnError::LayoutLengthMismatch {
                needed: 4,
                num_blocks: 3,
                ..
            }
        ),
        "{e}"
    );
    // D = 0.
    let e = run_forward(&layout, shape(2, 40, 0), [0; 3], &none).unwrap_err();
    assert!(e.to_string().starts_with("head_dim: 0 is invalid"));
    // Mask shapes.
    let kpm = vec![0.0f32; 39];
    let o = AttentionOptions {
        key_padding_mask: Some(KeyPaddingMask::Additive(&kpm)),
        ..AttentionOptions::new()
    };
    let e = run_forward(&layout, s, [n; 3], &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "key_padding_mask: expected 40 elements ([B,L] = 1x40), got 39 elements"
    );
    let keep = vec![true; 41];
    let o = AttentionOptions {
        key_padding_mask: Some(KeyPaddingMask::Keep(&keep)),
        ..AttentionOptions::new()
    };
    assert!(run_forward(&layout, s, [n; 3], &o).is_err());
    let bias = vec![0.0f32; 40 * 40]; // one head's worth
    let o = AttentionOptions {
        bias: Some(&bias),
        ..AttentionOptions::new()
    };
    let e = run_forward(&layout, s, [n; 3], &o).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bias: expected 3200 elements ([B,H,L,L] = 1x2x40x40)")
    );
    let o = AttentionOptions {
        scale: Some(f32::NAN),
        ..AttentionOptions::new()
    };
    assert!(
        run_forward(&layout, s, [n; 3], &o)
            .unwrap_err()
            .to_string()
            .starts_with("scale: NaN is invalid")
    );

    // Output buffers.
    let x = vec![0.0f32; n];
    let inputs = AttentionInputs {
        q: &x,
        k: &x,
        v: &x,
    };
    let mut out = vec![0.0f32; n];
    let mut short_lse = vec![0.0f32; 79];
    let e = attention_forward(&layout, s, &inputs, &none, &mut out, &mut short_lse).unwrap_err();
    assert!(e.to_string().starts_with("lse: expected 80 elements"));
    let lse = vec![0.0f32; 80];
    let (mut dq, mut dk, mut dv, mut db) = (x.clone(), x.clone(), vec![0.0f32; 3], vec![0.0f32; 1]);
    let g = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: None,
    };
    let e = attention_backward(&layout, s, &inputs, &none, &out, &x, &lse, g).unwrap_err();
    assert!(e.to_string().starts_with("dv: expected 640 elements"));
    let mut dv = x.clone();
    let g = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: Some(&mut db),
    };
    let e = attention_backward(&layout, s, &inputs, &none, &out, &x, &lse, g).unwrap_err();
    assert!(e.to_string().starts_with("dbias: expected 3200 elements"));
}

#[test]
fn sparse_self_attention_checks_heads_and_config() {
    let attn = SparseSelfAttention::new(FixedConfig::new(4).into()).unwrap();
    let s = shape(2, 64, 16);
    let x = vec![bf16::ZERO; s.qkv_len()];
    let mut out = x.clone();
    let mut lse = vec![0.0f32; s.lse_len()];
    let e = attn
        .forward(
            s,
            &AttentionInputs {
                q: &x,
                k: &x,
                v: &x,
            },
            &AttentionOptions::new(),
            &mut out,
            &mut lse,
        )
        .unwrap_err();
    assert!(matches!(
        e,
        SparseAttnError::HeadMismatch {
            expected: 4,
            actual: 2
        }
    ));
    // A length the config cannot lay out (BigBird needs at least 3 blocks for its window).
    let bb = SparseSelfAttention::new(BigBirdConfig::new(1).into()).unwrap();
    let s = shape(1, 20, 8);
    let x = vec![0.0f32; s.qkv_len()];
    let (mut out, mut lse) = (x.clone(), vec![0.0; s.lse_len()]);
    let e = bb
        .forward(
            s,
            &AttentionInputs {
                q: &x,
                k: &x,
                v: &x,
            },
            &AttentionOptions::new(),
            &mut out,
            &mut lse,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("num_sliding_window_blocks: 3 is larger than the number of blocks 2")
    );
    // Invalid configs are rejected at construction.
    let mut bad = FixedConfig::new(1);
    bad.block = 256;
    assert!(SparseSelfAttention::new(bad.into()).is_err());
    // Empty inputs are fine.
    let s = shape(4, 0, 8);
    let (mut out, mut lse) = (Vec::<f32>::new(), Vec::new());
    attn.forward(
        s,
        &AttentionInputs {
            q: &[],
            k: &[],
            v: &[],
        },
        &AttentionOptions::new(),
        &mut out,
        &mut lse,
    )
    .unwrap();
}

#[test]
fn primitive_shape_errors() {
    let layout = Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
    let mm = BlockSparseMatMul::sdd(false, true);
    let (la, lb, lc) = mm.operand_lens(&layout, 1, 16);
    let (a, b) = (vec![0.0f32; la], vec![0.0f32; lb]);
    let mut c = vec![0.0f32; lc];
    assert!(mm.forward(&layout, &a, &b, 1, 16, &mut c).is_ok());
    let e = mm.forward(&layout, &a, &b[1..], 1, 16, &mut c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "b: expected 512 elements ([Z,H,rows,cols] = 1x1x32x16), got 511 elements"
    );
    let e = mm.forward(&layout, &a, &b, 1, 16, &mut c[1..]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("c: expected 768 elements ([Z,nnz,b,b] = 1x3x16x16)")
    );
    let (mut da, mut db) = (vec![0.0f32; la], vec![0.0f32; lb - 1]);
    let e = mm
        .backward(&layout, &a, &b, &c, 1, 16, &mut da, &mut db)
        .unwrap_err();
    assert!(e.to_string().starts_with("db: expected 512 elements"));
    assert!(
        MatMulMode::parse("ssd")
            .unwrap_err()
            .to_string()
            .contains("\"ssd\"")
    );

    let x = vec![0.0f32; 3 * 256];
    let mut y = x.clone();
    let rpe = vec![0.0f32; 10];
    let o = SoftmaxOptions {
        rpe: Some(&rpe),
        ..SoftmaxOptions::new()
    };
    let e = softmax_forward(&layout, &x, 1, &o, &mut y).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("rpe: expected 1024 elements ([Z,H,S,S] = 1x1x32x32)")
    );
    let kpm = vec![0.0f32; 31];
    let o = SoftmaxOptions {
        key_padding_mask: Some(&kpm),
        ..SoftmaxOptions::new()
    };
    assert!(
        softmax_forward(&layout, &x, 1, &o, &mut y)
            .unwrap_err()
            .to_string()
            .starts_with("key_padding_mask")
    );
    let am = vec![0.0f32; 32];
    let o = SoftmaxOptions {
        attn_mask: Some(&am),
        ..SoftmaxOptions::new()
    };
    assert!(
        softmax_forward(&layout, &x, 1, &o, &mut y)
            .unwrap_err()
            .to_string()
            .starts_with("attn_mask")
    );
    let o = SoftmaxOptions {
        scale: f32::INFINITY,
        ..SoftmaxOptions::new()
    };
    assert!(softmax_forward(&layout, &x, 1, &o, &mut y).is_err());
    let e = softmax_forward(&layout, &x, 2, &SoftmaxOptions::new(), &mut y).unwrap_err();
    assert!(e.to_string().starts_with("x: expected 1536 elements"));
    let mut dx = vec![0.0f32; 5];
    assert!(
        softmax_backward(&layout, &x, &x, 1, 1.0, &mut dx)
            .unwrap_err()
            .to_string()
            .starts_with("dx")
    );
    assert!(MaskMode::parse("and").is_err());
}

#[test]
fn absurd_values_give_errors_not_panics() {
    // Too many blocks for i32 lookup tables: an error before any allocation.
    let e = DenseConfig::new(4).make_layout(usize::MAX).unwrap_err();
    assert!(matches!(e, SparseAttnError::InvalidLayout(_)), "{e}");
    assert!(
        LayoutCache::new(DenseConfig::new(1).into())
            .unwrap()
            .get(1 << 40)
            .is_err()
    );
    // Huge window sizes and indices behave like Python's clamping slices.
    let mut f = FixedConfig::new(1);
    f.num_local_blocks = usize::MAX;
    assert_eq!(f.make_layout_blocks(3).unwrap().nnz(), 9);
    let mut v = VariableConfig::new(1);
    v.local_window_blocks = vec![usize::MAX, 2];
    v.global_block_indices = vec![usize::MAX];
    assert_eq!(v.make_layout_blocks(3).unwrap().nnz(), 9);
    let mut b = BSLongformerConfig::new(1);
    b.global_block_indices = vec![usize::MAX - 1];
    b.global_block_end_indices = Some(vec![usize::MAX]);
    assert!(b.make_layout_blocks(4).is_ok());
    // Huge pictures are refused.
    let l = DenseConfig::new(2).make_layout_blocks(4).unwrap();
    let huge = PngOptions {
        cell_pixels: u32::MAX,
        gap_cells: u32::MAX,
    };
    assert!(render_png(&l, &huge).is_err());
    // Shapes whose element counts overflow are length errors.
    let s = AttentionShape {
        batch: usize::MAX,
        heads: 2,
        seq_len: 64,
        head_dim: 8,
    };
    let x = vec![0.0f32; 8];
    let (mut o, mut lse) = (x.clone(), x.clone());
    let e = attention_forward(
        &l,
        s,
        &AttentionInputs {
            q: &x,
            k: &x,
            v: &x,
        },
        &AttentionOptions::new(),
        &mut o,
        &mut lse,
    )
    .unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    let mm = BlockSparseMatMul::dds(true, true);
    assert!(mm.forward(&l, &x, &x, usize::MAX, 3, &mut o).is_err());
}
