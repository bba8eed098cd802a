"""Errors a user can cause. Each names the thing, the problem and the fix.

They live in the compiler (the lowest layer) so that every layer can raise them;
`neurocc.NeuroccError` re-exports the base class.
"""

from __future__ import annotations


class NeuroccError(Exception):
    """Base of every error a user can cause; the CLI prints it on one line and exits 2."""


class ModelFileError(NeuroccError):
    """The model file cannot be read (missing, truncated, not HDF5, not NIR)."""


class UnsupportedNodeError(NeuroccError):
    """A node type neurocc does not know."""


class GraphError(NeuroccError):
    """The graph is malformed: edges to missing nodes, shape mismatches, cycles with no neuron."""


class ParameterError(NeuroccError):
    """A parameter is NaN/Inf, out of its domain (tau <= 0), or has the wrong shape."""


class InputError(NeuroccError):
    """An input raster does not match the network."""


class QuantizationError(NeuroccError):
    """A value cannot be represented in the target's numeric format."""


class TargetError(NeuroccError):
    """A target file is malformed or a network does not fit a target."""


class ArtifactError(NeuroccError):
    """Emitted artifacts are missing, corrupt or do not match their manifest."""


class VerificationError(NeuroccError):
    """An executor's spikes differ from the reference simulator's."""


class ConversionError(NeuroccError):
    """An ANN cannot be converted to an SNN (`neurocc.convert`); the subclasses say why."""


class UnsupportedLayerError(ConversionError, UnsupportedNodeError):
    """An ANN layer (ONNX op or torch module) outside the set that converts to IF neurons."""


class CalibrationError(ConversionError, InputError):
    """The calibration set is missing, empty, or does not match the network's input."""


class NonFiniteError(ConversionError, ParameterError):
    """A weight, or an activation on the calibration set, is NaN or infinite."""
