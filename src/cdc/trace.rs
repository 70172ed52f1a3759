//! The text trace: format, parse, and replay.
//!
//! One line per rising edge after reset release, in time order, W before R
//! at the same instant, showing the state after the instant:
//! `time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr`
//! (pointers lowercase hex zero-padded to ceil((n+1)/4) digits, `data` decimal
//! or `-` or `x`). Lines starting with `#` and blank lines are comments.

use super::config::{Domain, FifoConfig};
use super::sim::{Data, EdgeRec, Observer, Sim, Source};
use crate::error::{Error, Result};
use crate::io::AtomicFile;
use std::fmt::Write as _;
use std::io::Write as _;

/// The column header comment.
pub const HEADER: &str = "# time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr";
/// The extra columns of a v2 trace (a FIFO variant, docs/cdc.md §16).
pub const HEADER_V2_EXTRA: &str = " wafull raempty valid dout take";

/// The v2 columns of a trace line (FIFO variants, docs/cdc.md §16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceExt {
    /// Almost-full flag after the instant (None: not configured, `-`).
    pub wafull: Option<bool>,
    /// Almost-empty flag after the instant (None: not configured, `-`).
    pub raempty: Option<bool>,
    /// The consumer port after the instant: `valid` = Some, `dout` its word.
    pub port: Option<Data>,
    /// R lines: the word delivered to the consumer at this edge.
    pub take: Data,
}

/// One trace line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceLine {
    /// Edge time (ps).
    pub time_ps: u64,
    /// Domain of the edge.
    pub dom: Domain,
    /// wfull after the instant.
    pub wfull: bool,
    /// rempty after the instant.
    pub rempty: bool,
    /// Write crossing pointer.
    pub wptr: u32,
    /// Read crossing pointer.
    pub rptr: u32,
    /// Word pushed (W) / popped (R) at this edge.
    pub data: Data,
    /// Enable sampled at this edge.
    pub en: bool,
    /// Output of the read-to-write synchronizer.
    pub wq_rptr: u32,
    /// Output of the write-to-read synchronizer.
    pub rq_wptr: u32,
    /// v2 columns (FIFO variants only; None in a v1 trace).
    pub ext: Option<TraceExt>,
}

fn data_str(d: Data) -> String {
    match d {
        Data::None => "-".to_string(),
        Data::X => "x".to_string(),
        Data::Word(v) => v.to_string(),
    }
}

fn flag_str(f: Option<bool>) -> &'static str {
    match f {
        None => "-",
        Some(false) => "0",
        Some(true) => "1",
    }
}

impl TraceLine {
    pub(crate) fn from_sim(sim: &Sim<'_>, t: u64, dom: Domain, rec: EdgeRec) -> TraceLine {
        TraceLine {
            time_ps: t,
            dom,
            wfull: sim.wfull(),
            rempty: sim.rempty(),
            wptr: sim.wptr(),
            rptr: sim.rptr(),
            data: rec.data,
            en: rec.en,
            wq_rptr: sim.wq_rptr(),
            rq_wptr: sim.rq_wptr(),
            ext: (!sim.variant().is_plain()).then(|| TraceExt {
                wafull: sim.wafull(),
                raempty: sim.raempty(),
                port: sim.port(),
                take: rec.take,
            }),
        }
    }

    /// Append the line (with `\n`) to `out`; `hex` = pointer hex digits.
    pub fn write_to(&self, out: &mut String, hex: usize) {
        let _ = write!(
            out,
            "{} {} {} {} {:0h$x} {:0h$x} ",
            self.time_ps,
            self.dom.letter(),
            self.wfull as u8,
            self.rempty as u8,
            self.wptr,
            self.rptr,
            h = hex
        );
        match self.data {
            Data::None => out.push('-'),
            Data::X => out.push('x'),
            Data::Word(v) => {
                let _ = write!(out, "{v}");
            }
        }
        let _ = write!(out, " {} {:0h$x} {:0h$x}", self.en as u8, self.wq_rptr, self.rq_wptr, h = hex);
        if let Some(x) = &self.ext {
            let _ = write!(
                out,
                " {} {} {} {} {}",
                flag_str(x.wafull),
                flag_str(x.raempty),
                x.port.is_some() as u8,
                data_str(x.port.unwrap_or(Data::None)),
                data_str(x.take)
            );
        }
        out.push('\n');
    }

