//! The Pareto front of (quality up, cost down, cycles down); the cost is
//! the area proxy or the energy (`plots.pareto_cost`).

/// One candidate: maximize `quality`, minimize `cost` and `cycles`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    pub quality: f64,
    pub cost: f64,
    pub cycles: f64,
}

impl Objective {
    /// True when `self` dominates `o`: no worse in every objective and
    /// strictly better in at least one. Equal candidates do not dominate
    /// each other (both stay on the front).
    pub fn dominates(&self, o: &Objective) -> bool {
        let no_worse = self.quality >= o.quality && self.cost <= o.cost && self.cycles <= o.cycles;
        let better = self.quality > o.quality || self.cost < o.cost || self.cycles < o.cycles;
        no_worse && better
    }
}

/// Indices (ascending) of the non-dominated candidates. NaN objectives never
/// reach here (qualities are finite by construction).
///
/// Sort by (quality desc, cost asc, cycles asc): a candidate can only be
/// dominated by one sorted before it, and if it is dominated at all it is
/// dominated by a front member (dominance is transitive), so each candidate
/// is checked against the front found so far.
pub fn front(c: &[Objective]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&i, &j| {
        c[j].quality
            .total_cmp(&c[i].quality)
            .then(c[i].cost.total_cmp(&c[j].cost))
            .then(c[i].cycles.total_cmp(&c[j].cycles))
            .then(i.cmp(&j))
    });
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if !front.iter().any(|&f| c[f].dominates(&c[i])) {
            front.push(i);
        }
    }
    front.sort_unstable();
    front
}
