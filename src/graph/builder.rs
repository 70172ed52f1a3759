//! The validating graph builder: every node is checked as it is added
//! (input tensors exist and precede it, shapes inferred and checked, weight
//! and bias lengths, activation bounds, accumulator magnitude), with errors
//! that name the node (index, name, op) and the tensor.

use super::*;
use std::collections::BTreeSet;

/// Largest worst-case |accumulator + bias| of an array node (2^62): every
/// accumulator of the exact reference then fits `i64` with headroom.
pub const MAX_ACC_MAGNITUDE: i128 = 1 << 62;

/// Builds a [`Graph`] node by node (see the module doc of `graph`).
#[derive(Debug, Default)]
pub struct GraphBuilder {
    name: String,
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    input: Option<TensorId>,
    names: BTreeSet<String>,
}

fn shape_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder { name: name.to_string(), ..GraphBuilder::default() }
    }

    /// The tensor `t` (for producers that need shapes while building).
    pub fn tensor(&self, t: TensorId) -> Result<&TensorInfo> {
        self.tensors
            .get(t.0)
            .ok_or_else(|| Error::field("tensor id", t.0, format!("0..{}", self.tensors.len())))
    }

    fn new_tensor(&mut self, name: &str, shape: Vec<usize>, quant: Quant) -> Result<TensorId> {
        if !self.names.insert(name.to_string()) {
            return Err(Error::input(format!("tensor {name:?}: the name is used twice")));
        }
        self.tensors.push(TensorInfo { name: name.to_string(), shape, quant });
        Ok(TensorId(self.tensors.len() - 1))
    }

    /// Declare the graph input (exactly once): per-sample shape and its
    /// quantization (per-tensor scale).
    pub fn input(&mut self, name: &str, shape: Vec<usize>, quant: Quant) -> Result<TensorId> {
        let ctx = |e: Error| e.context(format!("input {name:?}"));
        if self.input.is_some() {
            return Err(ctx(Error::input("the graph already has an input")));
        }
        check_activation_shape(&shape).map_err(ctx)?;
        check_activation_quant(&quant).map_err(ctx)?;
        let t = self.new_tensor(name, shape, quant).map_err(ctx)?;
        self.input = Some(t);
        Ok(t)
    }

    /// Add a node computing `op` on `inputs`; its output tensor is named
    /// like the node. `out_quant` is the output quantization: required for
    /// requantizing ops (conv, dense, add, concat), `None` for array nodes
    /// in [`RequantMode::Accumulator`] (computed) and for the ops whose
    /// output quantization is their input's (pools, relu, clip, flatten,
    /// reshape; if given it must be equal). Returns the output tensor.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[TensorId],
        out_quant: Option<Quant>,
    ) -> Result<TensorId> {
        let idx = self.nodes.len();
        let kind = op.kind();
        let ctx = |e: Error| e.context(format!("node {idx} ({name}, {kind})"));
        let (shape, quant) = self.infer(&op, inputs, out_quant).map_err(ctx)?;
        if shape_len(&shape).is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(ctx(Error::field(
                "output elements",
                format!("{shape:?}"),
                format!("<= {MAX_ELEMENTS}"),
            )));
        }
        let out = self.new_tensor(name, shape, quant).map_err(ctx)?;
        self.nodes.push(Node { name: name.to_string(), op, inputs: inputs.to_vec(), output: out });
        Ok(out)
    }

    /// Finish: `output` becomes the graph output. Every tensor except the
    /// output must be consumed by some node or be the output; accumulator
    /// tensors may only be the output.
    pub fn finish(self, output: TensorId) -> Result<Graph> {
        let input =
            self.input.ok_or_else(|| Error::input(format!("graph {:?}: no input declared", self.name)))?;
        if self.nodes.is_empty() {
            return Err(Error::input(format!("graph {:?}: no nodes", self.name)));
        }
        if output.0 >= self.tensors.len() || output == input {
            return Err(Error::input(format!(
                "graph {:?}: the output must be a node's output tensor (got tensor id {})",
                self.name, output.0
            )));
        }
        Ok(Graph { name: self.name, tensors: self.tensors, nodes: self.nodes, input, output })
    }

    fn get(&self, inputs: &[TensorId], i: usize) -> Result<&TensorInfo> {
        let t = inputs[i];
        let info = self.tensors.get(t.0).ok_or_else(|| {
            Error::input(format!(
                "input {i}: tensor id {} does not exist (defined so far: {})",
                t.0,
                self.tensors.len()
            ))
        })?;
        if info.quant.is_accumulator() {
            return Err(Error::input(format!(
                "input {i} ({}): an accumulator tensor (requant accumulator) cannot feed another node",
                info.name
            )));
        }
        Ok(info)
    }

    fn arity(inputs: &[TensorId], n: usize) -> Result<()> {
        if inputs.len() != n {
            return Err(Error::field("inputs", inputs.len(), n));
        }
        Ok(())
    }

    fn infer(&self, op: &Op, inputs: &[TensorId], out_quant: Option<Quant>) -> Result<(Vec<usize>, Quant)> {
        match op {
            Op::Conv2d(c) => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                let [ch, h, w] = chw(x)?;
                let ws = c.weight.shape();
                if ws.len() != 4 {
                    return Err(Error::field("weight.shape", format!("{ws:?}"), "[O, C/groups, KH, KW]"));
                }
                let g = c.groups;
                let o = ws[0];
                if g == 0 || ch % g != 0 || o % g != 0 {
                    return Err(Error::field(
                        "groups",
                        g,
                        format!("a divisor of the input channels ({ch}) and output channels ({o})"),
                    ));
                }
                if ws[1] != ch / g {
                    return Err(Error::field(
                        "weight.shape[1]",
                        ws[1],
                        format!("C/groups = {}/{g} = {} (input {})", ch, ch / g, x.name),
                    ));
                }
                let win =
                    Window { kernel: [ws[2], ws[3]], stride: c.stride, pads: c.pads, dilation: c.dilation };
                let (oh, ow) = win.out_hw(h, w)?;
                check_weight_scale(c.weight.quant(), o)?;
                check_bias(&c.bias, o)?;
                let k = (ch / g) * ws[2] * ws[3];
                check_acc_range(&x.quant, &c.weight, &c.bias, k)?;
                let q = self.array_out(&x.quant, c.weight.quant(), c.requant, c.act, out_quant)?;
                Ok((vec![o, oh, ow], q))
            }
            Op::Dense(d) => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                let ws = d.weight.shape();
                if ws.len() != 2 || ws[0] != x.len() {
                    return Err(Error::field(
                        "weight.shape",
                        format!("{ws:?}"),
                        format!(
                            "[K, N] with K = {} (the elements of input {} {:?})",
                            x.len(),
                            x.name,
                            x.shape
                        ),
                    ));
                }
                let n = ws[1];
                check_weight_scale(d.weight.quant(), n)?;
                check_bias(&d.bias, n)?;
                check_acc_range(&x.quant, &d.weight, &d.bias, ws[0])?;
                let q = self.array_out(&x.quant, d.weight.quant(), d.requant, d.act, out_quant)?;
                Ok((vec![n], q))
            }
            Op::Add { act, requant } => {
                Self::arity(inputs, 2)?;
                let (a, b) = (self.get(inputs, 0)?, self.get(inputs, 1)?);
                if a.shape != b.shape {
                    return Err(Error::input(format!(
                        "input shapes differ: {} {:?} and {} {:?} (no broadcasting)",
                        a.name, a.shape, b.name, b.shape
                    )));
                }
                let q = requant_out(*requant, out_quant)?;
                check_act(*act, &q)?;
                Ok((a.shape.clone(), q))
            }
            Op::Concat { axis, requant } => {
                if inputs.is_empty() {
                    return Err(Error::field("inputs", 0, ">= 1"));
                }
                let first = self.get(inputs, 0)?.shape.clone();
                if *axis >= first.len() {
                    return Err(Error::field(
                        "axis",
                        axis,
                        format!("0..{} (the per-sample rank)", first.len()),
                    ));
                }
                let mut shape = first.clone();
                shape[*axis] = 0;
                for i in 0..inputs.len() {
                    let t = self.get(inputs, i)?;
                    let same_rank = t.shape.len() == first.len();
                    let others_equal = same_rank
                        && t.shape.iter().zip(&first).enumerate().all(|(d, (a, b))| d == *axis || a == b);
                    if !others_equal {
                        return Err(Error::input(format!(
                            "input {i} ({}) has shape {:?}; it must equal {:?} except along axis {axis}",
                            t.name, t.shape, first
                        )));
                    }
                    shape[*axis] += t.shape[*axis];
                }
                let q = requant_out(*requant, out_quant)?;
                Ok((shape, q))
            }
            Op::MaxPool(win) | Op::AveragePool(AvgPool { window: win, .. }) => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                let [ch, h, w] = chw(x)?;
                let (oh, ow) = win.out_hw(h, w)?;
                // ONNX: pads smaller than the kernel, so every window holds
                // at least one real element (max and the excluded-pad
                // divisor need one).
                for (i, &p) in win.pads.iter().enumerate() {
                    let span = win.dilation[i % 2] * (win.kernel[i % 2] - 1) + 1;
                    if p >= span {
                        return Err(Error::field(
                            format!("pads[{i}]"),
                            p,
                            format!("< the window span {span}"),
                        ));
                    }
                }
                let q = same_quant(&x.quant, out_quant)?;
                Ok((vec![ch, oh, ow], q))
            }
            Op::GlobalAveragePool { .. } => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                let [ch, _, _] = chw(x)?;
                let q = same_quant(&x.quant, out_quant)?;
                Ok((vec![ch, 1, 1], q))
            }
            Op::Relu => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                Ok((x.shape.clone(), same_quant(&x.quant, out_quant)?))
            }
            Op::Clip { lo, hi } => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                let q = same_quant(&x.quant, out_quant)?;
                check_act(Activation::Clamp { lo: *lo, hi: *hi }, &q)?;
                Ok((x.shape.clone(), q))
            }
            Op::Flatten => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                Ok((vec![x.len()], same_quant(&x.quant, out_quant)?))
            }
            Op::Reshape { shape } => {
                Self::arity(inputs, 1)?;
                let x = self.get(inputs, 0)?;
                check_activation_shape(shape)?;
                if shape_len(shape) != Some(x.len()) {
                    return Err(Error::field(
                        "shape",
                        format!("{shape:?}"),
                        format!("{} elements (input {} {:?})", x.len(), x.name, x.shape),
                    ));
                }
                Ok((shape.clone(), same_quant(&x.quant, out_quant)?))
            }
        }
    }

    fn array_out(
        &self,
        x: &Quant,
        w: &Quant,
        requant: RequantMode,
        act: Activation,
        out_quant: Option<Quant>,
    ) -> Result<Quant> {
        if requant == RequantMode::Accumulator {
            if out_quant.is_some() {
                return Err(Error::input(
                    "requant accumulator: the output quantization is computed; pass none",
                ));
            }
            if act != Activation::None {
                return Err(Error::input(
                    "requant accumulator: no fused activation (the output is the raw accumulator)",
                ));
            }
            let sx = x.scale().at(0);
            let scale = match w.scale() {
                Scale::Tensor(s) => Scale::Tensor(sx * s),
                Scale::Channel(v) => Scale::Channel(v.iter().map(|s| sx * s).collect()),
            };
            return Ok(Quant::accumulator(scale));
        }
        let q = requant_out(requant, out_quant)?;
        check_act(act, &q)?;
        Ok(q)
    }
}

