"""neurocc: compile spiking neural networks from NIR to Loihi (Lava), SpiNNaker and Cortex-M."""

from __future__ import annotations

from . import sweep  # the package, callable: neurocc.sweep(spec, client=None) -> DataFrame
from .api import QuantizationReport, VerifyReport, compile, quantization_report, verify  # noqa: E402
from .compiler.errors import (
    ArtifactError,
    CalibrationError,
    ConversionError,
    GraphError,
    InputError,
    ModelFileError,
    NeuroccError,
    NonFiniteError,
    ParameterError,
    QuantizationError,
    TargetError,
    UnsupportedLayerError,
    UnsupportedNodeError,
    VerificationError,
)
from .compiler.frontend import NeuroccWarning, load, save
from .compiler.frontend.convert import convert
from .compiler.frontend.torch_export import from_torch
from .compiler.ir import Network, Population, Projection
from .runtime.simulator import SimResult, simulate_float, simulate_int

__all__ = [
    "ArtifactError", "GraphError", "InputError", "ModelFileError", "Network", "NeuroccError", "NeuroccWarning",
    "ParameterError", "Population", "Projection", "QuantizationError", "SimResult", "TargetError",
    "UnsupportedNodeError", "VerificationError", "load", "save", "simulate", "simulate_float",
    "simulate_int", "compile", "verify", "quantization_report", "QuantizationReport", "VerifyReport",
    "convert", "from_torch", "ConversionError", "CalibrationError", "NonFiniteError", "UnsupportedLayerError",
    "sweep",
]


def simulate(net: Network, raster, latency: str = "framework") -> SimResult:
    """Float simulation of `net` on an input raster [T, *input_shape]."""
    return simulate_float(net, raster, latency=latency)
