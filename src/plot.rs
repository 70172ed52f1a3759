//! Plots: line plots, scatter plots with a highlighted front, and
//! histograms, each drawn once with `plotters` onto two backends, SVG and PNG.
//!
//! Why a module of its own: `dse`, `run` and `cdc` all plot, and a plot must
//! look the same whoever draws it. The rules a reader relies on:
//!
//! - **Coinciding series stay visible.** Every series has its own marker
//!   shape (and colour); a series whose points equal an earlier series' (same
//!   x, |Δy| ≤ 1e-9·max(1, |y|)) is drawn dashed on top of it and its legend
//!   entry names the series it coincides with (`RND_CONV (= RND)`); one
//!   within 1% of the y span everywhere is dashed too and marked
//!   `(≈ RND)`. Markers are drawn after all lines, so none hides one.
//! - **Ticks follow the axis type.** An axis whose values are all integers
//!   gets integer ticks only: the values themselves when there are at most
//!   16 distinct ones on the x axis of a line plot (a swept parameter such
//!   as accumulator bits), else (and always on a y axis and on both axes of
//!   a scatter, whose values are measurements) steps of 1, 2 or 5 × 10^k
//!   that are ≥ 1. A histogram ticks every bar position when at most 25
//!   fit its x axis. Other axes get 1, 2, 5 × 10^k steps, 4 to 10 ticks.
//! - **Deterministic bytes.** The font is the committed DejaVu Sans
//!   (`assets/fonts/`, Bitstream Vera licence), never a system font; the SVG
//!   is text from integer pixel coordinates; the PNG is 8-bit RGB, written by
//!   `png` with fixed settings. Same input, same bytes, on any machine.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (800, 500);
const LEGEND_W: u32 = 210;
const TITLE_H: u32 = 64;
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
];

/// One line of a line plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// (x, y) points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// A plot rendered both ways.
pub struct Rendered {
    pub svg: String,
    pub png: Vec<u8>,
}

/// Above this many points a scatter draws one background circle per
/// occupied pixel instead of one per point, so its size stays bounded.
pub const SCATTER_MAX_EXACT: usize = 100_000;

/// What to draw.
pub enum Plot<'a> {
    /// One polyline with markers per series, legend on the right.
    Lines { series: &'a [Series] },
    /// Every point in grey, the front's points in red.
    Scatter { all: &'a [(f64, f64)], front: &'a [(f64, f64)] },
    /// One bar per integer value: `(value, count)`.
    Histogram { bins: &'a [(i64, u64)] },
    /// A histogram whose bar at `mark` is drawn in red, with a legend
    /// naming both kinds of bar (`mark_name` for the red one).
    MarkedHistogram { bins: &'a [(i64, u64)], mark: i64, mark_name: &'a str, other_name: &'a str },
}

/// Titles and axis labels.
pub struct Labels<'a> {
    pub title: &'a str,
    /// Wrapped at "; " onto a second line when long.
    pub subtitle: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("plot: {e}"))
}

/// Draw `plot` as SVG and PNG.
pub fn render(labels: &Labels, plot: &Plot) -> Result<Rendered> {
    REGISTER.call_once(|| {
        // The bytes are a committed, valid TTF: failure is a build defect,
        // and text would silently vanish, so it is reported at draw time.
        let _ = register_font(FONT, FontStyle::Normal, FONT_BYTES);
        let _ = register_font(FONT, FontStyle::Bold, FONT_BYTES);
    });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, labels, plot)?;
        root.present().map_err(plot_err)?;
    }
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root, labels, plot)?;
        root.present().map_err(plot_err)?;
    }
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Default);
        enc.set_filter(png::FilterType::Sub);
        enc.set_adaptive_filter(png::AdaptiveFilterType::NonAdaptive);
        let mut wr = enc.write_header().map_err(plot_err)?;
        wr.write_image_data(&rgb).map_err(plot_err)?;
    }
    Ok(Rendered { svg, png })
}

/// Write `DIR/NAME.svg` and `DIR/NAME.png` atomically.
pub fn write(dir: &std::path::Path, name: &str, r: &Rendered) -> Result<()> {
    crate::io::write_atomic(&dir.join(format!("{name}.svg")), r.svg.as_bytes())?;
    crate::io::write_atomic(&dir.join(format!("{name}.png")), &r.png)
}

