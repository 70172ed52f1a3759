//! Running a sweep: the out directory, parallel evaluation with append-and-
//! flush of each finished point, resume, shards, merge and the final files.
//!
//! Out directory (`docs/dse.md`):
//! - `sweep.json`: the canonical spec, resolved base, swept paths and the
//!   spec hash (identical for a single run, each shard, and a merge);
//! - `shard.json`: only in a shard's directory (`{"shard": i, "of": n}`);
//! - `results.jsonl`: one record per finished point, appended and flushed as
//!   points finish (any order); rewritten sorted by id when the run ends;
//! - `results.csv`, `pareto.csv`, `plot_*.svg`: written at the end from the
//!   sorted records only, so they are byte-identical whatever the thread
//!   count, completion order, interruptions or sharding.

use super::eval::{self, Evaluator, Metrics, METRIC_COLUMNS};
use super::hw::get_path;
use super::pareto::{self, Objective};
use super::spec::{PlotsJson, Sweep};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::plot::{self, Labels, Plot, Series};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

/// `sweep.json`'s format tag.
pub const FORMAT: &str = "bitmac-dse/1";

/// A slice of a sweep: points with `id % count == index` (0-based index,
/// as Slurm's `SLURM_ARRAY_TASK_ID` with `--array=0-(n-1)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub shard: u64,
    pub of: u64,
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::field("--shard", format!("{s:?}"), "i/n with integers 0 <= i < n <= 100000");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if n == 0 || n > 100_000 || i >= n {
            return Err(bad());
        }
        Ok(Shard { shard: i, of: n })
    }
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub spec: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    pub shard: Option<Shard>,
    /// Rayon threads (`None`: rayon's default).
    pub threads: Option<usize>,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Refuse a sweep of synthetic workloads whose points x MACs per point
    /// exceed this (`--max-work`, docs/limits.md).
    pub max_work: u64,
}

/// What a run or merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Points in this run's slice (all points for a full run or a merge).
    pub points: usize,
    pub ok: usize,
    pub skipped: usize,
    /// Points evaluated by this invocation (0 for a merge).
    pub evaluated: usize,
    /// Points on the Pareto front.
    pub pareto: usize,
}

/// A point's status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
}

/// One line of `results.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub id: u64,
    pub status: Status,
    /// The point's value of every swept path.
    pub params: BTreeMap<String, Value>,
    /// Why the point was skipped (null when ok).
    pub reason: Option<String>,
    /// The metrics (null when skipped).
    pub metrics: Option<Metrics>,
}

/// `sweep.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format: String,
    pub name: String,
    pub spec_hash: String,
    pub points: u64,
    pub params: Vec<String>,
    pub quality: String,
    pub plots: PlotsJson,
    pub base: Value,
    pub spec: Value,
}

fn meta_text(m: &Meta) -> String {
    let mut s = serde_json::to_string_pretty(m).expect("meta serializes");
    s.push('\n');
    s
}

/// The ids of a slice, ascending.
pub fn shard_ids(total: usize, shard: Option<Shard>) -> Vec<usize> {
    match shard {
        None => (0..total).collect(),
        Some(s) => (0..total).filter(|i| (*i as u64) % s.of == s.shard).collect(),
    }
}

/// Evaluate one point into its record. Combination and workload errors
/// (exit code 2) become `skipped`; anything else aborts.
pub fn evaluate_point(sweep: &Sweep, ev: &dyn Evaluator, id: usize) -> Result<Record> {
    let params = sweep.points.get(id);
    let skipped = |e: Error| Record {
        id: id as u64,
        status: Status::Skipped,
        params: params.clone(),
        reason: Some(e.to_string()),
        metrics: None,
    };
    let hw = match sweep.hw(id) {
        Ok(hw) => hw,
        Err(e) if e.is_input() => return Ok(skipped(e)),
        Err(e) => return Err(e),
    };
    match ev.evaluate(&hw) {
        Ok(m) => Ok(Record { id: id as u64, status: Status::Ok, params, reason: None, metrics: Some(m) }),
        Err(e) if e.is_input() => Ok(skipped(e)),
        Err(e) => Err(e.context(format!("point {id}"))),
    }
}

/// Read `results.jsonl`. With `repair`, an incomplete last line (no
/// trailing newline: the process was killed mid-write) is dropped and the
/// file truncated to the last complete line; without it, it is an error.
pub fn read_results(path: &Path, repair: bool) -> Result<BTreeMap<u64, Record>> {
    let mut out = BTreeMap::new();
    scan_results(path, repair, |r, _, _| {
        let id = r.id;
        if out.insert(id, r).is_some() {
            return Err(Error::input(format!("{}: duplicate point id {id}", path.display())));
        }
        Ok(())
    })?;
    Ok(out)
}

