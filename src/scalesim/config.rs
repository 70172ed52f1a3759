//! SCALE-Sim's `.cfg` file: an INI file as Python's `configparser` reads it.
//!
//! Accepted syntax (the subset of `configparser`'s defaults that SCALE-Sim
//! configs use, with its strictness kept):
//! - `[section]` headers; `key = value` or `key : value` (the first `=` or
//!   `:` splits); keys are case-insensitive and trimmed, values trimmed;
//! - whole-line comments starting with `#` or `;`; blank lines;
//! - an indented line after an option continues its value (joined with a
//!   newline, so a continued number is then rejected as not a number);
//! - inline comments are NOT stripped (configparser's default), so
//!   `ArrayHeight: 32 # rows` is rejected, as SCALE-Sim would crash on it;
//! - a key before any section, a line that is neither, a duplicate section or
//!   a duplicate key in one section are errors naming the file and line.
//!
//! Only the keys bitmac uses are read; every other key and section is
//! ignored (SCALE-Sim itself requires about 30 keys and crashes without them;
//! bitmac needs only the array size and dataflow). See `docs/scalesim.md`.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

use super::Dataflow;

/// How SCALE-Sim models DRAM bandwidth (`[run_presets] InterfaceBandwidth`).
/// bitmac reproduces both modes exactly (`docs/scalesim.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BandwidthMode {
    /// `CALC`: SCALE-Sim estimates the bandwidth needed; its SRAM read
    /// buffers never stall.
    Calc,
    /// `USER`: user-given DRAM bandwidths; the read buffers (SCALE-Sim's
    /// `read_buffer.py`) stall on late prefetches.
    User(UserBandwidth),
}

/// The DRAM bandwidths (words per cycle) of `USER` mode, from the keys
/// SCALE-Sim 3.0.0 actually reads (not the ones the names suggest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserBandwidth {
    /// Ifmap DRAM read bandwidth: `[layout] IfmapSRAMBankBandwidth`.
    pub ifmap: u64,
    /// Filter DRAM read bandwidth: `[layout] FilterSRAMBankBandwidth`.
    pub filter: u64,
    /// Ofmap DRAM write line width: the first comma-separated value of
    /// `[architecture_presets] Bandwidth`.
    pub ofmap: u64,
}

/// The validated subset of a SCALE-Sim config that bitmac uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleSimConfig {
    /// `[general] run_name` (SCALE-Sim names its output folder after it).
    pub run_name: String,
    /// `ArrayHeight`: PE rows, 1..=65536.
    pub rows: u32,
    /// `ArrayWidth`: PE columns, 1..=65536.
    pub cols: u32,
    /// `Dataflow`: `os`, `ws` or `is` (exact, lower case, as SCALE-Sim compares).
    pub dataflow: Dataflow,
    /// `IfmapSramSzkB` (default 256, SCALE-Sim's built-in default), 1..=2^20.
    pub ifmap_sram_kb: u64,
    /// `FilterSramSzkB` (default 256), 1..=2^20.
    pub filter_sram_kb: u64,
    /// `OfmapSramSzkB` (default 128), 1..=2^20.
    pub ofmap_sram_kb: u64,
    /// `InterfaceBandwidth` (default `CALC`).
    pub bandwidth_mode: BandwidthMode,
}

/// Largest array side accepted (SCALE-Sim has no limit; this keeps every
/// product of dimensions far inside u64).
pub const MAX_ARRAY_SIDE: u32 = 65536;
const MAX_SRAM_KB: u64 = 1 << 20;

/// A parsed INI file: section -> key -> (value, line).
struct Ini {
    sections: BTreeMap<String, BTreeMap<String, (String, usize)>>,
}