    fn fields(&self) -> String {
        let d = data_str(self.data);
        let ext = match &self.ext {
            None => String::new(),
            Some(x) => format!(
                " wafull={} raempty={} valid={} dout={} take={}",
                flag_str(x.wafull),
                flag_str(x.raempty),
                x.port.is_some() as u8,
                data_str(x.port.unwrap_or(Data::None)),
                data_str(x.take)
            ),
        };
        format!(
            "wfull={} rempty={} wptr={:x} rptr={:x} data={} en={} wq_rptr={:x} rq_wptr={:x}{}",
            self.wfull as u8,
            self.rempty as u8,
            self.wptr,
            self.rptr,
            d,
            self.en as u8,
            self.wq_rptr,
            self.rq_wptr,
            ext
        )
    }
}

/// Observer that formats trace lines into a String, or streams them into an
/// [`AtomicFile`] (built with [`TraceWriter::to_file`]; memory stays bounded
/// by the 64 KiB buffer).
pub struct TraceWriter {
    /// The text so far (in-memory writer), or the not yet flushed tail of it
    /// (streaming writer).
    pub out: String,
    hex: usize,
    sink: FileSink,
}

/// Buffered bytes at which a streaming writer flushes to its file.
pub(crate) const FLUSH_BYTES: usize = 1 << 16;

/// The file a streaming writer (trace or VCD) spills its text into: the
/// uncommitted [`AtomicFile`] and the first I/O error of the run, reported
/// at the end. Without a file (in-memory writer) spilling keeps the text.
#[derive(Default)]
pub(crate) struct FileSink {
    file: Option<AtomicFile>,
    err: Option<std::io::Error>,
}

impl FileSink {
    /// A sink streaming into `file`.
    pub(crate) fn new(file: AtomicFile) -> FileSink {
        FileSink { file: Some(file), err: None }
    }
    /// Write `out` to the file (after an error, drop it) and clear it; a
    /// no-op without a file.
    pub(crate) fn spill(&mut self, out: &mut String) {
        if let Some(f) = &mut self.file {
            if self.err.is_none() {
                if let Err(e) = f.write_all(out.as_bytes()) {
                    self.err = Some(e);
                }
            }
            out.clear();
        }
    }
    /// Spill the rest and return the (uncommitted) file; an I/O error during
    /// the run is reported here, naming the file. `what` names the writer.
    pub(crate) fn finish(&mut self, out: &mut String, what: &str) -> Result<AtomicFile> {
        self.spill(out);
        let f = self.file.take().ok_or_else(|| Error::internal(format!("{what} writer has no file")))?;
        match self.err.take() {
            Some(e) => Err(Error::io(f.path(), &e)),
            None => Ok(f),
        }
    }
}

impl TraceWriter {
    /// A writer with the standard comment header plus `extra` comment lines.
    pub fn new(cfg: &FifoConfig, extra: &[String]) -> TraceWriter {
        let v2 = !cfg.variant().is_plain();
        let mut out = String::from(if v2 { "# bitmac cdc trace v2\n" } else { "# bitmac cdc trace v1\n" });
        for e in extra {
            out.push_str("# ");
            out.push_str(e);
            out.push('\n');
        }
        out.push_str(HEADER);
        if v2 {
            out.push_str(HEADER_V2_EXTRA);
        }
        out.push('\n');
        TraceWriter { out, hex: cfg.ptr_hex_digits(), sink: FileSink::default() }
    }

    /// The same writer streaming into `file` (not committed: the caller
    /// commits what [`TraceWriter::finish_file`] returns, or drops it).
    pub fn to_file(cfg: &FifoConfig, extra: &[String], file: AtomicFile) -> TraceWriter {
        let mut w = TraceWriter::new(cfg, extra);
        w.sink = FileSink::new(file);
        w
    }

    fn spill(&mut self) {
        self.sink.spill(&mut self.out);
    }

    /// Streaming writer: write the rest and return the (uncommitted) file;
    /// an I/O error during the run is reported here, naming the file.
    pub fn finish_file(mut self) -> Result<AtomicFile> {
        self.sink.finish(&mut self.out, "trace")
    }
}