/// Ticks for an x axis over `[lo, hi]` whose data values are `vals` (see
/// the module doc); [`ticks_y`] for a y axis.
///
/// Returns the tick positions and the decimals to print them with.
pub fn ticks(lo: f64, hi: f64, vals: &[f64]) -> (Vec<f64>, usize) {
    ticks_of(lo, hi, vals, true)
}

/// Ticks for a y axis: as [`ticks`], but never the values themselves (a
/// y axis shows measurements, not swept parameters).
pub fn ticks_y(lo: f64, hi: f64, vals: &[f64]) -> (Vec<f64>, usize) {
    ticks_of(lo, hi, vals, false)
}

fn ticks_of(lo: f64, hi: f64, vals: &[f64], use_values: bool) -> (Vec<f64>, usize) {
    let integer = !vals.is_empty() && vals.iter().all(|v| v.is_finite() && v.fract() == 0.0);
    if integer && use_values {
        let mut d: Vec<f64> = vals.to_vec();
        d.sort_by(f64::total_cmp);
        d.dedup();
        if d.len() <= 16 {
            return (d, 0);
        }
    }
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() * step;
    let v: Vec<f64> =
        (0..100).map(|i| first + i as f64 * step).take_while(|t| *t <= hi + step * 1e-9).collect();
    let decimals = if integer || step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    (v, decimals)
}

/// The data range, padded by 4% (a degenerate range is widened).
fn range(vals: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.iter().filter(|v| v.is_finite()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 { lo.abs() * 0.05 } else { 1.0 };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * 0.04;
    (lo - pad, hi + pad)
}

/// How a series relates to an earlier one it lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Same x values, |Δy| ≤ 1e-9·max(1, |y|) everywhere.
    Equal(usize),
    /// Same x values, |Δy| ≤ 1% of the plot's y span everywhere: on screen
    /// the lines are within a couple of pixels.
    Near(usize),
}

