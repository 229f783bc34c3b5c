"""The exact scan kernel: scores of one query against many grids, in ONNX Runtime.

Grids are scored as the gallery stores them (scoring/quantize.py): int8 codes + 128 (uint8) with one
float16 scale per grid, against the query quantized per word to int8 (a float32 scale per word).
MatMulInteger multiplies them, uint8 x int8 with a zero point of 128 (MLAS's fast path), into int32:
    codes (N, P, D) uint8 x query (D, T) int8 -> (N, P, T) int32 -> over the patches -> (N, T)
    -> times the word scales and the grid's scale -> the kind's reduction over the words -> (N,)
(MISA: max over patches, mean over words; SISA: mean of all; MIMA: max of all). The scales are
positive, so the max over patches is taken on the int32 products and the scales multiply (N, T)
values only. bench/compact_grids.py measured it 2.4-3.6x faster than the float16 kernel (half the
bytes read, and no widening). Layout "int8-vectors" (a scale per vector: the first stage's centroids)
applies each vector's scale to its products before the reduction over the vectors. Layout "float16"
(float16 grids widened by Cast, a float32 MatMul) scores the pooled vectors of the first stage.
A per-vector kernel stops after the reduction over patches, (N, T): one pass over the grids serves
several queries' vectors at once (a combined query's terms), each query's score then reduce_words of
its columns. Scores equal matchmap.score_grids over the dequantized float32 values (the dequantized
query for int8) up to float32 summation order. A grid that is not all finite numbers scores NaN: its
scale is not finite (codes are always numbers), or for float16 its products are not, which the
graphs carry through (ONNX Runtime's ReduceMax skips NaN); the stores never return such a score.

However many grids a store hands over at once, the kernel runs on at most RUN_BYTES of them (float16
grids as widened to float32, codes as stored: ScanKernel.scores), a block that stays in a core's L2
cache. A photo's score comes from its own rows, whichever run it is in (up to float32 summation order,
as between stores that hand over chunks of other sizes).

The graph is built here as ONNX protobuf bytes (the `onnx` package is a training-side dependency).
"""

from __future__ import annotations

import numpy as np

from .matchmap import SCORES
from .quantize import ZERO

_FLOAT, _UINT8, _INT8, _FLOAT16 = 1, 2, 3, 10  # ONNX TensorProto element types
_OPSET = 17  # the last opset whose ReduceMax/ReduceMean take axes as an attribute
_IR_VERSION = 8

# The float32 bytes of widened grids one session run holds (the Cast's output, which the MatMul reads
# back). Measured on a 10k-photo gallery on two busy cores (AMD EPYC, 2 MiB L2 a core), against one
# run per store chunk (~4 MiB float16, ~8 MiB widened): an exact scan of every photo ~255 -> ~200 ms of
# CPU, a warm two-stage search the same or faster, and a process's first search ~8,200 -> ~3,600 page
# faults (~30 -> ~20 ms), since ONNX Runtime's buffers grow only to this size.
RUN_BYTES = 2 << 20


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field: varint (wire type 0) for ints, length-delimited (2) for bytes and text."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor_info(name: str, elem_type: int, dims: tuple[str, ...]) -> bytes:
    shape = b"".join(_field(1, _field(2, d)) for d in dims)  # TensorShapeProto.dim { dim_param }
    tensor = _field(1, elem_type) + _field(2, shape)  # TypeProto.Tensor
    return _field(1, name) + _field(2, _field(1, tensor))  # ValueInfoProto { name, type }


def _node(op: str, inputs: list[str], outputs: list[str], **attributes: int | list[int]) -> bytes:
    body = b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op)
    for name, value in attributes.items():
        if isinstance(value, list):  # AttributeProto { name, ints, type=INTS (7) }
            attribute = _field(1, name) + b"".join(_field(8, v) for v in value) + _field(20, 7)
        else:  # { name, i, type=INT (2) }
            attribute = _field(1, name) + _field(3, value) + _field(20, 2)
        body += _field(5, attribute)
    return body


