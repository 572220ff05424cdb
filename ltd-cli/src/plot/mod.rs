//! Pictures: a terminal chart, text pictures of layouts (downsampled when large) and a PNG line
//! chart drawn with an embedded 8x8 bitmap font (no system fonts needed).

use ltd_sparse_attn::Layout;

use crate::error::{CliError, Result};

// ---------------------------------------------------------------------------------------------
// Numbers

/// A compact label for an axis tick or a count: `950`, `2048`, `50k`, `1.5M`, `5.03T`.
pub fn short(x: f64) -> String {
    let a = x.abs();
    if a < 10_000.0 {
        if x.fract() == 0.0 {
            return format!("{x:.0}");
        }
        return trim(format!("{x:.2}"));
    }
    let (div, suffix) = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(d, _)| a >= *d)
        .unwrap_or((1.0, ""));
    let v = x / div;
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{}{suffix}", trim(format!("{v:.digits$}")))
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// An integer with thousands separators: `5,033,164,800`.
pub fn grouped(n: impl Into<u128>) -> String {
    let s = n.into().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Ticks at "nice" values (1, 2 or 5 times a power of ten) covering `[0, max]`, about `n` of
/// them, always starting at 0.
pub fn nice_ticks(max: f64, n: usize) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0];
    }
    let rough = max / n.max(1) as f64;
    let mag = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * mag);
    let mut ticks = Vec::new();
    let mut t = 0.0;
    while t <= max * (1.0 + 1e-9) {
        ticks.push(t);
        t += step;
    }
    ticks
}

// ---------------------------------------------------------------------------------------------
// Terminal chart