/// For each series, the first earlier series it coincides with (exactly
/// first, else nearly), if any.
pub fn coincident(series: &[Series]) -> Vec<Option<Overlap>> {
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let (lo, hi) = range(&ys);
    let near_tol = 0.01 * (hi - lo);
    let close = |a: &Series, b: &Series, tol: &dyn Fn(f64, f64) -> f64| {
        a.points.len() == b.points.len()
            && a.points.iter().zip(&b.points).all(|(p, q)| p.0 == q.0 && (p.1 - q.1).abs() <= tol(p.1, q.1))
    };
    let exact = |p: f64, q: f64| 1e-9 * p.abs().max(q.abs()).max(1.0);
    let near = |_: f64, _: f64| near_tol;
    (0..series.len())
        .map(|i| {
            (0..i)
                .find(|&j| close(&series[i], &series[j], &exact))
                .map(Overlap::Equal)
                .or_else(|| (0..i).find(|&j| close(&series[i], &series[j], &near)).map(Overlap::Near))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, labels: &Labels, plot: &Plot) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (head, body) = root.split_vertically(TITLE_H);
    let (w, _) = SIZE;
    let cx = ((w - LEGEND_W) / 2) as i32;
    let title = (FONT, 18).into_font().style(FontStyle::Bold).color(&BLACK);
    let centre = |s: TextStyle<'static>| {
        s.pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ))
    };
    head.draw(&Text::new(labels.title.to_string(), (cx, 6), centre(title))).map_err(plot_err)?;
    let lines: Vec<&str> = if labels.subtitle.len() > 80 {
        labels.subtitle.splitn(2, "; ").collect()
    } else {
        vec![labels.subtitle]
    };
    for (i, line) in lines.iter().filter(|l| !l.is_empty()).enumerate() {
        let st = centre((FONT, 13).into_font().color(&RGBColor(0x44, 0x44, 0x44)));
        head.draw(&Text::new(line.to_string(), (cx, 30 + 15 * i as i32), st)).map_err(plot_err)?;
    }
    let (area, legend) = body.split_horizontally(w - LEGEND_W);
    match plot {
        Plot::Lines { series } => lines_plot(&area, &legend, labels, series),
        Plot::Scatter { all, front } => scatter_plot(&area, &legend, labels, all, front),
        Plot::Histogram { bins } => histogram_plot(&area, labels, bins, None),
        Plot::MarkedHistogram { bins, mark, mark_name, other_name } => {
            histogram_plot(&area, labels, bins, Some((*mark, mark_name, other_name)))?;
            let font = (FONT, 13).into_font().color(&BLACK);
            for (i, (color, name)) in [(COLORS[1], *mark_name), (COLORS[0], *other_name)].iter().enumerate() {
                let y = 16 + 22 * i as i32;
                legend.draw(&Rectangle::new([(10, y - 6), (30, y + 6)], color.filled())).map_err(plot_err)?;
                legend.draw(&Text::new(name.to_string(), (38, y - 7), font.clone())).map_err(plot_err)?;
            }
            Ok(())
        }
    }
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    labels: &Labels,
    (x0, x1): (f64, f64),
    xs: &[f64],
    (y0, y1): (f64, f64),
    ys: &[f64],
    x_ticks: Option<(Vec<f64>, usize)>,
) -> Result<Chart<'a, DB>> {
    let (xt, xd) = x_ticks.unwrap_or_else(|| ticks(x0, x1, xs));
    let (yt, yd) = ticks_y(y0, y1, ys);
    let mut c = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(44)
        .y_label_area_size(68)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    let font = (FONT, 13).into_font();
    let desc = (FONT, 15).into_font();
    c.configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .axis_desc_style(desc)
        .draw()
        .map_err(plot_err)?;
    // Grid lines and labels at exactly the chosen ticks (plotters' own
    // tick choice knows nothing of integer axes).
    let grid = RGBColor(0xe5, 0xe5, 0xe5);
    for x in &xt {
        c.draw_series(std::iter::once(PathElement::new(vec![(*x, y0), (*x, y1)], grid))).map_err(plot_err)?;
    }
    for y in &yt {
        c.draw_series(std::iter::once(PathElement::new(vec![(x0, *y), (x1, *y)], grid))).map_err(plot_err)?;
    }
    let pos = |h, v| plotters::style::text_anchor::Pos::new(h, v);
    use plotters::style::text_anchor::{HPos, VPos};
    let xf = font.clone().color(&BLACK).pos(pos(HPos::Center, VPos::Top));
    let yf = font.color(&BLACK).pos(pos(HPos::Right, VPos::Center));
    let plotting = c.plotting_area().clone();
    let base = area.get_base_pixel();
    for x in &xt {
        let (px, py) = plotting.map_coordinate(&(*x, y0));
        area.draw(&Text::new(format!("{x:.xd$}"), (px - base.0, py - base.1 + 6), xf.clone()))
            .map_err(plot_err)?;
    }
    for y in &yt {
        let (px, py) = plotting.map_coordinate(&(x0, *y));
        area.draw(&Text::new(format!("{y:.yd$}"), (px - base.0 - 6, py - base.1), yf.clone()))
            .map_err(plot_err)?;
    }
    c.draw_series(std::iter::once(Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1))))
        .map_err(plot_err)?;
    Ok(c)
}

/// Draw marker `kind` (0..8) of `color` centred on backend point `at`.
fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    kind: usize,
    color: RGBColor,
) -> Result<()> {
    let (x, y) = at;
    let s = color.stroke_width(2);
    let r = match kind % 8 {
        0 => area.draw(&Circle::new((x, y), 4, color.filled())),
        1 => area.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], s)),
        2 => area
            .draw(&Polygon::new(vec![(x, y - 7), (x + 6, y + 4), (x - 6, y + 4)], color.mix(0.0)))
            .and_then(|_| {
                area.draw(&PathElement::new(vec![(x, y - 7), (x + 6, y + 4), (x - 6, y + 4), (x, y - 7)], s))
            }),
        3 => {
            area.draw(&PathElement::new(vec![(x, y - 7), (x + 7, y), (x, y + 7), (x - 7, y), (x, y - 7)], s))
        }
        4 => area
            .draw(&PathElement::new(vec![(x - 6, y - 6), (x + 6, y + 6)], s))
            .and_then(|_| area.draw(&PathElement::new(vec![(x - 6, y + 6), (x + 6, y - 6)], s))),
        5 => area.draw(&Circle::new((x, y), 8, s)),
        6 => area
            .draw(&PathElement::new(vec![(x - 7, y), (x + 7, y)], s))
            .and_then(|_| area.draw(&PathElement::new(vec![(x, y - 7), (x, y + 7)], s))),
        _ => area.draw(&PathElement::new(vec![(x, y + 7), (x + 6, y - 4), (x - 6, y - 4), (x, y + 7)], s)),
    };
    r.map_err(plot_err)
}

