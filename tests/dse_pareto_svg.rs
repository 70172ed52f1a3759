//! The Pareto front against brute force; the plots are well-formed SVG and
//! valid PNG, with integer ticks on integer axes and coinciding series named.

mod dse_common;
use bitmac::dse::pareto::{self, Objective};
use bitmac::plot::{self, Labels, Overlap, Plot, Series};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn pareto_front_matches_brute_force(pts in prop::collection::vec((0u8..6, 0u8..6, 0u8..6), 0..60)) {
        let c: Vec<Objective> = pts.iter().map(|(q, a, y)| Objective { quality: *q as f64, cost: *a as f64, cycles: *y as f64 }).collect();
        // Brute force: i is on the front iff no j is >= in quality, <= in
        // area and cycles, and differs somewhere.
        let brute: Vec<usize> = (0..c.len()).filter(|&i| {
            !(0..c.len()).any(|j| {
                let (p, q) = (&c[j], &c[i]);
                p.quality >= q.quality && p.cost <= q.cost && p.cycles <= q.cycles && (p.quality, p.cost, p.cycles) != (q.quality, q.cost, q.cycles)
            })
        }).collect();
        prop_assert_eq!(pareto::front(&c), brute);
    }
}

/// A minimal well-formedness check: every tag closes in order, attributes
/// are quoted, the root is <svg>, entities are the five XML ones.
fn check_xml(s: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = s;
    let mut root = None;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert!(!text.contains('>'), "stray > in text");
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)),
                "bad entity"
            );
        }
        let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched close");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-'),
            "bad tag {tag}"
        );
        assert_eq!(body.matches('"').count() % 2, 0, "unbalanced quotes in {tag}");
        if root.is_none() {
            root = Some(name.clone());
        } else {
            assert!(!stack.is_empty(), "second root element {name}");
        }
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(rest.trim().is_empty());
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(root.as_deref(), Some("svg"));
}

fn labels<'a>(title: &'a str, subtitle: &'a str) -> Labels<'a> {
    Labels { title, subtitle, x: "x", y: "y" }
}

fn check_png(png: &[u8]) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // IHDR: width and height, big-endian, right after the signature and
    // the chunk's length and type.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), plot::SIZE);
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
}

#[test]
fn plots_are_well_formed_svg_and_png() {
    let series = vec![
        Series { name: "RND <&> \"x\"".into(), points: vec![(1.0, 0.5), (2.0, 0.75), (3.0, 0.9)] },
        Series { name: "TRN".into(), points: vec![(1.0, -0.25)] },
    ];
    for (l, p) in [
        (labels("t & <t>", "sub"), Plot::Lines { series: &series }),
        (labels("empty", ""), Plot::Lines { series: &[] }),
        (labels("p", "s"), Plot::Scatter { all: &[(1.0, 2.0), (3.0, 4.0)], front: &[(3.0, 4.0)] }),
        (labels("h", "s"), Plot::Histogram { bins: &[(-2, 3), (0, 10), (5, 1)] }),
        (labels("h0", "s"), Plot::Histogram { bins: &[] }),
    ] {
        let r = plot::render(&l, &p).unwrap();
        check_xml(&r.svg);
        check_png(&r.png);
        // Deterministic: drawing again gives the same bytes.
        let again = plot::render(&l, &p).unwrap();
        assert!(r.svg == again.svg && r.png == again.png);
    }
    // And the files a real run writes.
    let d = dse_common::scratch("svg");
    let spec = d.join("spec.json");
    dse_common::write(&spec, &dse_common::small_spec());
    bitmac::dse::run(&dse_common::opts(&spec, &d.join("o"))).unwrap();
    for f in ["plot_quality", "plot_bias", "plot_pareto"] {
        check_xml(&std::fs::read_to_string(d.join("o").join(format!("{f}.svg"))).unwrap());
        check_png(&std::fs::read(d.join("o").join(format!("{f}.png"))).unwrap());
    }
}

#[test]
fn integer_axes_get_integer_ticks() {
    // A swept parameter: its own values are the ticks.
    let vals = [12.0, 13.0, 14.0, 15.0, 16.0, 18.0, 20.0, 24.0];
    let (t, d) = plot::ticks(11.5, 24.5, &vals);
    assert_eq!(t, vals.to_vec());
    assert_eq!(d, 0);
    // Many integer values: steps of at least 1, never fractional ticks
    // such as 3.8 ... 4.2.
    let many: Vec<f64> = (0..40).map(f64::from).collect();
    let (t, d) = plot::ticks(-1.0, 40.0, &many);
    assert!(t.len() >= 4 && t.len() <= 12, "{t:?}");
    assert!(t.iter().all(|v| v.fract() == 0.0), "{t:?}");
    assert_eq!(d, 0);
    // One integer value on a padded range: the value itself.
    let (t, _) = plot::ticks(3.8, 4.2, &[4.0]);
    assert_eq!(t, vec![4.0]);
    // A real-valued axis gets 1-2-5 steps with enough decimals.
    let (t, d) = plot::ticks(0.0, 1.0, &[0.13, 0.97]);
    assert!(t.len() >= 4 && t.len() <= 11, "{t:?}");
    assert!(d >= 1);
}

#[test]
fn coinciding_series_are_found() {
    let s = |n: &str, ys: &[f64]| Series {
        name: n.into(),
        points: ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect(),
    };
    let series = vec![
        s("A", &[0.0, 0.5, 1.0]),
        s("B", &[0.0, 0.5, 1.0]),
        s("C", &[0.001, 0.501, 1.0]),
        s("D", &[0.2, 0.5, 1.0]),
    ];
    assert_eq!(plot::coincident(&series), vec![None, Some(Overlap::Equal(0)), Some(Overlap::Near(0)), None]);
    let svg = plot::render(&labels("c", ""), &Plot::Lines { series: &series }).unwrap().svg;
    assert!(svg.contains("B (= A)") && svg.contains("C (≈ A)") && !svg.contains("D (≈"), "{svg}");
}