/// An area chart of `y = f(x)` for `x` in `[0, x_max]`, `y` in `[0, y_max]`, `width` columns by
/// `height` rows, with a left axis labelled at the top, middle and bottom and an x axis labelled at
/// both ends and the middle. Unicode eighth blocks give eight levels per row; `ascii` uses `#`.
pub fn terminal_chart(
    f: impl Fn(f64) -> f64,
    x_max: f64,
    y_max: f64,
    width: usize,
    height: usize,
    x_label: &str,
    ascii: bool,
) -> String {
    let width = width.max(8);
    let height = height.max(3);
    const EIGHTHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let levels: Vec<f64> = (0..width)
        .map(|c| {
            let x = x_max * c as f64 / (width - 1) as f64;
            let y = f(x);
            if y_max > 0.0 {
                (y / y_max).clamp(0.0, 1.0) * height as f64
            } else {
                0.0
            }
        })
        .collect();
    let label_w = short(y_max).len().max(1);
    let mut out = String::new();
    for row in 0..height {
        // Row 0 is the top; its band is [height-1, height) in level units.
        let band = (height - 1 - row) as f64;
        let label = if row == 0 {
            short(y_max)
        } else if row == height / 2 {
            short(y_max * (height - row) as f64 / height as f64)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{label:>label_w$} {} ",
            if ascii { '|' } else { '┤' }
        ));
        let mut line = String::new();
        for &lv in &levels {
            let fill = (lv - band).clamp(0.0, 1.0);
            line.push(if ascii {
                if fill >= 0.5 { '#' } else { ' ' }
            } else {
                EIGHTHS[(fill * 8.0).round() as usize]
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let pad = " ".repeat(label_w);
    let (corner, dash) = if ascii { ('+', '-') } else { ('└', '─') };
    out.push_str(&format!(
        "{pad} {corner}{}\n",
        dash.to_string().repeat(width + 1)
    ));
    let (left, mid, right) = ("0".to_owned(), short(x_max / 2.0), short(x_max));
    let mut axis = vec![' '; width + 2];
    let put = |axis: &mut Vec<char>, at: usize, s: &str| {
        let start = at.min(axis.len().saturating_sub(s.len()));
        for (i, ch) in s.chars().enumerate() {
            if let Some(slot) = axis.get_mut(start + i) {
                *slot = ch;
            }
        }
    };
    put(&mut axis, 1, &left);
    put(&mut axis, (width + 2) / 2 - mid.len() / 2, &mid);
    put(&mut axis, width + 2 - right.len(), &right);
    out.push_str(&format!("{pad} {}\n", axis.iter().collect::<String>()));
    let centre = (label_w + 2 + width / 2).saturating_sub(x_label.len() / 2);
    out.push_str(&format!("{}{x_label}\n", " ".repeat(centre)));
    out
}

// ---------------------------------------------------------------------------------------------
// Layout pictures

/// Heads grouped by identical layouts, in order of their first head.
pub fn head_groups(layout: &Layout) -> Vec<Vec<usize>> {
    let nb = layout.num_blocks();
    let per_head = nb * nb;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for h in 0..layout.num_heads() {
        let mask = &layout.mask()[h * per_head..(h + 1) * per_head];
        match groups
            .iter_mut()
            .find(|g| &layout.mask()[g[0] * per_head..(g[0] + 1) * per_head] == mask)
        {
            Some(g) => g.push(h),
            None => groups.push(vec![h]),
        }
    }
    groups
}

/// `head 3`, `heads 0-15`, `heads 0,4,8,12`; a long list is shortened to its first heads and a
/// count (`heads 0,4,8,...,99996 (25000 heads)`), so a label stays short for any head count.
pub fn heads_label(heads: &[usize]) -> String {
    const SHOWN: usize = 6;
    match heads {
        [] => "no heads".to_owned(),
        [one] => format!("head {one}"),
        _ if heads.windows(2).all(|w| w[1] == w[0] + 1) => {
            format!("heads {}-{}", heads[0], heads[heads.len() - 1])
        }
        _ if heads.len() > SHOWN => format!(
            "heads {},...,{} ({} heads)",
            join(&heads[..SHOWN - 1]),
            heads[heads.len() - 1],
            heads.len()
        ),
        _ => format!("heads {}", join(heads)),
    }
}

fn join(heads: &[usize]) -> String {
    heads
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` padded with spaces to `width` characters (by hand: a `format!` width must fit a
/// `u16`, and a caller-sized width must never panic).
fn pad_to(text: &str, width: usize) -> String {
    let mut s = text.to_owned();
    let len = text.chars().count();
    if width > len {
        s.push_str(&" ".repeat(width - len));
    }
    s
}

/// The downsampling factor that fits `nb` blocks into at most `max_cells` cells.
pub fn cell_factor(nb: usize, max_cells: usize) -> usize {
    nb.div_ceil(max_cells.max(1)).max(1)
}

/// How a layout larger than the picture is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The top-left corner at one character per block (the patterns repeat along the diagonal).
    Crop,
    /// The whole layout, several blocks per character, shaded by the fraction of active blocks.
    Downsample,
}

/// Rows `rows` x columns `rows` of one head, `factor` x `factor` blocks per character: `#` all
/// active, `*` more than 2/3, `+` more than 1/3, `:` some, `.` none.
pub fn head_picture(layout: &Layout, head: usize, factor: usize, cells: usize) -> Vec<String> {
    let nb = layout.num_blocks();
    (0..cells)
        .map(|cr| {
            (0..cells)
                .map(|cc| {
                    let (mut on, mut total) = (0usize, 0usize);
                    for r in cr * factor..((cr + 1) * factor).min(nb) {
                        for c in cc * factor..((cc + 1) * factor).min(nb) {
                            total += 1;
                            on += usize::from(layout.is_active(head, r, c));
                        }
                    }
                    match on {
                        0 => '.',
                        n if n == total => '#',
                        n if 3 * n > 2 * total => '*',
                        n if 3 * n > total => '+',
                        _ => ':',
                    }
                })
                .collect()
        })
        .collect()
}

/// Text pictures of every distinct head pattern, side by side while they fit in `max_width`
/// columns, each under a `heads ...` title. Layouts with more than `max_cells` blocks per side
/// are cropped or downsampled (`fit`); a note says so.
pub fn layout_pictures(layout: &Layout, max_cells: usize, max_width: usize, fit: Fit) -> String {
    let nb = layout.num_blocks();
    let max_cells = max_cells.max(1);
    let (factor, cells) = match fit {
        _ if nb <= max_cells => (1, nb),
        Fit::Crop => (1, max_cells),
        Fit::Downsample => {
            let f = cell_factor(nb, max_cells);
            (f, nb.div_ceil(f))
        }
    };
    let groups = head_groups(layout);
    let mut out = String::new();
    if factor > 1 {
        out.push_str(&format!(
            "(all {nb} x {nb} blocks, {factor} x {factor} blocks per character: # all active, * > 2/3, + > 1/3, : some, . none)\n"
        ));
    } else if cells < nb {
        out.push_str(&format!(
            "(the top-left {cells} x {cells} of {nb} x {nb} blocks, one character per block: # active, . inactive; rows are query blocks)\n"
        ));
    } else {
        out.push_str("(one character per block: # active, . inactive; rows are query blocks)\n");
    }
    let pictures: Vec<(String, Vec<String>)> = groups
        .iter()
        .map(|g| (heads_label(g), head_picture(layout, g[0], factor, cells)))
        .collect();
    let gap = 3;
    let mut i = 0;
    while i < pictures.len() {
        // Take as many pictures as fit.
        let mut j = i;
        let mut used = 0;
        while j < pictures.len() {
            let w = pictures[j].0.len().max(cells);
            let extra = if j == i { w } else { w + gap };
            if j > i && used + extra > max_width {
                break;
            }
            used += extra;
            j += 1;
        }
        let chunk = &pictures[i..j];
        let widths: Vec<usize> = chunk.iter().map(|(t, _)| t.len().max(cells)).collect();
        let line = |cells: Vec<String>| -> String {
            let mut s = String::new();
            for (k, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if k > 0 {
                    s.push_str(&" ".repeat(gap));
                }
                s.push_str(&pad_to(cell, *w));
            }
            s.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(chunk.iter().map(|(t, _)| t.clone()).collect()));
        for r in 0..cells {
            out.push_str(&line(
                chunk
                    .iter()
                    .map(|(_, p)| p.get(r).cloned().unwrap_or_default())
                    .collect(),
            ));
        }
        i = j;
        if i < pictures.len() {
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PNG line chart

/// An RGB picture.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [20, 20, 20];
const GRID: [u8; 3] = [225, 225, 225];
const GREY: [u8; 3] = [130, 130, 130];
const BLUE: [u8; 3] = [31, 100, 200];

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![WHITE; w * h],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    fn hline(&mut self, x0: i64, x1: i64, y: i64, c: [u8; 3], dash: Option<i64>) {
        for x in x0.min(x1)..=x0.max(x1) {
            if dash.is_none_or(|d| (x / d) % 2 == 0) {
                self.set(x, y, c);
            }
        }
    }

    fn vline(&mut self, x: i64, y0: i64, y1: i64, c: [u8; 3]) {
        for y in y0.min(y1)..=y0.max(y1) {
            self.set(x, y, c);
        }
    }

    /// A line `thickness` pixels wide (Bresenham with a square brush).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thickness: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for ox in 0..thickness {
                for oy in 0..thickness {
                    self.set(x + ox - thickness / 2, y + oy - thickness / 2, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with the 8x8 font scaled by `scale`, top-left at `(x, y)`; `vertical` reads bottom
    /// to top (rotated 90 degrees counter-clockwise) with `(x, y)` its bottom-left.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3], vertical: bool) {
        for (i, ch) in s.chars().enumerate() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                b'?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) == 0 {
                        continue;
                    }
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let (px, py) = (gx as i64 * scale + sx, gy as i64 * scale + sy);
                            let advance = i as i64 * 8 * scale;
                            if vertical {
                                self.set(x + py, y - advance - px, c);
                            } else {
                                self.set(x + advance + px, y + py, c);
                            }
                        }
                    }
                }
            }
        }
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 8 * scale
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.w as u32, self.h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| CliError::Png(e.to_string()))?;
            let data: Vec<u8> = self.px.iter().flatten().copied().collect();
            writer
                .write_image_data(&data)
                .map_err(|e| CliError::Png(e.to_string()))?;
            writer.finish().map_err(|e| CliError::Png(e.to_string()))?;
        }
        Ok(bytes)
    }
}