/// A line from `a` to `b` in backend pixels, dashed with `dash` (on, off)
/// pixels when given.
fn segment<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
    dash: Option<(f64, f64)>,
    style: ShapeStyle,
) -> Result<()> {
    let Some((on, off)) = dash else {
        return area.draw(&PathElement::new(vec![a, b], style)).map_err(plot_err);
    };
    let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
    let len = (dx * dx + dy * dy).sqrt();
    let mut t = 0.0;
    while t < len {
        let e = (t + on).min(len);
        let p =
            |u: f64| ((a.0 as f64 + dx * u / len).round() as i32, (a.1 as f64 + dy * u / len).round() as i32);
        area.draw(&PathElement::new(vec![p(t), p(e)], style)).map_err(plot_err)?;
        t += on + off;
    }
    Ok(())
}

fn lines_plot<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
    labels: &Labels,
    series: &[Series],
) -> Result<()> {
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let c = chart(area, labels, range(&xs), &xs, range(&ys), &ys, None)?;
    let same = coincident(series);
    let plotting = c.plotting_area().clone();
    let base = area.get_base_pixel();
    let to_px = |p: &(f64, f64)| {
        let (x, y) = plotting.map_coordinate(p);
        (x - base.0, y - base.1)
    };
    // Dash patterns for coinciding series, so each shows through the one
    // it lies on.
    let dash = |i: usize| same[i].map(|_| (6.0 + 2.0 * (i % 3) as f64, 6.0 + 2.0 * (i % 4) as f64));
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let px: Vec<(i32, i32)> = s.points.iter().map(to_px).collect();
        for w in px.windows(2) {
            segment(area, w[0], w[1], dash(i), color.stroke_width(2))?;
        }
    }
    for (i, s) in series.iter().enumerate() {
        for p in &s.points {
            marker(area, to_px(p), i, COLORS[i % COLORS.len()])?;
        }
    }
    if series.is_empty() {
        let st = (FONT, 15).into_font().color(&BLACK);
        area.draw(&Text::new("no data", (300, 200), st)).map_err(plot_err)?;
    }
    let font = (FONT, 13).into_font().color(&BLACK);
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let y = 16 + 22 * i as i32;
        segment(legend, (6, y), (40, y), dash(i), color.stroke_width(2))?;
        marker(legend, (23, y), i, color)?;
        let name = match same[i] {
            Some(Overlap::Equal(j)) => format!("{} (= {})", s.name, series[j].name),
            Some(Overlap::Near(j)) => format!("{} (≈ {})", s.name, series[j].name),
            None => s.name.clone(),
        };
        legend.draw(&Text::new(name, (48, y - 7), font.clone())).map_err(plot_err)?;
    }
    Ok(())
}

fn scatter_plot<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
    labels: &Labels,
    all: &[(f64, f64)],
    front: &[(f64, f64)],
) -> Result<()> {
    let xs: Vec<f64> = all.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = all.iter().map(|p| p.1).collect();
    // Both axes of a scatter are measurements (cycles, energy, area), not
    // swept parameters: step ticks, never the values themselves (which
    // crowd when two measured values lie close together).
    let (x0, x1) = range(&xs);
    let x_ticks = Some(ticks_y(x0, x1, &xs));
    let mut c = chart(area, labels, (x0, x1), &xs, range(&ys), &ys, x_ticks)?;
    let grey = RGBColor(0x9a, 0x9a, 0x9a);
    if all.len() <= SCATTER_MAX_EXACT {
        c.draw_series(all.iter().map(|p| Circle::new(*p, 3, grey.mix(0.6).filled()))).map_err(plot_err)?;
    } else {
        // Bounded output for huge sweeps: one circle per occupied pixel
        // (plotters' own mapping to whole pixels), in first-seen order.
        let plotting = c.plotting_area().clone();
        let mut seen = std::collections::BTreeSet::new();
        let firsts = all.iter().filter(|p| seen.insert(plotting.map_coordinate(p)));
        c.draw_series(firsts.map(|p| Circle::new(*p, 3, grey.mix(0.6).filled()))).map_err(plot_err)?;
    }
    let red = COLORS[1];
    c.draw_series(front.iter().map(|p| Circle::new(*p, 5, red.filled()))).map_err(plot_err)?;
    let font = (FONT, 13).into_font().color(&BLACK);
    legend.draw(&Circle::new((20, 16), 3, grey.filled())).map_err(plot_err)?;
    legend
        .draw(&Text::new(format!("all points ({})", all.len()), (34, 9), font.clone()))
        .map_err(plot_err)?;
    legend.draw(&Circle::new((20, 38), 5, red.filled())).map_err(plot_err)?;
    legend.draw(&Text::new(format!("Pareto front ({})", front.len()), (34, 31), font)).map_err(plot_err)?;
    Ok(())
}