/// One pass over `results.jsonl` without holding it: `f(record, offset,
/// length)` is called for every complete line, in file order (empty lines
/// are skipped). An incomplete last line (no trailing newline) is dropped
/// and the file truncated to the last complete line with `repair`, and is an
/// error without it. Memory: one line.
pub fn scan_results(
    path: &Path,
    repair: bool,
    mut f: impl FnMut(Record, u64, usize) -> Result<()>,
) -> Result<()> {
    use std::io::BufRead;
    if !path.exists() {
        return Ok(());
    }
    let (file, _) = crate::io::open_regular(path)?;
    let mut rd = std::io::BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    let (mut offset, mut lineno) = (0u64, 0usize);
    loop {
        line.clear();
        let n = rd.read_until(b'\n', &mut line).map_err(|e| Error::io(path, &e))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if line.last() != Some(&b'\n') {
            if !repair {
                return Err(Error::input(format!(
                    "{}: the last line is incomplete (allowed: complete lines only; run the sweep with --resume to repair it)",
                    path.display()
                )));
            }
            drop(rd);
            let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, &e))?;
            f.set_len(offset).map_err(|e| Error::io(path, &e))?;
            f.sync_all().map_err(|e| Error::io(path, &e))?;
            return Ok(());
        }
        let text = std::str::from_utf8(&line[..n - 1])
            .map_err(|_| Error::input(format!("{}:{lineno}: not valid UTF-8", path.display())))?;
        if !text.is_empty() {
            let r: Record = serde_json::from_str(text).map_err(|e| {
                Error::input(format!(
                    "{}:{lineno}: malformed record: {e} (allowed: records written by bitmac dse)",
                    path.display()
                ))
            })?;
            f(r, offset, n - 1)?;
        }
        offset += n as u64;
    }
    Ok(())
}

/// The ids in `results.jsonl`, ascending; a duplicate is an error.
fn result_ids(path: &Path, repair: bool) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    scan_results(path, repair, |r, _, _| {
        ids.try_reserve(1).map_err(|_| Error::input(format!("{}: too many records", path.display())))?;
        ids.push(r.id);
        Ok(())
    })?;
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::input(format!("{}: duplicate point id {}", path.display(), w[0])));
    }
    Ok(ids)
}

/// True when point `id` belongs to the slice (`total` points, `shard`).
fn in_slice(id: u64, total: usize, shard: Option<Shard>) -> bool {
    id < total as u64 && shard.is_none_or(|s| id % s.of == s.shard)
}

fn read_meta(dir: &Path) -> Result<(Meta, String)> {
    let p = dir.join("sweep.json");
    let text = crate::io::read_to_string(&p)?;
    let m: Meta = serde_json::from_str(&text).map_err(|e| crate::error::json_error(p.display(), &e))?;
    if m.format != FORMAT {
        return Err(Error::field(format!("{}: format", p.display()), &m.format, FORMAT));
    }
    Ok((m, text))
}

fn read_shard(dir: &Path) -> Result<Option<Shard>> {
    let p = dir.join("shard.json");
    if !p.exists() {
        return Ok(None);
    }
    let s: Shard = crate::io::read_json(&p)?;
    if s.of == 0 || s.shard >= s.of {
        return Err(Error::field(
            format!("{}: shard", p.display()),
            format!("{}/{}", s.shard, s.of),
            "i/n with 0 <= i < n",
        ));
    }
    Ok(Some(s))
}

