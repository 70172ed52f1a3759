//! VCD (IEEE 1364 value change dump) of a run, for GTKWave.
//!
//! Timescale 1 ps. Scope `bitmac_cdc`. Each clock rises at its edge time and
//! falls halfway to its next edge (at least 1 ps later). Every other signal
//! changes at the rising edge that changes it and shows the state after that
//! instant (the same values as the trace line); `winc`/`rinc` show the enable
//! sampled at the domain's last edge, `push`/`pop` whether that edge pushed /
//! popped, `wdata`/`rdata` the last word pushed / popped.

use super::config::FifoConfig;
use super::sim::{Data, EdgeRec, Observer, Sim};
use crate::error::Result;
use crate::io::AtomicFile;
use std::fmt::Write as _;

/// Signal order and identifiers: (name, id). The first 14 are always
/// dumped; the last 5 only for a FIFO variant (docs/cdc.md §16).
pub const SIGNALS: [(&str, char); 19] = [
    ("wclk", '!'),
    ("rclk", '"'),
    ("winc", '#'),
    ("rinc", '$'),
    ("wfull", '%'),
    ("rempty", '&'),
    ("wptr", '\''),
    ("rptr", '('),
    ("wq_rptr", ')'),
    ("rq_wptr", '*'),
    ("wdata", '+'),
    ("rdata", ','),
    ("push", '-'),
    ("pop", '.'),
    ("wafull", '/'),
    ("raempty", '0'),
    ("rvalid", '1'),
    ("dout", '2'),
    ("rtake", '3'),
];

/// The VCD observer.
pub struct VcdWriter {
    /// The text so far (call [`VcdWriter::finish`] at the end), or, when
    /// streaming ([`VcdWriter::to_file`]), the not yet flushed tail.
    pub out: String,
    sink: super::trace::FileSink,
    last: [Option<u64>; 19],
    widths: [u32; 19],
    nsig: usize,
    pending: Vec<(u64, usize)>,
    wper: u64,
    rper: u64,
    cur_t: Option<u64>,
}

impl VcdWriter {
    /// Start a VCD: header and all signals at their reset values at time 0.
    pub fn new(cfg: &FifoConfig, wper: u64, rper: u64) -> VcdWriter {
        let pb = cfg.addr_bits() + 1;
        let dw = cfg.data_width();
        let widths = [1, 1, 1, 1, 1, 1, pb, pb, pb, pb, dw, dw, 1, 1, 1, 1, 1, dw, 1];
        let nsig = if cfg.variant().is_plain() { 14 } else { 19 };
        let mut out = String::new();
        out.push_str("$date bitmac $end\n$version bitmac cdc $end\n$timescale 1ps $end\n$scope module bitmac_cdc $end\n");
        for (i, (name, id)) in SIGNALS.iter().enumerate().take(nsig) {
            let _ = writeln!(out, "$var wire {} {} {} $end", widths[i], id, name);
        }
        out.push_str("$upscope $end\n$enddefinitions $end\n");
        let mut v = VcdWriter {
            out,
            sink: super::trace::FileSink::default(),
            last: [None; 19],
            nsig,
            widths,
            pending: Vec::new(),
            wper,
            rper,
            cur_t: None,
        };
        v.at(0);
        v.out.push_str("$dumpvars\n");
        let init = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        for (i, x) in init.iter().enumerate().take(nsig) {
            v.emit(i, *x);
        }
        v.out.push_str("$end\n");
        v
    }

    fn at(&mut self, t: u64) {
        if self.cur_t != Some(t) {
            let _ = writeln!(self.out, "#{t}");
            self.cur_t = Some(t);
        }
    }

    fn emit(&mut self, i: usize, v: u64) {
        self.last[i] = Some(v);
        let id = SIGNALS[i].1;
        if self.widths[i] == 1 {
            let _ = writeln!(self.out, "{}{}", v & 1, id);
        } else {
            let _ = writeln!(self.out, "b{v:b} {id}");
        }
    }

    fn set(&mut self, i: usize, v: u64) {
        if self.last[i] != Some(v) {
            self.emit(i, v);
        }
    }

    fn flush_until(&mut self, t: u64) {
        self.pending.sort_unstable();
        while let Some(&(ft, i)) = self.pending.first() {
            if ft > t {
                break;
            }
            self.pending.remove(0);
            self.at(ft);
            self.set(i, 0);
        }
    }

    /// Flush the pending clock falls and return the text.
    pub fn finish(mut self) -> String {
        self.flush_until(u64::MAX);
        self.out
    }

    /// The same writer streaming into `file` (see
    /// [`super::trace::TraceWriter::to_file`]).
    pub fn to_file(cfg: &FifoConfig, wper: u64, rper: u64, file: AtomicFile) -> VcdWriter {
        let mut v = VcdWriter::new(cfg, wper, rper);
        v.sink = super::trace::FileSink::new(file);
        v
    }

    fn spill(&mut self) {
        self.sink.spill(&mut self.out);
    }

    /// Streaming writer: flush the pending clock falls and the rest, and
    /// return the (uncommitted) file; an I/O error of the run is reported here.
    pub fn finish_file(mut self) -> Result<AtomicFile> {
        self.flush_until(u64::MAX);
        self.sink.finish(&mut self.out, "VCD")
    }
}

impl Observer for VcdWriter {
    fn instant(&mut self, sim: &Sim<'_>, t: u64, w: Option<EdgeRec>, r: Option<EdgeRec>) {
        self.flush_until(t);
        self.at(t);
        let next_w = sim.w.next_t;
        let next_r = sim.r.next_t;
        if let Some(w) = w {
            self.set(0, 1);
            let fall =
                if next_w == u64::MAX { t + (self.wper / 2).max(1) } else { t + ((next_w - t) / 2).max(1) };
            self.pending.push((fall, 0));
            self.set(2, w.en as u64);
            self.set(12, matches!(w.data, Data::Word(_)) as u64);
            if let Data::Word(v) = w.data {
                self.set(10, v);
            }
        }
        if let Some(r) = r {
            self.set(1, 1);
            let fall =
                if next_r == u64::MAX { t + (self.rper / 2).max(1) } else { t + ((next_r - t) / 2).max(1) };
            self.pending.push((fall, 1));
            self.set(3, r.en as u64);
            self.set(13, !matches!(r.data, Data::None) as u64);
            if let Data::Word(v) = r.data {
                self.set(11, v);
            }
        }
        self.set(4, sim.wfull() as u64);
        self.set(5, sim.rempty() as u64);
        self.set(6, sim.wptr() as u64);
        self.set(7, sim.rptr() as u64);
        self.set(8, sim.wq_rptr() as u64);
        self.set(9, sim.rq_wptr() as u64);
        if self.nsig > 14 {
            self.set(14, sim.wafull().unwrap_or(false) as u64);
            self.set(15, sim.raempty().unwrap_or(true) as u64);
            let port = sim.port();
            self.set(16, port.is_some() as u64);
            if let Some(Data::Word(v)) = port {
                self.set(17, v);
            }
            if let Some(r) = r {
                self.set(18, !matches!(r.take, Data::None) as u64);
            }
        }
        if self.out.len() >= super::trace::FLUSH_BYTES {
            self.spill();
        }
    }
}
