"""Type stubs of the bitmac package (python/bitmac/__init__.py); see docs/abi.md."""

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from ._native import AsyncFifo as AsyncFifo

__version__: str
ROUND_MODES: Tuple[str, ...]
OVERFLOW_MODES: Tuple[str, ...]
PRESETS: Tuple[str, ...]

ArrayLike = npt.ArrayLike

class HwConfig:
    def __init__(self, source: Union[str, os.PathLike[str], Dict[str, Any]]) -> None: ...
    def set(self, path: str, value: Any) -> HwConfig: ...
    def to_dict(self) -> Dict[str, Any]: ...
    @property
    def rows(self) -> int: ...
    @property
    def cols(self) -> int: ...
    @property
    def dataflow(self) -> str: ...
    @property
    def acc_bits(self) -> int: ...

HwLike = Union[HwConfig, str, os.PathLike[str], Dict[str, Any]]

def gemm(
    hw: HwLike,
    a: ArrayLike,
    w: ArrayLike,
    bias: Optional[ArrayLike] = ...,
    stage: str = ...,
    engine: str = ...,
    multiplier: Optional[float] = ...,
    scales: Optional[Tuple[float, float, float]] = ...,
) -> Tuple[np.ndarray, Dict[str, Any]]: ...
def gemm_trace(
    hw: HwLike,
    a: ArrayLike,
    w: ArrayLike,
    bias: Optional[ArrayLike] = ...,
    stage: str = ...,
    multiplier: Optional[float] = ...,
    scales: Optional[Tuple[float, float, float]] = ...,
) -> Tuple[np.ndarray, Dict[str, Any], Trace]: ...

class TraceCycle:
    cycle: int
    tile: int
    kind: str
    fields: Dict[str, str]
    def values(self, key: str) -> List[Optional[int]]: ...
    @property
    def writebacks(self) -> List[Tuple[int, int, int, int, int]]: ...
    @property
    def overflows(self) -> List[Tuple[int, int]]: ...

class Trace:
    text: str
    header: Dict[str, str]
    cycles: List[TraceCycle]
    def __init__(self, text: str) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[TraceCycle]: ...
    def __getitem__(self, i: int) -> TraceCycle: ...

def round_info(x: ArrayLike, k: int, mode: str = ..., offset: int = ...) -> Dict[str, np.ndarray]: ...
def round(x: ArrayLike, k: int, mode: str = ..., offset: int = ...) -> np.ndarray: ...
def narrow(x: ArrayLike, bits: int, signed: bool = ..., mode: str = ...) -> Tuple[np.ndarray, np.ndarray]: ...
def requant(
    x: ArrayLike,
    multiplier: float,
    rounding: str = ...,
    out_bits: int = ...,
    out_signed: bool = ...,
    relu: bool = ...,
) -> Tuple[np.ndarray, np.ndarray]: ...
def quantize_multiplier(multiplier: float) -> Tuple[int, int]: ...
def layer_multiplier(s_w: float, s_a: float, s_out: float) -> float: ...
def lsq_forward(
    x: ArrayLike, kind: str, nbit: int, step: float, variant: str = ...
) -> Tuple[np.ndarray, np.ndarray]: ...
def lsq_backward(
    x: ArrayLike, grad_y: ArrayLike, kind: str, nbit: int, step: float, variant: str = ...
) -> Tuple[np.ndarray, float]: ...