LAYOUTS = ("float16", "int8", "int8-vectors")  # what a kernel's grids are (ScanKernel)


def scan_graph(kind: str, fused: bool = False, per_vector: bool = False, layout: str = "float16") -> bytes:
    """The serialized ONNX model that scores grids against a query for one score kind.

    layout: "float16" grids (N, P, D) float16 against a float32 query (D, T); "int8" grids as uint8
    codes with one float16 scale per grid (input `scales`, (N, 1)) against an int8 query with a float32
    scale per word (`query_scale`, (T,)), scoring/quantize.py; "int8-vectors" the same with a scale per
    vector (`scales` (N, P, 1)). fused makes it the fused score of assoc.runtime.search.query: the local
    score times an input `local_weight` (1 - λ, a scalar), plus each photo's stored global vector (input
    `pooled`, (N, D) float16) dotted with `global_query` (1, D), λ times the query's sentence vector.
    per_vector (not fused) makes its output each query vector's reduction over the patches, (N, T).
    """
    if kind not in SCORES:
        raise ValueError(f"unknown score kind {kind!r}; expected one of {SCORES}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown grid layout {layout!r}; expected one of {LAYOUTS}")
    if per_vector:
        fused = False
    if layout == "float16":
        nodes, constants, best = _float16_words(kind, per_vector)
    else:
        nodes, constants, best = _int8_words(kind, layout == "int8-vectors", per_vector)
    local = "local" if fused else "score"
    if per_vector:
        local = best
    elif kind == "mima":
        nodes.append(_node("ReduceMax", [best], [local], axes=[1], keepdims=0))
    else:
        nodes.append(_node("ReduceMean", [best], [local], axes=[1], keepdims=0))
    if fused:
        nodes += [
            _node("Mul", ["local", "local_weight"], ["scaled"]),
            _node("Cast", ["pooled"], ["pooled_wide"], to=_FLOAT),
            _node("Mul", ["pooled_wide", "global_query"], ["products"]),  # (N, D)
            _node("ReduceSum", ["products", "row_axis"], ["global"], keepdims=0),  # (N,)
            _node("Add", ["scaled", "global"], ["score"]),
        ]
        constants["row_axis"] = [1]
    nodes.append(_node("Add", [local if per_vector else "score", "poison"], ["scores"]))
    name = f"assoc-scan-{layout}-{kind}{'-fused' if fused else ''}{'-per-vector' if per_vector else ''}"
    graph = b"".join(_field(1, n) for n in nodes) + _field(2, name)
    if layout != "float16":
        graph += _field(5, _tensor("zero", _UINT8, [], _field(9, bytes([ZERO]))))  # raw_data
    for constant, values in constants.items():
        graph += _field(5, _int64_tensor(constant, values))
    if layout == "float16":
        graph += _field(11, _tensor_info("grids", _FLOAT16, ("N", "P", "D")))
        graph += _field(11, _tensor_info("query", _FLOAT, ("D", "T")))
    else:
        graph += _field(11, _tensor_info("grids", _UINT8, ("N", "P", "D")))
        scale_dims = ("N", "P", "1") if layout == "int8-vectors" else ("N", "1")
        graph += _field(11, _tensor_info("scales", _FLOAT16, scale_dims))
        graph += _field(11, _tensor_info("query", _INT8, ("D", "T")))
        graph += _field(11, _tensor_info("query_scale", _FLOAT, ("T",)))
    if fused:
        graph += _field(11, _tensor_info("pooled", _FLOAT16, ("N", "D")))
        graph += _field(11, _tensor_info("global_query", _FLOAT, ("1", "D")))
        graph += _field(11, _tensor_info("local_weight", _FLOAT, ()))
    graph += _field(12, _tensor_info("scores", _FLOAT, ("N", "T") if per_vector else ("N",)))
    opset = _field(1, "") + _field(2, _OPSET)
    return _field(1, _IR_VERSION) + _field(8, opset) + _field(7, graph)


