//! Hand-written SVG plots (no dependencies): line plots with a legend and a
//! Pareto scatter. Output is deterministic text (numbers printed with fixed
//! precision).

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 480.0;
const L: f64 = 80.0; // left margin
const R: f64 = 190.0; // right margin (legend)
const T: f64 = 68.0; // top margin (title and two subtitle lines)
const B: f64 = 56.0; // bottom margin

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
    "#bcbd22",
];

/// One line of a line plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// (x, y) points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// Escape text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// "Nice" ticks covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, usize) {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut v = Vec::new();
    let mut i = 0;
    while first + i as f64 * step <= hi + step * 1e-9 && i < 100 {
        v.push(first + i as f64 * step);
        i += 1;
    }
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    (v, decimals)
}

/// Expand a degenerate range.
fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
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

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        L + (x - self.x0) / (self.x1 - self.x0) * (W - L - R)
    }
    fn py(&self, y: f64) -> f64 {
        H - B - (y - self.y0) / (self.y1 - self.y0) * (H - T - B)
    }
}

fn header(s: &mut String, title: &str, subtitle: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="17" text-anchor="middle" font-weight="bold">{}</text>"#,
        (W - R + L) / 2.0,
        esc(title)
    );
    // The subtitle wraps at "; " onto a second line when long.
    let lines: Vec<&str> =
        if subtitle.len() > 80 { subtitle.splitn(2, "; ").collect() } else { vec![subtitle] };
    for (i, line) in lines.iter().filter(|l| !l.is_empty()).enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#444">{}</text>"##,
            (W - R + L) / 2.0,
            42.0 + 14.0 * i as f64,
            esc(line)
        );
    }
}

fn axes(s: &mut String, f: &Frame, xlabel: &str, ylabel: &str) {
    let (xt, xd) = ticks(f.x0, f.x1);
    let (yt, yd) = ticks(f.y0, f.y1);
    // Grid and tick labels.
    for x in &xt {
        let p = f.px(*x);
        let _ = writeln!(
            s,
            r##"<line x1="{p:.2}" y1="{:.2}" x2="{p:.2}" y2="{:.2}" stroke="#e5e5e5"/>"##,
            T,
            H - B
        );
        let _ = writeln!(
            s,
            r#"<text x="{p:.2}" y="{:.2}" font-size="12" text-anchor="middle">{x:.xd$}</text>"#,
            H - B + 18.0
        );
    }
    for y in &yt {
        let p = f.py(*y);
        let _ = writeln!(
            s,
            r##"<line x1="{L:.2}" y1="{p:.2}" x2="{:.2}" y2="{p:.2}" stroke="#e5e5e5"/>"##,
            W - R
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}" font-size="12" text-anchor="end">{y:.yd$}</text>"#,
            L - 6.0,
            p + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        W - L - R,
        H - T - B
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" font-size="14" text-anchor="middle">{}</text>"#,
        (W - R + L) / 2.0,
        H - 14.0,
        esc(xlabel)
    );
    let cy = (H - B + T) / 2.0;
    let _ = writeln!(
        s,
        r#"<text x="18" y="{cy:.2}" font-size="14" text-anchor="middle" transform="rotate(-90 18 {cy:.2})">{}</text>"#,
        esc(ylabel)
    );
}

/// A line plot, one polyline with markers per series, and a legend.
pub fn line_plot(title: &str, subtitle: &str, xlabel: &str, ylabel: &str, series: &[Series]) -> String {
    let mut s = String::new();
    header(&mut s, title, subtitle);
    let all = || series.iter().flat_map(|se| se.points.iter());
    let (x0, x1) = range(all().map(|p| p.0));
    let (y0, y1) = range(all().map(|p| p.1));
    let f = Frame { x0, x1, y0, y1 };
    axes(&mut s, &f, xlabel, ylabel);
    for (i, se) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = if i >= COLORS.len() { r#" stroke-dasharray="6 3""# } else { "" };
        let pts: Vec<String> =
            se.points.iter().map(|(x, y)| format!("{:.2},{:.2}", f.px(*x), f.py(*y))).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            pts.join(" ")
        );
        for (x, y) in &se.points {
            let _ =
                writeln!(s, r#"<circle cx="{:.2}" cy="{:.2}" r="3" fill="{color}"/>"#, f.px(*x), f.py(*y));
        }
        let ly = T + 10.0 + i as f64 * 20.0;
        let lx = W - R + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.2}" y1="{ly:.2}" x2="{:.2}" y2="{ly:.2}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 24.0
        );
        let _ = writeln!(s, r#"<circle cx="{:.2}" cy="{ly:.2}" r="3" fill="{color}"/>"#, lx + 12.0);
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}" font-size="12">{}</text>"#,
            lx + 30.0,
            ly + 4.0,
            esc(&se.name)
        );
    }
    if series.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}" font-size="14" text-anchor="middle">no data</text>"#,
            (W - R + L) / 2.0,
            (H - B + T) / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Above this many points the Pareto plot draws one background circle per
/// occupied pixel instead of one per point (its size stays bounded).
pub const PARETO_PLOT_MAX_EXACT: usize = 100_000;

/// A scatter of every candidate (grey) with the front highlighted (red).
pub fn pareto_plot(
    title: &str,
    subtitle: &str,
    xlabel: &str,
    ylabel: &str,
    all: &[(f64, f64)],
    front: &[(f64, f64)],
) -> String {
    let mut s = String::new();
    header(&mut s, title, subtitle);
    let (x0, x1) = range(all.iter().map(|p| p.0));
    let (y0, y1) = range(all.iter().map(|p| p.1));
    let f = Frame { x0, x1, y0, y1 };
    axes(&mut s, &f, xlabel, ylabel);
    if all.len() <= PARETO_PLOT_MAX_EXACT {
        for (x, y) in all {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.2}" cy="{:.2}" r="2.5" fill="#9a9a9a" fill-opacity="0.6"/>"##,
                f.px(*x),
                f.py(*y)
            );
        }
    } else {
        // Bounded output for huge sweeps: one circle per occupied whole
        // pixel (centre rounded half away from zero), in first-seen order.
        let mut seen = std::collections::BTreeSet::new();
        for (x, y) in all {
            let (px, py) = (f.px(*x).round(), f.py(*y).round());
            if seen.insert((px as i64, py as i64)) {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{px:.0}" cy="{py:.0}" r="2.5" fill="#9a9a9a" fill-opacity="0.6"/>"##
                );
            }
        }
    }
    let mut fr = front.to_vec();
    fr.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // No connecting line: the front is three-dimensional (cycles too), so
    // in this projection its points need not be monotone.
    for (x, y) in &fr {
        let _ = writeln!(s, r##"<circle cx="{:.2}" cy="{:.2}" r="4" fill="#d62728"/>"##, f.px(*x), f.py(*y));
    }
    let lx = W - R + 14.0;
    let _ = writeln!(s, r##"<circle cx="{:.2}" cy="{:.2}" r="3" fill="#9a9a9a"/>"##, lx + 12.0, T + 10.0);
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" font-size="12">all points ({})</text>"#,
        lx + 30.0,
        T + 14.0,
        all.len()
    );
    let _ = writeln!(s, r##"<circle cx="{:.2}" cy="{:.2}" r="4" fill="#d62728"/>"##, lx + 12.0, T + 30.0);
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" font-size="12">Pareto front ({})</text>"#,
        lx + 30.0,
        T + 34.0,
        front.len()
    );
    s.push_str("</svg>\n");
    s
}