fn chw(x: &TensorInfo) -> Result<[usize; 3]> {
    match x.shape[..] {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(Error::input(format!("input {} has shape {:?}; expected [C, H, W]", x.name, x.shape))),
    }
}

fn check_activation_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::field("shape", format!("{shape:?}"), "rank >= 1, every dimension >= 1"));
    }
    if shape_len(shape).is_none_or(|n| n > MAX_ELEMENTS) {
        return Err(Error::field("shape", format!("{shape:?}"), format!("<= {MAX_ELEMENTS} elements")));
    }
    Ok(())
}

fn check_activation_quant(q: &Quant) -> Result<()> {
    if q.scale().channels().is_some() {
        return Err(Error::input("activation quantization: per-channel scale (activations are per tensor)"));
    }
    Ok(())
}

fn requant_out(requant: RequantMode, out_quant: Option<Quant>) -> Result<Quant> {
    if requant == RequantMode::Accumulator {
        return Err(Error::input("requant accumulator is only for conv2d and dense"));
    }
    let q = out_quant.ok_or_else(|| Error::input("the output quantization is required"))?;
    check_activation_quant(&q)?;
    Ok(q)
}

fn same_quant(x: &Quant, out_quant: Option<Quant>) -> Result<Quant> {
    match out_quant {
        Some(q) if &q != x => {
            Err(Error::input(format!("the output quantization must equal the input's ({x:?}); got {q:?}")))
        }
        _ => Ok(x.clone()),
    }
}