/// Run (or resume) a sweep.
pub fn run(opts: &RunOptions) -> Result<Summary> {
    let sweep = Sweep::load(&opts.spec)?;
    let ev = eval::evaluator(&sweep)?;
    let meta = Meta {
        format: FORMAT.into(),
        name: sweep.name.clone(),
        spec_hash: sweep.hash.clone(),
        points: sweep.points.len() as u64,
        params: sweep.params.clone(),
        quality: ev.quality_name().into(),
        plots: sweep.plots.clone(),
        base: sweep.base.clone(),
        spec: sweep.spec.clone(),
    };
    let out = &opts.out;
    let meta_path = out.join("sweep.json");
    let jsonl = out.join("results.jsonl");
    if meta_path.exists() {
        if !opts.resume {
            return Err(Error::input(format!(
                "{}: already holds a sweep (allowed: an empty or new --out directory, or --resume to continue it)",
                out.display()
            )));
        }
        let (old, _) = read_meta(out)?;
        if old.spec_hash != meta.spec_hash {
            return Err(Error::input(format!(
                "{}: spec hash {} differs from this spec's {} (allowed: --resume with the same spec, model and data; or a new --out)",
                meta_path.display(),
                &old.spec_hash[..16.min(old.spec_hash.len())],
                &meta.spec_hash[..16]
            )));
        }
        let old_shard = read_shard(out)?;
        if old_shard != opts.shard {
            let show = |s: Option<Shard>| s.map_or("none".to_string(), |s| format!("{}/{}", s.shard, s.of));
            return Err(Error::input(format!(
                "{}: was run with --shard {} (allowed: resume it with the same --shard, not {})",
                out.display(),
                show(old_shard),
                show(opts.shard)
            )));
        }
    } else {
        if jsonl.exists() {
            return Err(Error::input(format!(
                "{}: has results.jsonl but no sweep.json (allowed: a directory made by bitmac dse)",
                out.display()
            )));
        }
        write_atomic(&meta_path, meta_text(&meta).as_bytes())?;
        if let Some(s) = opts.shard {
            let mut t = serde_json::to_string(&s).expect("shard serializes");
            t.push('\n');
            write_atomic(&out.join("shard.json"), t.as_bytes())?;
        }
    }

    let ids = shard_ids(sweep.points.len(), opts.shard);
    if let Some(macs) = sweep.point_macs() {
        crate::limits::check(
            &format!("{}: {} points x {macs} MACs", opts.spec.display(), ids.len()),
            ids.len() as u128 * macs,
            opts.max_work,
            "MACs",
            Some("raise the limit with --max-work N, or run a --shard"),
        )?;
    }
    let done = result_ids(&jsonl, true)?;
    if let Some(bad) = done.iter().find(|&&k| !in_slice(k, sweep.points.len(), opts.shard)) {
        return Err(Error::input(format!(
            "{}: point {bad} does not belong to this sweep slice",
            jsonl.display()
        )));
    }
    let todo: Vec<usize> =
        ids.iter().copied().filter(|i| done.binary_search(&(*i as u64)).is_err()).collect();
    drop(done);

    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jsonl)
        .map_err(|e| Error::io(&jsonl, &e))?;
    let file = Mutex::new(file);
    let pb = if opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = indicatif::ProgressBar::new(todo.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "dse {bar:40.cyan/blue} {pos}/{len} points [{elapsed_precise} < {eta_precise}] {per_sec}",
            )
            .expect("valid template"),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let work = || -> Result<()> {
        todo.par_iter().try_for_each(|&id| -> Result<()> {
            let rec = evaluate_point(&sweep, ev.as_ref(), id)?;
            let mut line = serde_json::to_string(&rec)
                .map_err(|e| Error::internal(format!("record serialization: {e}")))?;
            line.push('\n');
            // One write per record: a kill leaves at most one partial line.
            let mut f = file.lock().map_err(|_| Error::internal("results.jsonl lock poisoned"))?;
            f.write_all(line.as_bytes()).map_err(|e| Error::io(&jsonl, &e))?;
            f.flush().map_err(|e| Error::io(&jsonl, &e))?;
            drop(f);
            pb.inc(1);
            Ok(())
        })
    };
    match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::internal(format!("thread pool: {e}")))?
            .install(work)?,
        None => work()?,
    }
    pb.finish_and_clear();
    drop(file);
    let mut s = finalize(out, &meta, &ids)?;
    s.evaluated = todo.len();
    Ok(s)
}