def _float16_words(kind: str, per_vector: bool) -> tuple[list[bytes], dict[str, list[int]], str]:
    """float16 grids -> Cast float32 -> MatMul query (D, T) -> (N, P, T) -> over the patches, the max
    (MISA, MIMA) or the mean (SISA): "best" (N, T); and the "poison", (N, T) per vector, else (N,).

    ReduceMax skips NaN; the matchmap's sum does not (nor infinities): sum - sum over the patches is 0
    for a column of finite products and NaN otherwise, so a grid holding any NaN or infinity scores NaN."""
    reduce = "ReduceMean" if kind == "sisa" else "ReduceMax"
    nodes = [
        _node("Cast", ["grids"], ["wide"], to=_FLOAT),
        _node("MatMul", ["wide", "query"], ["mm"]),
        _node(reduce, ["mm"], ["best"], axes=[1], keepdims=0),
        _node("ReduceSum", ["mm", "patch_axis"], ["total"], keepdims=0),  # (N, T)
        _node("Sub", ["total", "total"], ["poison" if per_vector else "column_poison"]),
    ]
    if not per_vector:
        nodes.append(_node("ReduceSum", ["column_poison", "patch_axis"], ["poison"], keepdims=0))  # (N,)
    return nodes, {"patch_axis": [1]}, "best"


def _int8_words(kind: str, per_vector_scales: bool, per_vector: bool) -> tuple[list[bytes], dict[str, list[int]], str]:
    """uint8 codes (zero point 128) x int8 query -> MatMulInteger -> int32 (N, P, T) -> over the patches
    -> times the word scales and the grid's scale: "words" (N, T); and the "poison": 0 for a finite
    scale, NaN for one that is not (codes are always numbers: a grid that was not has such a scale).

    With one scale per grid, the max over patches is taken on the int32 products (scales are positive,
    so it commutes with them) and the scales multiply (N, T) values only; with a scale per vector, the
    scales multiply every product before the reduction over the vectors."""
    nodes = [
        _node("MatMulInteger", ["grids", "query", "zero"], ["mm"]),
        _node("Cast", ["scales"], ["scales_wide"], to=_FLOAT),
    ]
    reduce = "ReduceMean" if kind == "sisa" else "ReduceMax"
    if per_vector_scales:
        nodes += [
            _node("Cast", ["mm"], ["mm_wide"], to=_FLOAT),
            _node("Mul", ["mm_wide", "scales_wide"], ["scaled_mm"]),  # (N, P, T) * (N, P, 1)
            _node(reduce, ["scaled_mm"], ["best"], axes=[1], keepdims=0),
            _node("Mul", ["best", "query_scale"], ["words"]),
            _node("ReduceSum", ["scales_wide", "patch_axis"], ["scale_sum"], keepdims=0),  # (N, 1)
        ]
        constants = {"patch_axis": [1]}
        scale_sum = "scale_sum"
    else:
        if kind == "sisa":  # a mean needs float32 (int32 sums could overflow on large grids)
            nodes += [
                _node("Cast", ["mm"], ["mm_wide"], to=_FLOAT),
                _node(reduce, ["mm_wide"], ["best"], axes=[1], keepdims=0),
            ]
        else:
            nodes += [
                _node(reduce, ["mm"], ["best_int"], axes=[1], keepdims=0),
                _node("Cast", ["best_int"], ["best"], to=_FLOAT),
            ]
        nodes += [
            _node("Mul", ["best", "query_scale"], ["word_scaled"]),
            _node("Mul", ["word_scaled", "scales_wide"], ["words"]),  # (N, T) * (N, 1)
        ]
        constants = {}
        scale_sum = "scales_wide"
    nodes.append(_node("Sub", [scale_sum, scale_sum], ["poison_column"]))  # (N, 1)
    if per_vector:
        nodes.append(_node("Identity", ["poison_column"], ["poison"]))
    else:
        nodes.append(_node("ReduceSum", ["poison_column", "word_axis"], ["poison"], keepdims=0))  # (N,)
        constants["word_axis"] = [1]
    return nodes, constants, "words"