impl Ini {
    fn parse(text: &str, origin: &str) -> Result<Ini> {
        let mut sections: BTreeMap<String, BTreeMap<String, (String, usize)>> = BTreeMap::new();
        let mut current: Option<String> = None;
        // The key last defined (for continuation lines), with its indent.
        let mut last_key: Option<(String, usize)> = None;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            let at = |msg: String| Error::input(format!("{origin}:{lineno}: {msg}"));
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let (Some((key, key_indent)), Some(sec)) = (&last_key, &current) {
                if indent > *key_indent {
                    let entry = sections.get_mut(sec).and_then(|s| s.get_mut(key));
                    if let Some((value, _)) = entry {
                        value.push('\n');
                        value.push_str(trimmed);
                    }
                    continue;
                }
            }
            if trimmed.starts_with('[') {
                if !trimmed.ends_with(']') || trimmed.len() < 3 {
                    return Err(at(format!("malformed section header {trimmed:?} (expected [name])")));
                }
                let name = trimmed[1..trimmed.len() - 1].to_string();
                if sections.contains_key(&name) {
                    return Err(at(format!("duplicate section [{name}]")));
                }
                sections.insert(name.clone(), BTreeMap::new());
                current = Some(name);
                last_key = None;
                continue;
            }
            let Some(split) = trimmed.find(['=', ':']) else {
                return Err(at(format!(
                    "malformed line {trimmed:?} (expected `key = value` or `[section]`)"
                )));
            };
            let key = trimmed[..split].trim().to_ascii_lowercase();
            let value = trimmed[split + 1..].trim().to_string();
            if key.is_empty() {
                return Err(at(format!("malformed line {trimmed:?} (empty key)")));
            }
            let Some(sec) = &current else {
                return Err(at(format!("{key:?} appears before any [section] header")));
            };
            let map = sections.get_mut(sec).expect("current section exists");
            if map.contains_key(&key) {
                return Err(at(format!("duplicate key {key:?} in section [{sec}]")));
            }
            map.insert(key.clone(), (value, lineno));
            last_key = Some((key, indent));
        }
        Ok(Ini { sections })
    }

    /// Look `key` up in `section`, then in `[DEFAULT]` (configparser's
    /// fallback). Keys are matched case-insensitively.
    fn get(&self, section: &str, key: &str) -> Option<&(String, usize)> {
        let key = key.to_ascii_lowercase();
        self.sections
            .get(section)
            .and_then(|s| s.get(&key))
            .or_else(|| self.sections.get("DEFAULT").and_then(|s| s.get(&key)))
    }
}

