"""The native module (python/src/lib.rs); use the wrappers in bitmac instead."""

from typing import List, Optional, Tuple

__version__: str

class HwConfig:
    @staticmethod
    def load(path: str) -> HwConfig: ...
    @staticmethod
    def from_json(text: str, what: str) -> HwConfig: ...
    def set(self, path: str, value: str) -> None: ...
    def to_json(self) -> str: ...
    rows: int
    cols: int
    dataflow: str
    acc_bits: int
    what: str

def preset_names() -> List[str]: ...
def preset(name: str) -> HwConfig: ...
def gemm(
    hw: HwConfig,
    a: bytes,
    a_shape: Tuple[int, int],
    w: bytes,
    w_shape: Tuple[int, int],
    bias: Optional[bytes],
    stage: str,
    engine: str,
    multiplier: Optional[float],
    scales: Optional[Tuple[float, float, float]],
    trace: bool,
) -> Tuple[bytes, int, int, str, str, Optional[str], Optional[str]]: ...
def round(x: bytes, k: int, mode: str, offset: int) -> Tuple[bytes, bytes, bytes, bytes]: ...
def narrow(x: bytes, bits: int, signed: bool, mode: str) -> Tuple[bytes, bytes]: ...
def requant(
    x: bytes, multiplier: float, rounding: str, out_bits: int, out_signed: bool, relu: bool
) -> Tuple[bytes, bytes]: ...
def quantize_multiplier_q31(multiplier: float) -> Tuple[int, int]: ...
def layer_multiplier(s_w: float, s_a: float, s_out: float) -> float: ...
def lsq_forward(x: bytes, kind: str, variant: str, nbit: int, step: float) -> Tuple[bytes, bytes]: ...
def lsq_backward(
    x: bytes, grad_y: bytes, kind: str, variant: str, nbit: int, step: float
) -> Tuple[bytes, float]: ...

class AsyncFifo:
    """The stepping async FIFO (docs/cdc.md §3-§4), in its reset state."""

    def __init__(self, depth: int = 16, sync: int = 2, data_width: int = 8) -> None: ...
    def write_edge(self, wen: bool, data: int) -> bool: ...
    def read_edge(self, ren: bool) -> Optional[int]: ...
    def both_edges(self, wen: bool, data: int, ren: bool) -> Tuple[bool, Optional[int]]: ...
    def reset(self) -> None: ...
    wfull: bool
    rempty: bool
    wptr: int
    rptr: int
    wbin: int
    rbin: int
    wq_rptr: int
    rq_wptr: int
    rdata: Optional[int]
    occupancy: int
    write_edges: int
    read_edges: int
    depth: int
    sync: int
    data_width: int