def reduce_words(kind: str, best: np.ndarray) -> np.ndarray:
    """(N,) scores from a per-vector kernel's (N, T) columns of one query: the rest of the kind's reduction."""
    return best.max(axis=1) if kind == "mima" else best.mean(axis=1)


def _tensor(name: str, elem_type: int, dims: list[int], data: bytes) -> bytes:
    """TensorProto { dims, data_type, <data field>, name }: a constant of the graph."""
    return b"".join(_field(1, d) for d in dims) + _field(2, elem_type) + data + _field(8, name)


def _int64_tensor(name: str, values: list[int]) -> bytes:
    """TensorProto { dims, data_type: INT64 (7), int64_data, name }: a constant of the graph."""
    return _field(1, len(values)) + _field(2, 7) + b"".join(_field(7, v) for v in values) + _field(8, name)


class ScanKernel:
    """Scores grids (N, P, D) of one layout (scan_graph) against one query for one score kind; reuse it.

    A fused kernel (scan_graph) also takes the photos' global vectors and the fused term's weights."""

    def __init__(
        self,
        kind: str,
        threads: int | None = None,
        fused: bool = False,
        per_vector: bool = False,
        layout: str = "float16",
    ) -> None:
        import onnxruntime as ort  # here, not at import: opening a gallery to describe it needs no kernel

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Worker threads that spin after a run take the cores from the numpy work between runs (the
        # next gather of grids, the merge of scores): off, a process's first search on two busy cores
        # measured ~140 -> ~70 ms and a warm one ~60 -> ~20 ms.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Runs differ in shape (the last rows of a chunk, each stage's grid): a memory pattern is planned
        # and allocated anew for each shape, where the arena's freed blocks serve them all (a process's
        # second search measured ~1,300 -> ~130 page faults).
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        self.kind = kind
        self.fused = fused and not per_vector
        self.per_vector = per_vector
        self.layout = layout
        graph = scan_graph(kind, fused, per_vector, layout)
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def scores(
        self,
        grids: np.ndarray,
        query_t: np.ndarray,
        fused: tuple[np.ndarray, np.ndarray, np.float32] | None = None,
        scales: np.ndarray | None = None,
        query_scales: np.ndarray | None = None,
    ) -> np.ndarray:
        """grids (N, P, D) (a memory map is read in place), query_t (D, T) -> (N,) float32 ((N, T) for a
        per-vector kernel). float16: float16 grids, a float32 query. int8 layouts: uint8 codes and their
        float16 scales ((N,) a grid, or (N, P) a vector), the query's int8 codes and float32 word scales
        (T,) (scoring/quantize.py). A fused kernel also takes (pooled (N, D) float16, λ * sentence vector
        (D, 1), 1 - λ)."""
        if len(grids) == 0:
            return np.empty((0, query_t.shape[1]) if self.per_vector else 0, np.float32)
        feeds = {"query": query_t}
        if self.layout != "float16":
            feeds["query_scale"] = np.asarray(query_scales, np.float32)
            scales = np.asarray(scales).reshape(len(grids), -1, 1)  # (N, 1, 1) or (N, P, 1)
            if self.layout == "int8":
                scales = scales[:, :, 0]
        if self.fused:
            pooled, global_query, local_weight = fused
            feeds["global_query"] = np.ascontiguousarray(np.asarray(global_query, np.float32).reshape(1, -1))
            feeds["local_weight"] = np.asarray(local_weight, np.float32)
        widened = 4 if self.layout == "float16" else 1  # float16 grids are widened to float32 in a run
        step = max(1, RUN_BYTES // (widened * grids.shape[1] * grids.shape[2]))
        out = []
        for start in range(0, len(grids), step):
            feeds["grids"] = grids[start : start + step]
            if scales is not None:
                feeds["scales"] = scales[start : start + step]
            if self.fused:
                feeds["pooled"] = pooled[start : start + step]
            out.append(self._session.run(None, feeds)[0])
        return out[0] if len(out) == 1 else np.concatenate(out)