/// Merge shard directories into `out`, producing the files one run makes.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary> {
    if dirs.is_empty() {
        return Err(Error::input("dse merge: no shard directories given (allowed: one or more DIR)"));
    }
    let (meta, text0) = read_meta(&dirs[0])?;
    let mut seen: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut of = None;
    for d in dirs {
        let (m, text) = read_meta(d)?;
        if text != text0 {
            return Err(Error::input(format!(
                "{}: a different sweep (spec hash {}) than {} ({}) (allowed: shards of one sweep)",
                d.display(),
                &m.spec_hash[..16.min(m.spec_hash.len())],
                dirs[0].display(),
                &meta.spec_hash[..16.min(meta.spec_hash.len())]
            )));
        }
        let s = read_shard(d)?.unwrap_or(Shard { shard: 0, of: 1 });
        if *of.get_or_insert(s.of) != s.of {
            return Err(Error::input(format!(
                "{}: shard {}/{} (allowed: all shards out of {})",
                d.display(),
                s.shard,
                s.of,
                of.unwrap_or(0)
            )));
        }
        if let Some(prev) = seen.insert(s.shard, d.clone()) {
            return Err(Error::input(format!(
                "{}: shard {}/{} already given as {}",
                d.display(),
                s.shard,
                s.of,
                prev.display()
            )));
        }
        let want = shard_ids(meta.points as usize, Some(s)).len();
        let recs = result_ids(&d.join("results.jsonl"), false)?;
        if let Some(bad) = recs.iter().find(|&&k| !in_slice(k, meta.points as usize, Some(s))) {
            return Err(Error::input(format!(
                "{}: point {bad} does not belong to shard {}/{}",
                d.display(),
                s.shard,
                s.of
            )));
        }
        if recs.len() != want {
            return Err(Error::input(format!(
                "{}: shard {}/{} has {} of {} points (allowed: complete shards; rerun it with --resume)",
                d.display(),
                s.shard,
                s.of,
                recs.len(),
                want
            )));
        }
    }
    let of = of.unwrap_or(1);
    let missing: Vec<String> =
        (0..of).filter(|i| !seen.contains_key(i)).map(|i| format!("{i}/{of}")).collect();
    if !missing.is_empty() {
        return Err(Error::input(format!(
            "dse merge: missing shards {} (allowed: all n shards)",
            missing.join(", ")
        )));
    }
    if out.join("shard.json").exists() {
        return Err(Error::input(format!(
            "{}: is a shard directory (allowed: a new --out for the merge)",
            out.display()
        )));
    }
    if out.join("sweep.json").exists() {
        let (_, t) = read_meta(out)?;
        if t != text0 {
            return Err(Error::input(format!(
                "{}: holds a different sweep (allowed: a new --out for the merge)",
                out.display()
            )));
        }
    }
    write_atomic(&out.join("sweep.json"), text0.as_bytes())?;
    // The shards' records, concatenated (finalize sorts them by id).
    let mut cat = crate::io::AtomicFile::create(&out.join("results.jsonl"))?;
    for d in dirs {
        let p = d.join("results.jsonl");
        scan_results(&p, false, |r, _, _| {
            let mut line = serde_json::to_string(&r)
                .map_err(|e| Error::internal(format!("record serialization: {e}")))?;
            line.push('\n');
            cat.put(line.as_bytes())
        })?;
    }
    cat.commit()?;
    let ids: Vec<usize> = (0..meta.points as usize).collect();
    finalize(out, &meta, &ids)
}

/// CSV cell quoting (RFC 4180: quote when the cell has a comma, quote or
/// newline).
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn value_cell(v: &Value) -> String {
    match v {
        Value::String(s) => csv_cell(s),
        other => csv_cell(&other.to_string()),
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(*b as u8 as f64),
        _ => None,
    }
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Records of `results.jsonl` in id order, read back one at a time from an
/// index of `(id, offset, length)` (24 bytes per record), so the final
/// files are written without holding the records.
struct Sorted {
    path: PathBuf,
    file: std::fs::File,
    index: Vec<(u64, u64, usize)>,
}

impl Sorted {
    fn open(path: &Path, expected: usize) -> Result<Sorted> {
        let mut index: Vec<(u64, u64, usize)> = Vec::new();
        // Exact: no doubling slack for the largest buffer.
        index
            .try_reserve_exact(expected)
            .map_err(|_| Error::input(format!("{}: cannot index {expected} records", path.display())))?;
        scan_results(path, false, |r, off, len| {
            index
                .try_reserve(1)
                .map_err(|_| Error::input(format!("{}: too many records", path.display())))?;
            index.push((r.id, off, len));
            Ok(())
        })?;
        index.sort_unstable();
        if let Some(w) = index.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::input(format!("{}: duplicate point id {}", path.display(), w[0].0)));
        }
        let (file, _) = crate::io::open_regular(path)?;
        Ok(Sorted { path: path.to_path_buf(), file, index })
    }

    /// The `i`-th record in id order.
    fn get(&self, i: usize, buf: &mut Vec<u8>) -> Result<Record> {
        use std::os::unix::fs::FileExt;
        let (_, off, len) = self.index[i];
        buf.resize(len, 0);
        self.file.read_exact_at(buf, off).map_err(|e| Error::io(&self.path, &e))?;
        serde_json::from_slice(buf)
            .map_err(|e| Error::internal(format!("{}: re-read: {e}", self.path.display())))
    }
}