impl ScaleSimConfig {
    /// Read and validate a SCALE-Sim config file. Errors name the file, and
    /// the line where there is one.
    pub fn read(path: &Path) -> Result<ScaleSimConfig> {
        let text = crate::io::read_to_string(path)?;
        ScaleSimConfig::parse(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ScaleSimConfig> {
        let ini = Ini::parse(text, origin)?;
        const ARCH: &str = "architecture_presets";
        let required = |key: &str| -> Result<&(String, usize)> {
            ini.get(ARCH, key)
                .ok_or_else(|| Error::input(format!("{origin}: [{ARCH}] {key}: missing (required)")))
        };
        let int_in = |key: &str, (value, line): &(String, usize), lo: u64, hi: u64| -> Result<u64> {
            let err = || {
                Error::input(format!(
                    "{origin}:{line}: {key}: {value:?} is out of range (allowed: an integer in {lo}..={hi})"
                ))
            };
            let v = parse_py_uint(value).ok_or_else(err)?;
            if v < lo || v > hi {
                return Err(err());
            }
            Ok(v)
        };
        let side = MAX_ARRAY_SIDE as u64;
        let rows = int_in("ArrayHeight", required("ArrayHeight")?, 1, side)? as u32;
        let cols = int_in("ArrayWidth", required("ArrayWidth")?, 1, side)? as u32;
        let (df_text, df_line) = required("Dataflow")?;
        let dataflow = match df_text.as_str() {
            "os" => Dataflow::Os,
            "ws" => Dataflow::Ws,
            "is" => Dataflow::Is,
            other => {
                return Err(Error::input(format!(
                    "{origin}:{df_line}: Dataflow: {other:?} is out of range (allowed: os, ws, is)"
                )))
            }
        };
        let sram = |key: &str, default: u64| -> Result<u64> {
            match ini.get(ARCH, key) {
                Some(v) => int_in(key, v, 1, MAX_SRAM_KB),
                None => Ok(default),
            }
        };
        let ifmap_sram_kb = sram("IfmapSramSzkB", 256)?;
        let filter_sram_kb = sram("FilterSramSzkB", 256)?;
        let ofmap_sram_kb = sram("OfmapSramSzkB", 128)?;
        let bandwidth_mode = match ini.get("run_presets", "InterfaceBandwidth") {
            None => BandwidthMode::Calc,
            Some((v, _)) if v == "CALC" => BandwidthMode::Calc,
            Some((v, _)) if v == "USER" => BandwidthMode::User(user_bandwidth(&ini, origin)?),
            Some((v, line)) => {
                return Err(Error::input(format!(
                    "{origin}:{line}: InterfaceBandwidth: {v:?} is out of range (allowed: CALC, USER)"
                )))
            }
        };
        if let Some((v, line)) = ini.get("sparsity", "SparsitySupport") {
            if v.eq_ignore_ascii_case("true") {
                return Err(Error::input(format!(
                    "{origin}:{line}: SparsitySupport: true is not supported by bitmac scalesim (allowed: false)"
                )));
            }
        }
        let run_name =
            ini.get("general", "run_name").map(|(v, _)| v.clone()).unwrap_or_else(|| "scale_run".into());
        Ok(ScaleSimConfig {
            run_name,
            rows,
            cols,
            dataflow,
            ifmap_sram_kb,
            filter_sram_kb,
            ofmap_sram_kb,
            bandwidth_mode,
        })
    }
}

/// Largest DRAM bandwidth accepted in USER mode (words per cycle).
const MAX_BANDWIDTH: u64 = 1 << 20;

/// The USER-mode keys, validated as SCALE-Sim 3.0.0 uses them
/// (`scale_config.py`, `single_layer_sim.py`, `read_buffer.py`): the ifmap
/// and filter DRAM bandwidths are `[layout] IfmapSRAMBankBandwidth` /
/// `FilterSRAMBankBandwidth` (each must be divisible by its `...SRAMBankNum`,
/// SCALE-Sim asserts), the ofmap's is the first value of
/// `[architecture_presets] Bandwidth`. Custom layouts and Ramulator traces
/// change SCALE-Sim's USER path and are rejected.
fn user_bandwidth(ini: &Ini, origin: &str) -> Result<UserBandwidth> {
    const LAYOUT: &str = "layout";
    let need = |sec: &str, key: &str| -> Result<&(String, usize)> {
        ini.get(sec, key).ok_or_else(|| {
            Error::input(format!("{origin}: [{sec}] {key}: missing (required with InterfaceBandwidth: USER)"))
        })
    };
    let int = |key: &str, (value, line): &(String, usize)| -> Result<u64> {
        parse_py_uint(value).filter(|v| (1..=MAX_BANDWIDTH).contains(v)).ok_or_else(|| {
            Error::input(format!(
                "{origin}:{line}: {key}: {value:?} is out of range (allowed: an integer in 1..={MAX_BANDWIDTH})"
            ))
        })
    };
    let mut read_bw = [0u64; 2];
    for (slot, op) in read_bw.iter_mut().zip(["Ifmap", "Filter"]) {
        let bw_key = format!("{op}SRAMBankBandwidth");
        let num_key = format!("{op}SRAMBankNum");
        let bw_entry = need(LAYOUT, &bw_key)?;
        let bw = int(&bw_key, bw_entry)?;
        let num = int(&num_key, need(LAYOUT, &num_key)?)?;
        if bw % num != 0 {
            return Err(Error::input(format!(
                "{origin}:{}: {bw_key}: {bw} is not divisible by {num_key} = {num} (SCALE-Sim asserts it is)",
                bw_entry.1
            )));
        }
        *slot = bw;
        let layout_key = format!("{op}CustomLayout");
        if let Some((v, line)) = ini.get(LAYOUT, &layout_key) {
            match v.to_ascii_lowercase().as_str() {
                "0" | "no" | "false" | "off" => {}
                "1" | "yes" | "true" | "on" => {
                    return Err(Error::input(format!(
                    "{origin}:{line}: {layout_key}: {v:?} is not supported by bitmac scalesim in USER mode \
                         (allowed: False)"
                )))
                }
                _ => {
                    return Err(Error::input(format!(
                        "{origin}:{line}: {layout_key}: {v:?} is out of range (allowed: a boolean, False)"
                    )))
                }
            }
        }
    }
    if let Some((v, line)) = ini.get("run_presets", "UseRamulatorTrace") {
        // SCALE-Sim compares the exact string.
        if v == "True" {
            return Err(Error::input(format!(
                "{origin}:{line}: UseRamulatorTrace: True is not supported by bitmac scalesim in USER mode \
                 (allowed: False; it needs Ramulator's latency files)"
            )));
        }
    }
    let (text, line) = need("architecture_presets", "Bandwidth")?;
    let mut ofmap = None;
    for part in text.split(',') {
        let v = int("Bandwidth", &(part.to_string(), *line))?;
        ofmap.get_or_insert(v);
    }
    let ofmap = ofmap.expect("split yields at least one part");
    Ok(UserBandwidth { ifmap: read_bw[0], filter: read_bw[1], ofmap })
}

/// Parse an unsigned integer as Python's `int(str)` does for the forms seen
/// in practice: surrounding whitespace, an optional `+`, decimal digits with
/// single `_` separators between digits. Returns None otherwise or on
/// overflow of u64.
pub(crate) fn parse_py_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    let mut v: u64 = 0;
    for c in s.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)? as u64;
        v = v.checked_mul(10)?.checked_add(d)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[architecture_presets]\nArrayHeight: 8\nArrayWidth = 16\nDataflow : ws\n";

