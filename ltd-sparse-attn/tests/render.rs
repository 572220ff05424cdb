//! Text and PNG pictures of layouts.

use ltd_sparse_attn::*;

#[test]
fn text_has_one_character_per_block_and_separated_heads() {
    let mut c = FixedConfig::new(2);
    c.different_layout_per_head = true;
    c.num_different_global_patterns = 2;
    let l = c.make_layout_blocks(4).unwrap();
    assert_eq!(
        render_text(&l),
        "head 0:\n####\n####\n####\n####\n\nhead 1:\n####\n####\n####\n####\n"
    );
    let l = LocalSlidingWindowConfig::new(1)
        .make_layout_blocks(3)
        .unwrap();
    assert_eq!(render_text(&l), "head 0:\n#..\n##.\n.##\n");
    assert_eq!(render_head_text(&l, 5), "");
}

/// Decodes a greyscale PNG into (width, height, pixels).
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn png_has_one_cell_per_block_heads_side_by_side_with_a_gap() {
    let l = Layout::from_mask(2, 2, 16, vec![1, 0, 1, 1, 0, 1, 0, 0]).unwrap();
    let opts = PngOptions {
        cell_pixels: 3,
        gap_cells: 1,
    };
    let (w, h, px) = decode(&render_png(&l, &opts).unwrap());
    assert_eq!((w, h), ((2 * 2 + 1) * 3, 2 * 3));
    let cell = |x: usize, y: usize| px[(y * 3 + 1) * w as usize + x * 3 + 1];
    // Head 0 in cells 0-1, gap in cell 2, head 1 in cells 3-4.
    assert_eq!(
        [cell(0, 0), cell(1, 0), cell(0, 1), cell(1, 1)],
        [0, 255, 0, 0]
    );
    assert!(cell(2, 0) != 0 && cell(2, 0) != 255);
    assert_eq!(
        [cell(3, 0), cell(4, 0), cell(3, 1), cell(4, 1)],
        [255, 0, 255, 255]
    );

    let path =
        std::env::temp_dir().join(format!("ltd_sparse_attn_render_{}.png", std::process::id()));
    write_png(&l, &path, &opts).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        render_png(&l, &opts).unwrap()
    );
    std::fs::remove_file(&path).ok();

    let e = write_png(&l, "/nonexistent-dir/x.png", &opts).unwrap_err();
    assert!(matches!(e, SparseAttnError::Io { .. }));
    let e = render_png(
        &l,
        &PngOptions {
            cell_pixels: 0,
            gap_cells: 1,
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("PngOptions::cell_pixels: 0 is invalid")
    );
    // An empty layout still gives a valid picture.
    let empty = DenseConfig::new(1).make_layout_blocks(0).unwrap();
    assert_eq!(
        decode(&render_png(&empty, &PngOptions::default()).unwrap()).0,
        1
    );
}
