//! A `bitmac-model/1` model as a graph (`docs/graph.md` §9): one node per
//! layer, named like the layer; hidden layers requantize (`hardware` mode)
//! to the next layer's input quantizer, the last layer outputs the
//! accumulators (logits).

use super::*;
use crate::model::{Layer, Model};

fn quant(q: &crate::model::Quant) -> Result<Quant> {
    Quant::new(q.bits(), q.signed(), false, Scale::Tensor(q.step()), 0)
}

/// Convert a validated model. The graph input is named `input` (or
/// `input_` if a layer is called `input`).
pub fn from_model(model: &Model) -> Result<Graph> {
    let layers = model.layers();
    let mut b = GraphBuilder::new(model.name());
    let in_name = if layers.iter().any(|l| l.name() == "input") { "input_" } else { "input" };
    let mut x = b.input(in_name, model.input().shape().to_vec(), quant(layers[0].input_quant())?)?;
    for (l, layer) in layers.iter().enumerate() {
        let ctx = |e: Error| e.context(format!("layer {l} ({})", layer.name()));
        let wq = layer.weight().quant();
        let wquant = quant(wq).map_err(ctx)?;
        let bias = Bias::new(layer.bias().to_vec(), layer.bias_float().map(<[f32]>::to_vec)).map_err(ctx)?;
        let last = l + 1 == layers.len();
        let (out_q, requant) = match model.output_quant(l) {
            Some(q) => (Some(quant(q).map_err(ctx)?), RequantMode::Hardware),
            None => (None, RequantMode::Accumulator),
        };
        let act = if layer.relu() && !last { Activation::Relu } else { Activation::None };
        let op = match layer {
            Layer::Conv2d(c) => {
                let w =
                    Weights::new(layer.weight().shape().to_vec(), layer.weight().codes().to_vec(), wquant)
                        .map_err(ctx)?;
                let mut conv = Conv2d::new(w, bias);
                conv.stride = c.stride();
                let [ph, pw] = c.padding();
                conv.pads = [ph, pw, ph, pw];
                conv.act = act;
                conv.requant = requant;
                Op::Conv2d(conv)
            }
            Layer::Dense(_) => {
                // [out][in] -> [K, N].
                let (o, k) = (layer.weight().shape()[0], layer.weight().shape()[1]);
                let codes = layer.weight().codes();
                let t: Vec<i32> = (0..k * o).map(|i| codes[(i % o) * k + i / o]).collect();
                let w = Weights::new(vec![k, o], t, wquant).map_err(ctx)?;
                Op::Dense(Dense { weight: w, bias, act, requant })
            }
        };
        x = b.add_node(layer.name(), op, &[x], out_q)?;
    }
    b.finish(x)
}
