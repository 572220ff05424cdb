//! Unit tests of the text and PNG charts.

use super::*;
use ltd_sparse_attn::FixedConfig;

#[test]
fn number_formats() {
    assert_eq!(short(0.0), "0");
    assert_eq!(short(2048.0), "2048");
    assert_eq!(short(50_000.0), "50k");
    assert_eq!(short(1_500_000.0), "1.5M");
    assert_eq!(short(5.033e12), "5.03T");
    assert_eq!(grouped(5_033_164_800u64), "5,033,164,800");
    // Counts past u64 print in full, never saturated at 2^64 - 1.
    assert_eq!(
        grouped(u128::from(u64::MAX) + 1),
        "18,446,744,073,709,551,616"
    );
    assert_eq!(grouped(12u64), "12");
    assert_eq!(nice_ticks(200_000.0, 6), [0.0, 50e3, 100e3, 150e3, 200e3]);
    assert_eq!(nice_ticks(2048.0, 5)[1], 500.0);
}

#[test]
fn terminal_chart_shape() {
    let s = terminal_chart(|x| x, 100.0, 100.0, 20, 5, "step", true);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 8);
    assert!(lines[0].starts_with("100 |"));
    assert!(lines[4].contains('#'));
    assert!(lines[7].contains("step"));
}

#[test]
fn layout_pictures_group_heads_and_downsample() {
    let mut cfg = FixedConfig::new(4);
    cfg.different_layout_per_head = true;
    cfg.num_different_global_patterns = 2;
    let layout = cfg.make_layout_blocks(8).unwrap();
    assert_eq!(head_groups(&layout), vec![vec![0, 2], vec![1, 3]]);
    assert_eq!(heads_label(&[0, 2]), "heads 0,2");
    assert_eq!(heads_label(&[0, 1, 2]), "heads 0-2");
    let pic = head_picture(&layout, 0, 1, 8);
    assert_eq!(pic[0], "####...#");
    // Top-left 4x4 cell: all active; top-right 4x4: one column of 4 active = 1/4.
    let small = head_picture(&layout, 0, 4, 2);
    assert_eq!(small, vec!["#:", ":#"]);
    let text = layout_pictures(&layout, 64, 100, Fit::Crop);
    assert!(text.contains("heads 0,2   heads 1,3"), "{text}");
    let cropped = layout_pictures(&layout, 4, 100, Fit::Crop);
    assert!(cropped.contains("top-left 4 x 4 of 8 x 8"), "{cropped}");
    assert!(cropped.lines().any(|l| l.starts_with("####")), "{cropped}");
}

#[test]
fn png_chart_encodes() {
    let chart = LineChart {
        title: "r",
        x_label: "step",
        y_label: "r",
        x_max: 10.0,
        y_max: 10.0,
        points: vec![(0.0, 0.0), (10.0, 10.0)],
        reference: Some((10.0, "max".into())),
        legend: "r",
    };
    let png = line_chart_png(&chart).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let layout = FixedConfig::new(2).make_layout_blocks(8).unwrap();
    assert_eq!(&layout_png(&layout, "fixed").unwrap()[1..4], b"PNG");
}