    #[test]
    fn minimal_config_uses_scalesim_defaults() {
        let c = ScaleSimConfig::parse(MIN, "x.cfg").unwrap();
        assert_eq!((c.rows, c.cols, c.dataflow), (8, 16, Dataflow::Ws));
        assert_eq!((c.ifmap_sram_kb, c.filter_sram_kb, c.ofmap_sram_kb), (256, 256, 128));
        assert_eq!(c.bandwidth_mode, BandwidthMode::Calc);
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_keys_ignored() {
        let t = "# c\n[general]\nrun_name = r\n[architecture_presets]\narrayheight: 4\nARRAYWIDTH: 2\n\
                 Dataflow : os\nWhatever: 7\n[other]\nx = y\n";
        let c = ScaleSimConfig::parse(t, "x.cfg").unwrap();
        assert_eq!((c.rows, c.cols, c.run_name.as_str()), (4, 2, "r"));
    }

    fn err(t: &str) -> String {
        let e = ScaleSimConfig::parse(t, "x.cfg").unwrap_err();
        assert!(e.is_input());
        let s = e.to_string();
        assert!(!s.contains('\n'));
        s
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        assert!(err("ArrayHeight: 3\n").starts_with("x.cfg:1:"));
        assert!(err("[architecture_presets]\nArrayHeight 3\n").starts_with("x.cfg:2:"));
        assert!(err("[a]\n[a]\n").starts_with("x.cfg:2: duplicate section"));
        assert!(err("[a]\nk=1\nK=2\n").starts_with("x.cfg:3: duplicate key"));
        assert!(err("[a\n").starts_with("x.cfg:1: malformed section"));
        let e = err(&MIN.replace("ArrayHeight: 8", "ArrayHeight: 0"));
        assert!(e.starts_with("x.cfg:2: ArrayHeight"), "{e}");
        assert!(err(&MIN.replace(": 8", ": 8 # rows")).starts_with("x.cfg:2: ArrayHeight"));
        assert!(err(&MIN.replace("ws", "WS")).starts_with("x.cfg:4: Dataflow"));
        assert!(err(&MIN.replace("ArrayWidth = 16\n", "")).contains("ArrayWidth: missing"));
        assert!(err(&format!("{MIN}[run_presets]\nInterfaceBandwidth: FOO\n")).contains("InterfaceBandwidth"));
        assert!(err(&format!("{MIN}[sparsity]\nSparsitySupport : true\n")).contains("SparsitySupport"));
    }

    const USER: &str =
        "[architecture_presets]\nArrayHeight: 8\nArrayWidth: 16\nDataflow: ws\nBandwidth: 3, 7\n\
                        [layout]\nIfmapSRAMBankBandwidth: 4\nIfmapSRAMBankNum: 2\n\
                        FilterSRAMBankBandwidth: 6\nFilterSRAMBankNum: 3\nIfmapCustomLayout: False\n\
                        [run_presets]\nInterfaceBandwidth: USER\nUseRamulatorTrace: False\n";

    #[test]
    fn user_mode_reads_the_keys_scalesim_reads() {
        let c = ScaleSimConfig::parse(USER, "u.cfg").unwrap();
        // Ifmap/filter DRAM bandwidths from [layout], the ofmap's from the
        // first value of Bandwidth.
        assert_eq!(c.bandwidth_mode, BandwidthMode::User(UserBandwidth { ifmap: 4, filter: 6, ofmap: 3 }));
        let e = |from: &str, to: &str| err(&USER.replace(from, to));
        assert!(
            e("IfmapSRAMBankNum: 2", "IfmapSRAMBankNum: 3").starts_with("x.cfg:7: IfmapSRAMBankBandwidth")
        );
        assert!(e("FilterSRAMBankBandwidth: 6\n", "").contains("FilterSRAMBankBandwidth: missing"));
        assert!(e("Bandwidth: 3, 7\n", "").contains("Bandwidth: missing"));
        assert!(e("Bandwidth: 3, 7", "Bandwidth: 0").starts_with("x.cfg:5: Bandwidth"));
        assert!(e("Bandwidth: 3, 7", "Bandwidth: 3, x").starts_with("x.cfg:5: Bandwidth"));
        assert!(e("IfmapCustomLayout: False", "IfmapCustomLayout: true").contains("not supported"));
        assert!(e("IfmapCustomLayout: False", "IfmapCustomLayout: maybe").contains("IfmapCustomLayout"));
        assert!(e("UseRamulatorTrace: False", "UseRamulatorTrace: True").contains("UseRamulatorTrace"));
        // CALC mode needs none of these keys.
        let calc =
            ScaleSimConfig::parse(&USER.replace("USER", "CALC").replace("Bandwidth: 3, 7\n", ""), "c.cfg");
        assert_eq!(calc.unwrap().bandwidth_mode, BandwidthMode::Calc);
    }

    #[test]
    fn continuation_lines_join_the_value() {
        assert!(err("[architecture_presets]\nArrayHeight: 8\n  9\nArrayWidth: 1\nDataflow: os\n")
            .contains("ArrayHeight"));
    }

    #[test]
    fn python_int_forms() {
        assert_eq!(parse_py_uint(" +1_000 "), Some(1000));
        assert_eq!(parse_py_uint("12"), Some(12));
        for bad in ["", "-1", "1__0", "_1", "1_", "0x10", "1.0", "99999999999999999999999"] {
            assert_eq!(parse_py_uint(bad), None, "{bad}");
        }
    }
}