fn histogram_plot<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &Labels,
    bins: &[(i64, u64)],
    mark: Option<(i64, &str, &str)>,
) -> Result<()> {
    // Bars span value ± 0.4; the range covers the bar edges, the ticks
    // are the integer values themselves.
    let xs: Vec<f64> = bins.iter().map(|b| b.0 as f64).collect();
    let ys: Vec<f64> = bins.iter().map(|b| b.1 as f64).collect();
    let edges: Vec<f64> = xs.iter().flat_map(|x| [x - 0.5, x + 0.5]).collect();
    let (_, y1) = range(&ys);
    // At least 8 values wide, so that one or two bars stay bars and do
    // not fill the plot.
    let (mut x0, mut x1) = range(&edges);
    if x1 - x0 < 8.0 {
        let mid = (x0 + x1) / 2.0;
        (x0, x1) = (mid - 4.0, mid + 4.0);
        // Counts of non-negative values (occupancy, latency) keep a
        // non-negative axis.
        if bins.iter().all(|b| b.0 >= 0) && x0 < -0.5 {
            (x0, x1) = (-0.5, 7.5);
        }
    }
    // A tick under every bar position when at most 25 values fit the
    // axis (a reader counts bins, e.g. residues -8..=8), else the usual
    // integer steps.
    let every =
        ((x0 + 0.5).ceil() as i64..=(x1 - 0.5).floor() as i64).map(|v| v as f64).collect::<Vec<f64>>();
    let x_ticks = (every.len() <= 25).then_some((every, 0));
    let mut c = chart(area, labels, (x0, x1), &xs, (0.0, y1.max(1.0)), &ys, x_ticks)?;
    let blue = COLORS[0];
    let marked = mark.map(|m| m.0);
    c.draw_series(bins.iter().map(|(v, n)| {
        let color = if Some(*v) == marked { COLORS[1] } else { blue };
        let v = *v as f64;
        Rectangle::new([(v - 0.4, 0.0), (v + 0.4, *n as f64)], color.filled())
    }))
    .map_err(plot_err)?;
    Ok(())
}

/// The psum residue histogram (`Stats::psum_residues`) as a plot: one bar
/// per residue offset from the rounding centre (−8..=8; the bar at 0 counts
/// ties); residues further away are counted in the subtitle.
pub fn residue_histogram(h: &crate::array::ResidueHistogram, what: &str) -> Result<Rendered> {
    let half = crate::array::stats::HIST_HALF;
    let bins: Vec<(i64, u64)> = h.bins.iter().enumerate().map(|(i, &c)| (i as i64 - half, c)).collect();
    let sub = format!("{what}; further below the window: {}, above: {}", h.below, h.above);
    let labels = Labels {
        title: "partial-sum residues around the rounding centre",
        subtitle: &sub,
        x: "residue - centre (input LSBs; 0 = tie)",
        y: "roundings",
    };
    render(
        &labels,
        &Plot::MarkedHistogram {
            bins: &bins,
            mark: 0,
            mark_name: "ties (at the centre)",
            other_name: "other residues",
        },
    )
}

