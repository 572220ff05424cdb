//! Pictures of layouts: text (`#` active, `.` inactive) and PNG.

use crate::error::{Result, SparseAttnError};
use crate::layout::Layout;

/// One head as text: one line per block-row, one character per block (`#` active, `.`
/// inactive), each line ending in `\n`. An out-of-range head gives an empty string.
///
/// ```
/// use ltd_sparse_attn::{Layout, render_head_text};
/// let l = Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
/// assert_eq!(render_head_text(&l, 0), "#.\n##\n");
/// ```
pub fn render_head_text(layout: &Layout, head: usize) -> String {
    let nb = layout.num_blocks();
    if head >= layout.num_heads() {
        return String::new();
    }
    let mut s = String::with_capacity(nb * (nb + 1));
    for r in 0..nb {
        for c in 0..nb {
            s.push(if layout.is_active(head, r, c) {
                '#'
            } else {
                '.'
            });
        }
        s.push('\n');
    }
    s
}

/// All heads as text: for each head a line `head {h}:` followed by its rows
/// ([`render_head_text`]), heads separated by a blank line.
///
/// ```
/// use ltd_sparse_attn::{Layout, render_text};
/// let l = Layout::from_mask(2, 1, 16, vec![1, 0]).unwrap();
/// assert_eq!(render_text(&l), "head 0:\n#\n\nhead 1:\n.\n");
/// ```
pub fn render_text(layout: &Layout) -> String {
    (0..layout.num_heads())
        .map(|h| format!("head {h}:\n{}", render_head_text(layout, h)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a layout is drawn as a PNG.
///
/// ```
/// let o = ltd_sparse_attn::PngOptions::default();
/// assert_eq!((o.cell_pixels, o.gap_cells), (4, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PngOptions {
    /// Side of one block's square cell in pixels (at least 1; default 4).
    pub cell_pixels: u32,
    /// Width of the gap between heads, in cells (default 1).
    pub gap_cells: u32,
}

impl Default for PngOptions {
    fn default() -> Self {
        PngOptions {
            cell_pixels: 4,
            gap_cells: 1,
        }
    }
}

/// Grey levels of the picture.
const ACTIVE: u8 = 0;
const INACTIVE: u8 = 255;
const GAP: u8 = 160;

/// The layout as an 8-bit greyscale PNG: one square cell per block (black active, white
/// inactive), heads side by side left to right, separated by a grey gap. The picture is
/// `H * nb + (H - 1) * gap` cells wide and `nb` cells high; an empty layout (`nb = 0`) gives a
/// 1 x 1 grey picture.
///
/// ```
/// use ltd_sparse_attn::{Layout, PngOptions, render_png};
/// let l = Layout::from_mask(2, 2, 16, vec![1, 0, 1, 1, 1, 1, 1, 1]).unwrap();
/// let png = render_png(&l, &PngOptions::default()).unwrap();
/// assert_eq!(&png[1..4], b"PNG");
/// ```
pub fn render_png(layout: &Layout, options: &PngOptions) -> Result<Vec<u8>> {
    if options.cell_pixels == 0 {
        return Err(SparseAttnError::InvalidArgument {
            what: "PngOptions::cell_pixels".into(),
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    let nb = layout.num_blocks();
    let heads = layout.num_heads();
    let cell = options.cell_pixels as usize;
    let gap = options.gap_cells as usize;
    let (width, height, pixels) = if nb == 0 {
        (1usize, 1usize, vec![GAP])
    } else {
        let cells_w = (heads * nb).saturating_add((heads - 1).saturating_mul(gap));
        let (w, h) = (cells_w.saturating_mul(cell), nb.saturating_mul(cell));
        if w > u32::MAX as usize || h > u32::MAX as usize || w.saturating_mul(h) > (1 << 31) {
            return Err(SparseAttnError::InvalidArgument {
                what: "picture size".into(),
                value: format!("{w} x {h} pixels"),
                expected: "at most 2^31 pixels; use a smaller cell_pixels".into(),
            });
        }
        let mut px = ltd_core::try_vec("layout picture", w * h, GAP)?;
        for head in 0..heads {
            let x0 = head * (nb + gap);
            for r in 0..nb {
                for c in 0..nb {
                    let v = if layout.is_active(head, r, c) {
                        ACTIVE
                    } else {
                        INACTIVE
                    };
                    for dy in 0..cell {
                        let row = (r * cell + dy) * w;
                        let start = row + (x0 + c) * cell;
                        px[start..start + cell].fill(v);
                    }
                }
            }
        }
        (w, h, px)
    };
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| SparseAttnError::Png(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| SparseAttnError::Png(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| SparseAttnError::Png(e.to_string()))?;
    }
    Ok(out)
}

/// Writes [`render_png`]'s picture to `path`, atomically ([`ltd_core::write_file_atomic`]: the
/// file is complete or absent, and an existing file is replaced only once the new one is whole).
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, PngOptions, write_png};
/// let l = FixedConfig::new(1).make_layout_blocks(8).unwrap();
/// let path = std::env::temp_dir().join("ltd_sparse_attn_doc_fixed.png");
/// write_png(&l, &path, &PngOptions::default()).unwrap();
/// assert!(std::fs::metadata(&path).unwrap().len() > 8);
/// # std::fs::remove_file(&path).ok();
/// ```
pub fn write_png(
    layout: &Layout,
    path: impl AsRef<std::path::Path>,
    options: &PngOptions,
) -> Result<()> {
    let bytes = render_png(layout, options)?;
    let path = path.as_ref();
    ltd_core::write_file_atomic(path, &bytes).map_err(|source| SparseAttnError::Io {
        path: path.display().to_string(),
        source,
    })
}
