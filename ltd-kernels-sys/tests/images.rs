//! Every kernel entry point is in the image it belongs to, and only there (feature `cuda`; a host
//! test: fatbins hold their kernels' names as plain strings, so no GPU is needed).
#![cfg(feature = "cuda")]

use ltd_kernels_sys::{KernelImage, fatbin, image, names};

fn has(image: &KernelImage, name: &str) -> bool {
    // A kernel's name appears NUL-terminated in the ELF string table of its image.
    let needle = [name.as_bytes(), b"\0"].concat();
    image
        .fatbin
        .windows(needle.len())
        .any(|w| w == needle.as_slice())
}

fn attention(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ty in ["bf16", "f16"] {
        for d in [64, 128] {
            out.push(format!("{prefix}_{ty}_d{d}"));
        }
    }
    out
}

#[test]
fn attention_kernels_are_in_their_images() {
    let sm80 = ["fwd", "fwd_bias_tiles", "bwd", "bwd_bias", "bwd_bias_tiles"];
    let sm90 = [
        "fwd_sm90",
        "fwd_bias_tma_sm90",
        "bwd_sm90",
        "bwd_bias_sm90",
        "bwd_bias_tma_sm90",
        "bwd_sm90_pair",
    ];
    let aux = ["fwd_combine", "bwd_pre", "bwd_combine"];
    let images = [
        (&image::SPARSE_ATTN_SM80, &sm80[..]),
        (&image::SPARSE_ATTN_SM90, &sm90[..]),
        (&image::SPARSE_ATTN_AUX, &aux[..]),
    ];
    for (img, families) in images {
        for family in families {
            for name in attention(&format!("ltd_sparse_attn_{family}")) {
                assert!(has(img, &name), "{name} is not in {}", img.name);
                for other in images
                    .iter()
                    .map(|(o, _)| *o)
                    .filter(|o| o.name != img.name)
                {
                    assert!(!has(other, &name), "{name} is also in {}", other.name);
                }
            }
        }
    }
    for ty in ["bf16", "f16"] {
        assert!(has(
            &image::SPARSE_ATTN_AUX,
            &format!("ltd_sparse_attn_bwd_dq_{ty}")
        ));
    }
    // The pair forward is gone.
    for name in attention("ltd_sparse_attn_fwd_sm90_pair") {
        assert!(!has(&image::SPARSE_ATTN_SM90, &name), "{name}");
    }
}

#[test]
fn named_kernels_are_in_their_images() {
    for name in [names::STRIDED_COPY_2D_U16, names::STRIDED_COPY_2D_U32] {
        assert!(has(&image::COPY, name), "{name}");
    }
    let ltd = [
        names::SAMPLE_TOKENS,
        names::SAMPLE_TOKENS_SMEM,
        names::SAMPLE_TOKENS_WIDE,
        names::SAMPLE_TOKENS_SMEM_WIDE,
    ];
    for name in ltd
        .into_iter()
        .chain(names::INDEX_ROWS)
        .chain(names::ROUTE_ROWS)
        .chain(names::MASK_GATHER)
    {
        assert!(has(&image::RANDOM_LTD, name), "{name}");
    }
    for name in names::SPARSE_MATMUL.iter().flatten().flatten() {
        assert!(has(&image::SPARSE_MATMUL, name), "{name}");
    }
}

#[test]
fn images_have_unique_names_and_the_old_fatbin_names_alias_them() {
    let mut seen: Vec<&str> = image::ALL.iter().map(|i| i.name).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), image::ALL.len());
    assert_eq!(image::ALL.len(), 7);
    assert_eq!(fatbin::SPARSE_ATTN, image::SPARSE_ATTN_SM80.fatbin);
    assert_eq!(fatbin::SPARSE_ATTN_SM90A, image::SPARSE_ATTN_SM90.fatbin);
    assert_eq!(fatbin::COPY, image::COPY.fatbin);
    assert_eq!(fatbin::SPARSE_SOFTMAX, image::SPARSE_SOFTMAX.fatbin);
}