/// A histogram stored as counts per value `0..len` (FIFO occupancy,
/// latencies), with the values that never occur left out at both ends.
pub fn count_histogram(counts: &[u64], title: &str, subtitle: &str, x: &str, y: &str) -> Result<Rendered> {
    let first = counts.iter().position(|&c| c > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    let bins: Vec<(i64, u64)> = (first..last).map(|i| (i as i64, counts[i])).collect();
    render(&Labels { title, subtitle, x, y }, &Plot::Histogram { bins: &bins })
}

/// One plot of a report, with the counts it draws (so a reader, or a test,
/// can check the bars against the numbers).
pub struct Named {
    /// File name without extension.
    pub name: String,
    /// `(bin, count)` in drawing order; residue plots add `below` and
    /// `above` (the counts outside the window).
    pub rows: Vec<(String, u64)>,
    pub rendered: Rendered,
}

/// A layer name as a file-name part: ASCII letters, digits, `-` and `_`
/// kept, anything else `_`.
fn file_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The histograms of a `bitmac run` report (`bitmac run --plot DIR`,
/// docs/plots.md): per layer `psum_residues_LLL_NAME` (the psum residues
/// around the rounding centre, summed over the run), and with a `cdc`
/// section `fifo_in_occupancy`, `fifo_out_occupancy`, `fifo_in_latency`,
/// `fifo_out_latency`. Every count is an exact integer merged in sample
/// order, so the bytes do not depend on the thread count.
pub fn run_plots(r: &crate::sim::RunReport, hw: &crate::hw::HwConfig) -> Result<Vec<Named>> {
    let p = hw.psum();
    let mut out = Vec::new();
    for (i, l) in r.layers.iter().enumerate() {
        let st = &l.stats;
        let what = format!(
            "layer {} ({}), {} samples; d = {}, {} offset {}, {} roundings",
            l.name, l.kind, r.samples, st.psum_drop_bits, p.rounding, p.offset, st.psum_rounded
        );
        let h = &st.psum_residues;
        let half = crate::array::stats::HIST_HALF;
        let mut rows: Vec<(String, u64)> =
            h.bins.iter().enumerate().map(|(b, &c)| ((b as i64 - half).to_string(), c)).collect();
        rows.push(("below".into(), h.below));
        rows.push(("above".into(), h.above));
        out.push(Named {
            name: format!("psum_residues_{i:03}_{}", file_part(&l.name)),
            rows,
            rendered: residue_histogram(h, &what)?,
        });
    }
    if let (Some(c), Some(cc)) = (&r.cdc, hw.cdc()) {
        let sub = format!(
            "{} inferences, {} words in, {} out; depth {}, sync {}, array {} ps, host {} ps",
            c.batches,
            c.words_in,
            c.words_out,
            cc.fifo_depth,
            cc.sync_stages,
            hw.clock_period_ps(),
            cc.host_period_ps
        );
        for (name, counts, title, x, y) in [
            (
                "fifo_in_occupancy",
                &c.in_occupancy,
                "input FIFO occupancy (host -> array)",
                "unread words after the edge",
                "edges",
            ),
            (
                "fifo_out_occupancy",
                &c.out_occupancy,
                "output FIFO occupancy (array -> host)",
                "unread words after the edge",
                "edges",
            ),
            ("fifo_in_latency", &c.in_latency, "input FIFO latency push -> pop", "array read edges", "words"),
            (
                "fifo_out_latency",
                &c.out_latency,
                "output FIFO latency push -> pop",
                "host read edges",
                "words",
            ),
        ] {
            let rows = counts.iter().enumerate().map(|(k, &n)| (k.to_string(), n)).collect();
            out.push(Named {
                name: name.to_string(),
                rows,
                rendered: count_histogram(counts, title, &sub, x, y)?,
            });
        }
    }
    Ok(out)
}

/// Write every plot as `DIR/NAME.svg` and `.png` and their counts as
/// `DIR/histograms.csv` (`plot,bin,count`, one row per bin), creating DIR.
pub fn write_named(dir: &std::path::Path, plots: &[Named]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
    let mut csv = String::from("plot,bin,count\n");
    for p in plots {
        write(dir, &p.name, &p.rendered)?;
        for (b, c) in &p.rows {
            csv.push_str(&format!("{},{b},{c}\n", p.name));
        }
    }
    crate::io::write_atomic(&dir.join("histograms.csv"), csv.as_bytes())
}