impl Observer for TraceWriter {
    fn instant(&mut self, sim: &Sim<'_>, t: u64, w: Option<EdgeRec>, r: Option<EdgeRec>) {
        if let Some(w) = w {
            TraceLine::from_sim(sim, t, Domain::W, w).write_to(&mut self.out, self.hex);
        }
        if let Some(r) = r {
            TraceLine::from_sim(sim, t, Domain::R, r).write_to(&mut self.out, self.hex);
        }
        if self.out.len() >= FLUSH_BYTES {
            self.spill();
        }
    }
}

/// Observer collecting structured lines.
#[derive(Default)]
pub struct LineCollector {
    /// The lines, in trace order.
    pub lines: Vec<TraceLine>,
}

impl Observer for LineCollector {
    fn instant(&mut self, sim: &Sim<'_>, t: u64, w: Option<EdgeRec>, r: Option<EdgeRec>) {
        if let Some(w) = w {
            self.lines.push(TraceLine::from_sim(sim, t, Domain::W, w));
        }
        if let Some(r) = r {
            self.lines.push(TraceLine::from_sim(sim, t, Domain::R, r));
        }
    }
}

/// A parsed trace line with its 1-based line number in the file.
#[derive(Clone, Copy, Debug)]
pub struct ParsedLine {
    /// Line number (1-based).
    pub line_no: usize,
    /// Contents.
    pub line: TraceLine,
}

fn bit(tok: &str, what: &str, ln: usize, name: &str) -> Result<bool> {
    match tok {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Error::input(format!("{name}:{ln}: {what}: `{tok}` is not 0 or 1"))),
    }
}

fn hexv(tok: &str, what: &str, ln: usize, name: &str, bits: u32) -> Result<u32> {
    let v = u32::from_str_radix(tok, 16)
        .map_err(|_| Error::input(format!("{name}:{ln}: {what}: `{tok}` is not a hex number")))?;
    if bits < 32 && v >> bits != 0 {
        return Err(Error::input(format!(
            "{name}:{ln}: {what}: {tok} does not fit in {bits} bits (allowed: 0..={:x})",
            (1u64 << bits) - 1
        )));
    }
    Ok(v)
}

/// Parse a trace. `name` is used in error messages (`NAME:LINE: ...`).
/// Checks: 10 fields, field syntax, pointer widths (n+1 bits), time order,
/// and at most one W then at most one R per instant.
pub fn parse(text: &str, name: &str, cfg: &FifoConfig) -> Result<Vec<ParsedLine>> {
    let bits = cfg.addr_bits() + 1;
    let v2 = !cfg.variant().is_plain();
    let nf = if v2 { 15 } else { 10 };
    let cols = if v2 {
        "time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr wafull raempty valid dout take"
    } else {
        "time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr"
    };
    let mut out: Vec<ParsedLine> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != nf {
            return Err(Error::input(format!(
                "{name}:{ln}: expected {nf} fields ({cols}), got {}{}",
                f.len(),
                if v2 { " (a FIFO variant writes trace v2)" } else { "" }
            )));
        }
        let time_ps: u64 = f[0].parse().map_err(|_| {
            Error::input(format!("{name}:{ln}: time_ps: `{}` is not a non-negative integer", f[0]))
        })?;
        let dom = match f[1] {
            "W" => Domain::W,
            "R" => Domain::R,
            o => return Err(Error::input(format!("{name}:{ln}: dom: `{o}` is not W or R"))),
        };
        let word = |tok: &str, what: &str| -> Result<Data> {
            Ok(match tok {
                "-" => Data::None,
                "x" | "X" => Data::X,
                d => Data::Word(d.parse().map_err(|_| {
                    Error::input(format!("{name}:{ln}: {what}: `{d}` is not -, x or a decimal word"))
                })?),
            })
        };
        let data = word(f[6], "data")?;
        let opt_flag = |tok: &str, what: &str| -> Result<Option<bool>> {
            if tok == "-" {
                Ok(None)
            } else {
                bit(tok, what, ln, name).map(Some)
            }
        };
        let ext = if v2 {
            let valid = bit(f[12], "valid", ln, name)?;
            let dout = word(f[13], "dout")?;
            if valid == (dout == Data::None) {
                return Err(Error::input(format!(
                    "{name}:{ln}: dout: `{}` with valid={} (a word iff valid)",
                    f[13], valid as u8
                )));
            }
            Some(TraceExt {
                wafull: opt_flag(f[10], "wafull")?,
                raempty: opt_flag(f[11], "raempty")?,
                port: valid.then_some(dout),
                take: word(f[14], "take")?,
            })
        } else {
            None
        };
        let line = TraceLine {
            time_ps,
            dom,
            wfull: bit(f[2], "wfull", ln, name)?,
            rempty: bit(f[3], "rempty", ln, name)?,
            wptr: hexv(f[4], "wptr", ln, name, bits)?,
            rptr: hexv(f[5], "rptr", ln, name, bits)?,
            data,
            en: bit(f[7], "en", ln, name)?,
            wq_rptr: hexv(f[8], "wq_rptr", ln, name, bits)?,
            rq_wptr: hexv(f[9], "rq_wptr", ln, name, bits)?,
            ext,
        };
        if let Some(prev) = out.last() {
            let p = prev.line;
            if time_ps < p.time_ps {
                return Err(Error::input(format!(
                    "{name}:{ln}: time_ps {time_ps} is before the previous edge's {} (lines must be in time order)",
                    p.time_ps
                )));
            }
            if time_ps == p.time_ps && !(p.dom == Domain::W && dom == Domain::R) {
                return Err(Error::input(format!(
                    "{name}:{ln}: second {} edge at {time_ps} (one W then one R per instant)",
                    dom.letter()
                )));
            }
        }
        out.push(ParsedLine { line_no: ln, line });
    }
    if out.is_empty() {
        return Err(Error::input(format!("{name}: no trace lines")));
    }
    Ok(out)
}