/// The rows of one line plot, grouped as the plot needs them: per series
/// label, per x value (in `total_cmp` order), `(x, sum of y, count)` with
/// the y values added in id order (the order of the sorted records), so the
/// means are the same floats as summing the rows of a group in id order.
/// (Swept values are integers, booleans or names, so no x is `-0.0` and
/// the `total_cmp` groups are the `==` groups.)
type PlotRows = BTreeMap<String, BTreeMap<u64, (f64, f64, f64)>>;

/// `f64::total_cmp` order as a `u64` key.
fn total_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// Series from grouped rows: per label (sorted), per x (ascending), the
/// mean of its y values.
fn series_of(rows: PlotRows) -> Vec<Series> {
    rows.into_iter()
        .map(|(name, xs)| Series { name, points: xs.into_values().map(|(x, sum, n)| (x, sum / n)).collect() })
        .collect()
}

/// Write the final files of a slice from `results.jsonl` (strict: every
/// point of `ids` must be present). Streams: the records are read back one
/// at a time in id order; memory is 24 bytes per record (the index), about
/// 56 per ok point (Pareto objectives and coordinates, the front's order)
/// and one entry per distinct (series, x) of each line plot.
pub fn finalize(out: &Path, meta: &Meta, ids: &[usize]) -> Result<Summary> {
    let jsonl = out.join("results.jsonl");
    let sorted = Sorted::open(&jsonl, ids.len())?;
    if sorted.index.len() != ids.len() {
        return Err(Error::internal(format!(
            "{}: {} of {} points after the run",
            jsonl.display(),
            sorted.index.len(),
            ids.len()
        )));
    }
    let value = |r: &Record, p: &str| -> Value {
        r.params.get(p).cloned().or_else(|| get_path(&meta.base, p).cloned()).unwrap_or(Value::Null)
    };

    let mut header = String::from("id,status");
    for p in &meta.params {
        header.push(',');
        header.push_str(&csv_cell(p));
    }
    for c in METRIC_COLUMNS {
        header.push(',');
        header.push_str(c);
    }
    header.push_str(",reason\n");
    let mut sorted_jsonl = crate::io::AtomicFile::create(&jsonl)?;
    let mut csv = crate::io::AtomicFile::create(&out.join("results.csv"))?;
    csv.put(header.as_bytes())?;
    let energy_cost = meta.plots.pareto_cost == "energy_pj";
    let cost = |m: &Metrics| if energy_cost { m.energy_pj } else { m.area as f64 };
    // Per ok point: its index in `sorted` and objectives.
    let mut ok_at: Vec<usize> = Vec::new();
    let mut objs: Vec<Objective> = Vec::new();
    let (mut rows1, mut rows2): (PlotRows, PlotRows) = (BTreeMap::new(), BTreeMap::new());
    let mut buf = Vec::new();
    for i in 0..sorted.index.len() {
        let r = sorted.get(i, &mut buf)?;
        let mut line =
            serde_json::to_string(&r).map_err(|e| Error::internal(format!("record serialization: {e}")))?;
        line.push('\n');
        sorted_jsonl.put(line.as_bytes())?;
        let mut row =
            vec![r.id.to_string(), if r.status == Status::Ok { "ok".into() } else { "skipped".into() }];
        row.extend(meta.params.iter().map(|p| value_cell(&value(&r, p))));
        match &r.metrics {
            Some(m) => row.extend(m.csv_cells()),
            None => row.extend(METRIC_COLUMNS.iter().map(|_| String::new())),
        }
        row.push(csv_cell(r.reason.as_deref().unwrap_or("")));
        let mut text = row.join(",");
        text.push('\n');
        csv.put(text.as_bytes())?;
        if let Some(m) = &r.metrics {
            ok_at.push(i);
            objs.push(Objective { quality: m.quality(), cost: cost(m), cycles: m.cycles as f64 });
            let add = |rows: &mut PlotRows, xp: &str, filter: &BTreeMap<String, Value>, y: Option<f64>| {
                if !filter.iter().all(|(p, v)| value(&r, p) == *v) {
                    return;
                }
                if let (Some(x), Some(y)) = (num(&value(&r, xp)), y) {
                    let e = rows.entry(label(&value(&r, &meta.plots.series))).or_default();
                    let g = e.entry(total_key(x)).or_insert((x, 0.0, 0.0));
                    g.1 += y;
                    g.2 += 1.0;
                }
            };
            add(&mut rows1, &meta.plots.x, &meta.plots.quality_where, Some(m.quality()));
            add(&mut rows2, &meta.plots.bias_x, &meta.plots.bias_where, m.psum_bias);
        }
    }
    sorted_jsonl.commit()?;
    csv.commit()?;

    // pareto.csv
    let front = pareto::front(&objs);
    let mut pc = String::from("id");
    for p in &meta.params {
        pc.push(',');
        pc.push_str(&csv_cell(p));
    }
    let cost_name = if energy_cost { "energy_pj" } else { "area" };
    pc.push_str(&format!(",{},{cost_name},cycles\n", meta.quality));
    for &i in &front {
        let r = sorted.get(ok_at[i], &mut buf)?;
        let m = r.metrics.as_ref().ok_or_else(|| Error::internal("a front point without metrics"))?;
        let mut row = vec![r.id.to_string()];
        row.extend(meta.params.iter().map(|p| value_cell(&value(&r, p))));
        row.push(m.quality().to_string());
        row.push(if energy_cost { m.energy_pj.to_string() } else { m.area.to_string() });
        row.push(m.cycles.to_string());
        pc.push_str(&row.join(","));
        pc.push('\n');
    }
    write_atomic(&out.join("pareto.csv"), pc.as_bytes())?;
    let n_ok = objs.len();
    let n_all = sorted.index.len();
    drop(sorted);

    // Plots.
    let qname = &meta.quality;
    let subtitle = |filter: &BTreeMap<String, Value>| {
        let mut s = format!("{}: one line per {}", meta.name, meta.plots.series);
        for (p, v) in filter {
            s.push_str(&format!(", {p} = {}", label(v)));
        }
        s.push_str("; mean over the other parameters");
        s
    };
    let s1 = series_of(rows1);
    let title1 = format!("{qname} vs {}", meta.plots.x);
    let sub1 = subtitle(&meta.plots.quality_where);
    let l1 = Labels { title: &title1, subtitle: &sub1, x: &meta.plots.x, y: qname };
    plot::write(out, "plot_quality", &plot::render(&l1, &Plot::Lines { series: &s1 })?)?;
    let s2 = series_of(rows2);
    let title2 = format!("partial-sum rounding bias vs {}", meta.plots.bias_x);
    let sub2 = subtitle(&meta.plots.bias_where);
    let l2 = Labels {
        title: &title2,
        subtitle: &sub2,
        x: &meta.plots.bias_x,
        y: "mean psum rounding error (psum LSBs)",
    };
    plot::write(out, "plot_bias", &plot::render(&l2, &Plot::Lines { series: &s2 })?)?;
    let all: Vec<(f64, f64)> = objs.iter().map(|o| (o.cost, o.quality)).collect();
    let fr: Vec<(f64, f64)> = front.iter().map(|&i| (objs[i].cost, objs[i].quality)).collect();
    let title3 = format!("Pareto front: {qname}, {cost_name}, cycles");
    let sub3 = format!(
        "{}: front over ({qname} up, {cost_name} down, cycles down), shown against {cost_name}",
        meta.name
    );
    let xl = if energy_cost { "energy per inference (pJ)" } else { "area proxy (bit-cells)" };
    let l3 = Labels { title: &title3, subtitle: &sub3, x: xl, y: qname };
    plot::write(out, "plot_pareto", &plot::render(&l3, &Plot::Scatter { all: &all, front: &fr })?)?;
    if energy_cost {
        // The same front seen against the other two objectives: energy vs
        // cycles (stalls included), the front's points in red.
        let all: Vec<(f64, f64)> = objs.iter().map(|o| (o.cycles, o.cost)).collect();
        let fr: Vec<(f64, f64)> = front.iter().map(|&i| (objs[i].cycles, objs[i].cost)).collect();
        let title4 = format!("Pareto front: {cost_name} vs cycles");
        let sub4 = format!(
            "{}: front over ({qname} up, {cost_name} down, cycles down); memory stalls included",
            meta.name
        );
        let l4 = Labels { title: &title4, subtitle: &sub4, x: "cycles per inference", y: xl };
        plot::write(
            out,
            "plot_pareto_cycles",
            &plot::render(&l4, &Plot::Scatter { all: &all, front: &fr })?,
        )?;
    }

    Ok(Summary { points: ids.len(), ok: n_ok, skipped: n_all - n_ok, evaluated: 0, pareto: front.len() })
}