/// What [`line_chart_png`] draws.
pub struct LineChart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label under the x axis.
    pub x_label: &'a str,
    /// Label along the y axis.
    pub y_label: &'a str,
    /// The x range is `[0, x_max]`.
    pub x_max: f64,
    /// The y range is `[0, y_max]`.
    pub y_max: f64,
    /// The points of the line, in increasing x.
    pub points: Vec<(f64, f64)>,
    /// A dashed horizontal reference line and its label.
    pub reference: Option<(f64, String)>,
    /// The legend text of the line.
    pub legend: &'a str,
}
/// Draws `chart` as a 960 x 540 RGB PNG: white background, grid, labelled axes, a blue line.
///
/// # Errors
/// [`CliError::Png`] when encoding fails.
pub fn line_chart_png(chart: &LineChart<'_>) -> Result<Vec<u8>> {
    multi_line_chart_png(&MultiLineChart {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
        x_max: chart.x_max,
        y_min: 0.0,
        y_max: chart.y_max,
        series: vec![Series {
            legend: chart.legend.to_owned(),
            points: chart.points.clone(),
            markers: Vec::new(),
        }],
        reference: chart.reference.clone(),
        legend_top: false,
    })
}

/// One line of a [`MultiLineChart`], with optional square markers at other points.
pub struct Series {
    /// The legend text.
    pub legend: String,
    /// The line's points, in increasing x.
    pub points: Vec<(f64, f64)>,
    /// Points drawn as squares (for example sparse evaluations).
    pub markers: Vec<(f64, f64)>,
}

