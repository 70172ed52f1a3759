//! The Pareto front against brute force; the SVG plots are well-formed XML.

mod dse_common;
use bitmac::dse::pareto::{self, Objective};
use bitmac::dse::svg;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn pareto_front_matches_brute_force(pts in prop::collection::vec((0u8..6, 0u8..6, 0u8..6), 0..60)) {
        let c: Vec<Objective> = pts.iter().map(|(q, a, y)| Objective { quality: *q as f64, area: *a as f64, cycles: *y as f64 }).collect();
        // Brute force: i is on the front iff no j is >= in quality, <= in
        // area and cycles, and differs somewhere.
        let brute: Vec<usize> = (0..c.len()).filter(|&i| {
            !(0..c.len()).any(|j| {
                let (p, q) = (&c[j], &c[i]);
                p.quality >= q.quality && p.area <= q.area && p.cycles <= q.cycles && (p.quality, p.area, p.cycles) != (q.quality, q.area, q.cycles)
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

#[test]
fn plots_are_well_formed_svg() {
    let series = vec![
        svg::Series { name: "RND <&> \"x\"".into(), points: vec![(1.0, 0.5), (2.0, 0.75), (3.0, 0.9)] },
        svg::Series { name: "TRN".into(), points: vec![(1.0, -0.25)] },
    ];
    check_xml(&svg::line_plot("t & <t>", "sub", "x", "y", &series));
    check_xml(&svg::line_plot("empty", "", "x", "y", &[]));
    check_xml(&svg::pareto_plot("p", "s", "area", "q", &[(1.0, 2.0), (3.0, 4.0)], &[(3.0, 4.0)]));
    // And the files a real run writes.
    let d = dse_common::scratch("svg");
    let spec = d.join("spec.json");
    dse_common::write(&spec, &dse_common::small_spec());
    bitmac::dse::run(&dse_common::opts(&spec, &d.join("o"))).unwrap();
    for f in ["plot_quality.svg", "plot_bias.svg", "plot_pareto.svg"] {
        check_xml(&std::fs::read_to_string(d.join("o").join(f)).unwrap());
    }
}