/// Re-simulate the edges (time, dom, en) of a parsed trace with `cfg`
/// (metastability and faults are ignored: replay is the zero-delay design)
/// and compare every field. Ok(number of edges) if all match; otherwise a
/// mismatch error naming the first differing edge, expected (bitmac) and
/// actual (trace) fields.
pub fn replay(lines: &[ParsedLine], name: &str, cfg: &FifoConfig) -> Result<usize> {
    let mut spec = cfg.to_spec();
    spec.meta = None;
    // S = 1 is only expressible as the single-flop fault; without
    // metastability that fault is the plain one-flop design.
    spec.fault = if spec.sync == 1 { super::config::Fault::SingleFlop } else { super::config::Fault::None };
    let cfg0 = spec.validate()?.with_variant(cfg.variant())?;
    let (mut wt, mut wen, mut rt, mut ren) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in lines {
        match p.line.dom {
            Domain::W => {
                wt.push(p.line.time_ps);
                wen.push(p.line.en);
            }
            Domain::R => {
                rt.push(p.line.time_ps);
                ren.push(p.line.en);
            }
        }
    }
    let mut sim = Sim::new(&cfg0, Source::Lists { wt, wen, rt, ren }, None);
    let mut col = LineCollector::default();
    while sim.step(&mut col) {}
    for (i, (p, e)) in lines.iter().zip(col.lines.iter()).enumerate() {
        if p.line != *e {
            let a = p.line;
            let mut diff = Vec::new();
            macro_rules! cmp {
                ($f:ident) => {
                    if a.$f != e.$f {
                        diff.push(stringify!($f));
                    }
                };
            }
            cmp!(time_ps);
            cmp!(dom);
            cmp!(wfull);
            cmp!(rempty);
            cmp!(wptr);
            cmp!(rptr);
            cmp!(data);
            cmp!(en);
            cmp!(wq_rptr);
            cmp!(rq_wptr);
            if a.ext != e.ext {
                diff.push("wafull/raempty/valid/dout/take");
            }
            return Err(Error::mismatch(format!(
                "{name}:{}: edge {} ({} {}) differs in {}: expected {}; actual {}",
                p.line_no,
                i + 1,
                a.time_ps,
                a.dom.letter(),
                diff.join(", "),
                e.fields(),
                a.fields()
            )));
        }
    }
    if col.lines.len() != lines.len() {
        return Err(Error::internal(format!(
            "replay produced {} edges for {} trace lines",
            col.lines.len(),
            lines.len()
        )));
    }
    Ok(lines.len())
}