/// What [`multi_line_chart_png`] draws: several lines on shared axes, `y` in `[y_min, y_max]`.
pub struct MultiLineChart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label under the x axis.
    pub x_label: &'a str,
    /// Label along the y axis.
    pub y_label: &'a str,
    /// The x range is `[0, x_max]`.
    pub x_max: f64,
    /// Bottom of the y range.
    pub y_min: f64,
    /// Top of the y range (a 5% margin is added above).
    pub y_max: f64,
    /// The lines, drawn in order with distinct colours.
    pub series: Vec<Series>,
    /// A dashed horizontal reference line and its label.
    pub reference: Option<(f64, String)>,
    /// The legend in the top-right corner (for falling curves) instead of the bottom right.
    pub legend_top: bool,
}

const SERIES_COLOURS: [[u8; 3]; 4] = [BLUE, [214, 96, 30], [40, 150, 60], [150, 60, 170]];

/// Ticks at nice values covering `[lo, hi]` (see [`nice_ticks`]).
fn nice_ticks_between(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if lo == 0.0 {
        return nice_ticks(hi, n);
    }
    let span = nice_ticks(hi - lo, n);
    let step = span
        .get(1)
        .copied()
        .unwrap_or(hi - lo)
        .max(f64::MIN_POSITIVE);
    let mut t = (lo / step).ceil() * step;
    let mut ticks = Vec::new();
    while t <= hi * (1.0 + 1e-9) && ticks.len() < 64 {
        ticks.push(t);
        t += step;
    }
    ticks
}

/// Draws `chart` as a 960 x 540 RGB PNG: white background, grid, labelled axes, one coloured
/// line per series and a legend.
///
/// # Errors
/// [`CliError::Png`] when encoding fails.
pub fn multi_line_chart_png(chart: &MultiLineChart<'_>) -> Result<Vec<u8>> {
    let (w, h) = (960i64, 540i64);
    let mut cv = Canvas::new(w as usize, h as usize);
    let (left, right, top, bottom) = (110i64, 56i64, 60i64, 90i64);
    let (px0, px1, py0, py1) = (left, w - right, top, h - bottom);
    let x_max = if chart.x_max > 0.0 { chart.x_max } else { 1.0 };
    let y_min = if chart.y_min.is_finite() {
        chart.y_min
    } else {
        0.0
    };
    let y_span = if chart.y_max > y_min {
        (chart.y_max - y_min) * 1.05
    } else {
        1.0
    };
    let to_px = |x: f64, y: f64| -> (i64, i64) {
        let fx = (x / x_max).clamp(0.0, 1.0);
        let fy = ((y - y_min) / y_span).clamp(0.0, 1.0);
        (
            px0 + (fx * (px1 - px0) as f64).round() as i64,
            py1 - (fy * (py1 - py0) as f64).round() as i64,
        )
    };
    // Title.
    let tw = Canvas::text_width(chart.title, 2);
    cv.text((w - tw) / 2, 18, chart.title, 2, BLACK, false);
    // Grid and ticks.
    for t in nice_ticks(x_max, 6) {
        let (x, _) = to_px(t, y_min);
        cv.vline(x, py0, py1, GRID);
        cv.vline(x, py1, py1 + 6, BLACK);
        let label = short(t);
        cv.text(
            x - Canvas::text_width(&label, 2) / 2,
            py1 + 12,
            &label,
            2,
            BLACK,
            false,
        );
    }
    let y_top = if chart.y_max > y_min {
        chart.y_max
    } else {
        y_min + 1.0
    };
    for t in nice_ticks_between(y_min, y_top.max(y_min + 1e-12), 5) {
        let (_, y) = to_px(0.0, t);
        cv.hline(px0, px1, y, GRID, None);
        cv.hline(px0 - 6, px0, y, BLACK, None);
        let label = short(t);
        cv.text(
            px0 - 12 - Canvas::text_width(&label, 2),
            y - 8,
            &label,
            2,
            BLACK,
            false,
        );
    }
    // Axes.
    cv.hline(px0, px1, py1, BLACK, None);
    cv.vline(px0, py0, py1, BLACK);
    // Axis labels.
    let xw = Canvas::text_width(chart.x_label, 2);
    cv.text(
        px0 + (px1 - px0 - xw) / 2,
        h - 36,
        chart.x_label,
        2,
        BLACK,
        false,
    );
    let yw = Canvas::text_width(chart.y_label, 2);
    cv.text(
        14,
        py1 - (py1 - py0 - yw) / 2,
        chart.y_label,
        2,
        BLACK,
        true,
    );
    // Reference line.
    if let Some((y, label)) = &chart.reference {
        let (_, ry) = to_px(0.0, *y);
        cv.hline(px0, px1, ry, GREY, Some(6));
        cv.text(px0 + 8, ry - 12, label, 1, GREY, false);
    }
    // The lines, their markers and the legend (one row per series).
    let rows = chart.series.len() as i64;
    for (i, series) in chart.series.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        let pts: Vec<(i64, i64)> = series.points.iter().map(|&(x, y)| to_px(x, y)).collect();
        for pair in pts.windows(2) {
            cv.line(pair[0], pair[1], colour, 3);
        }
        for &(x, y) in &series.markers {
            let (mx, my) = to_px(x, y);
            cv.line((mx, my), (mx, my), colour, 9);
        }
        let lw = Canvas::text_width(&series.legend, 2);
        let ly = if chart.legend_top {
            py0 + 10 + 24 * i as i64
        } else {
            py1 - 30 - 24 * (rows - 1 - i as i64)
        };
        let lx = px1 - lw - 10;
        cv.line((lx - 40, ly + 8), (lx - 10, ly + 8), colour, 3);
        cv.text(lx, ly, &series.legend, 2, BLACK, false);
    }
    cv.encode()
}