fn check_act(act: Activation, q: &Quant) -> Result<()> {
    if let Activation::Clamp { lo, hi } = act {
        if lo > hi || !q.contains(lo) || !q.contains(hi) {
            return Err(Error::field(
                "clamp",
                format!("[{lo}, {hi}]"),
                format!("lo <= hi inside the output code range {}..={}", q.min_code(), q.max_code()),
            ));
        }
    }
    Ok(())
}

fn check_weight_scale(w: &Quant, out_channels: usize) -> Result<()> {
    if let Some(n) = w.scale().channels() {
        if n != out_channels {
            return Err(Error::field(
                "weight.scale",
                format!("{n} values"),
                format!("1 or one per output channel ({out_channels})"),
            ));
        }
    }
    Ok(())
}

fn check_bias(b: &Bias, out_channels: usize) -> Result<()> {
    if b.codes().len() != out_channels {
        return Err(Error::field("bias", format!("{} values", b.codes().len()), out_channels));
    }
    Ok(())
}

/// Worst case `K * max|a - za| * max|w - zw| + max|bias| <= 2^62`.
fn check_acc_range(x: &Quant, w: &Weights, b: &Bias, k: usize) -> Result<()> {
    let za = x.zero_point() as i128;
    let amax = (x.max_code() as i128 - za).abs().max((x.min_code() as i128 - za).abs());
    let zw = w.quant().zero_point() as i128;
    // max |c - zw| is reached at the smallest or the largest code (one
    // vectorizable min/max pass; the same value as the per-element max).
    let ext = |c: &[i32]| c.iter().fold((i32::MAX, i32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let wmax = match ext(w.codes()) {
        _ if w.codes().is_empty() => 0,
        (l, h) => (l as i128 - zw).abs().max((h as i128 - zw).abs()),
    };
    let bmax = match ext(b.codes()) {
        _ if b.codes().is_empty() => 0,
        (l, h) => (l as i128).abs().max((h as i128).abs()),
    };
    let worst = k as i128 * amax * wmax + bmax;
    if worst > MAX_ACC_MAGNITUDE {
        return Err(Error::field(
            "worst-case |accumulator|",
            worst,
            format!("<= 2^62 ({MAX_ACC_MAGNITUDE})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q8u(s: f32, z: i64) -> Quant {
        Quant::new(8, false, false, Scale::Tensor(s), z).unwrap()
    }

    #[test]
    fn shapes_are_inferred_and_errors_name_the_node() {
        let mut b = GraphBuilder::new("t");
        let x = b.input("x", vec![4, 9, 9], q8u(0.1, 3)).unwrap();
        let wq = Quant::new(4, true, true, Scale::Channel(vec![0.5; 4]), 0).unwrap();
        let w = Weights::new(vec![4, 1, 3, 3], vec![1; 36], wq).unwrap();
        let mut c = Conv2d::new(w, Bias::new(vec![0; 4], None).unwrap());
        c.groups = 4;
        c.stride = [2, 2];
        c.pads = [1, 0, 1, 0];
        c.dilation = [2, 1];
        let y = b.add_node("dw", Op::Conv2d(c.clone()), &[x], Some(q8u(0.2, 0))).unwrap();
        // H: (9 + 2 - 2*2 - 1)/2 + 1 = 4; W: (9 - 2 - 1)/2 + 1 = 4.
        assert_eq!(b.tensor(y).unwrap().shape, vec![4, 4, 4]);
        c.groups = 3;
        let e = b.add_node("bad", Op::Conv2d(c), &[x], Some(q8u(0.2, 0))).unwrap_err().to_string();
        assert!(e.contains("node 1 (bad, conv2d)") && e.contains("groups"), "{e}");
        let p =
            b.add_node("gap", Op::GlobalAveragePool { rounding: DivRounding::HalfEven }, &[y], None).unwrap();
        assert_eq!(b.tensor(p).unwrap().shape, vec![4, 1, 1]);
        let e = b.add_node(
            "add",
            Op::Add { act: Activation::None, requant: RequantMode::Hardware },
            &[x, y],
            Some(q8u(0.1, 0)),
        );
        assert!(e.unwrap_err().to_string().contains("shapes differ"));
        let g = b.finish(p).unwrap();
        assert_eq!(g.nodes().len(), 2);
        assert_eq!(g.producer(p), Some(1));
    }

    #[test]
    fn code_ranges_follow_qonnx() {
        let q = Quant::new(4, true, true, Scale::Tensor(1.0), 0).unwrap();
        assert_eq!((q.min_code(), q.max_code()), (-7, 7));
        let q = Quant::new(4, false, true, Scale::Tensor(1.0), 0).unwrap();
        assert_eq!((q.min_code(), q.max_code()), (0, 14));
        assert!(Quant::new(8, false, false, Scale::Tensor(1.0), 256).is_err());
        let q = q8u(0.5, 10);
        // 1.25 / 0.5 = 2.5 -> 2 (ties to even), + 10.
        assert_eq!(q.quantize(1.25), 12);
        assert_eq!(q.quantize(-100.0), 0);
        assert_eq!(q.quantize(1e9), 255);
    }
}