/// The layout as a PNG a person can read: one picture per distinct head pattern (heads with the
/// same layout share one), in a grid, each titled with its heads and density, black = active
/// tile, white = inactive, query blocks top to bottom, key blocks left to right.
///
/// # Errors
/// [`CliError::Png`] when encoding fails or the picture would be too large.
pub fn layout_png(layout: &Layout, title: &str) -> Result<Vec<u8>> {
    let nb = layout.num_blocks().max(1) as i64;
    let groups = head_groups(layout);
    let cell = (384 / nb).clamp(1, 16);
    let side = nb * cell;
    let cols = (groups.len() as f64).sqrt().ceil().max(1.0) as i64;
    let rows = (groups.len() as i64 + cols - 1) / cols;
    let (pad, label_h, title_h) = (24i64, 28i64, 44i64);
    let tile_w = side.max(260);
    let w = (pad + cols * (tile_w + pad)).max(Canvas::text_width(title, 2) + 2 * pad);
    let h = title_h + rows * (label_h + side + pad) + pad / 2;
    if w * h > 1 << 28 {
        return Err(CliError::Png(format!(
            "the picture would be {w} x {h} pixels; use a shorter sequence"
        )));
    }
    let mut cv = Canvas::new(w as usize, h as usize);
    let tw = Canvas::text_width(title, 2);
    cv.text(((w - tw) / 2).max(4), 14, title, 2, BLACK, false);
    let per_head = (nb * nb) as usize;
    for (i, g) in groups.iter().enumerate() {
        let (gc, gr) = (i as i64 % cols, i as i64 / cols);
        let x0 = pad + gc * (tile_w + pad);
        let y0 = title_h + gr * (label_h + side + pad);
        let head = g[0];
        let active = layout.mask()[head * per_head..(head + 1) * per_head]
            .iter()
            .filter(|&&v| v != 0)
            .count();
        let label = format!(
            "{}: {:.1}%",
            heads_label(g),
            100.0 * active as f64 / per_head as f64
        );
        cv.text(
            x0,
            y0 + 6,
            &label,
            if label.len() * 16 <= tile_w as usize {
                2
            } else {
                1
            },
            BLACK,
            false,
        );
        let top = y0 + label_h;
        for r in 0..nb {
            for c in 0..nb {
                if layout.is_active(head, r as usize, c as usize) {
                    for dy in 0..cell {
                        for dx in 0..cell {
                            cv.set(x0 + c * cell + dx, top + r * cell + dy, BLACK);
                        }
                    }
                }
            }
        }
        if cell >= 6 {
            for k in 0..=nb {
                cv.hline(x0, x0 + side, top + k * cell, GRID, None);
                cv.vline(x0 + k * cell, top, top + side, GRID);
            }
        }
        // Frame.
        cv.hline(x0 - 1, x0 + side, top - 1, GREY, None);
        cv.hline(x0 - 1, x0 + side, top + side, GREY, None);
        cv.vline(x0 - 1, top - 1, top + side, GREY);
        cv.vline(x0 + side, top - 1, top + side, GREY);
    }
    cv.encode()
}

#[cfg(test)]
mod tests;
