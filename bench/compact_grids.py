"""Compact patch grids: which stored layout keeps the float16 ranking, what the exact scan costs on it
and how far that is from the machine's bound, and how many bytes a photo takes.

Layouts of a photo's grid (P = h*w patch vectors of D values; the pooled vector stays float16):
    f16       float16, as the gallery's format 3 shards hold it (the baseline)
    bf16      bfloat16 (the same bytes; a reference), rounded to nearest even from the float16 values
    i8-vec    int8 codes, one float16 scale per patch vector (symmetric: scale = max|x| / 127)
    i8-row    int8 codes, one float16 scale per photo (max over its whole grid)
The int8 codes are stored offset by 128 (as uint8: code + 128), which is what ONNX Runtime's fast
MatMulInteger path takes (uint8 x int8; int8 x int8 runs at a tenth of its speed here). The first
stage's centroids stay float16 or become int8 with one float16 scale per centroid (`c8`).

1. Agreement, on REAL grids: all 7,091 Flickr8k photos encoded by the bundle (cached in --cache, shared
   with bench/first_stage.py), searched with --captions dev captions as `assoc query` ranks them
   (Query.of_text: the bundle's token weights, score kind and fused global term). For each layout, the
   share of the float16 exact top 10 that its exact top 10 keeps, the max and mean |score difference|
   over every (caption, photo), R@1 / R@10 of each caption's own photo, and the share kept through the
   gallery's two stages (pooled -> shortlist -> centroids -> candidates -> exact) with float16 and
   with int8 centroids, for the bundle's plan (search_plan) and a --tight one. `+q8` rows: the query
   quantized too (int8 per word, what MatMulInteger scores). Scores here are numpy float32 over the
   stored values (what every kernel computes, up to summation order; the correctness check below
   holds each kernel to it).
2. Speed of the exact scan, at --threads ONNX Runtime / BLAS threads (default 1), per layout and
   kernel, over N synthetic photos (common.synthetic_batches, unit-normalised; cost does not depend on
   content): --resident photos are held in memory per layout, and a larger N reads them again in turn
   (every chunk still comes from DRAM: the arrays are many times the CPU caches). Chunks as the
   gallery's search takes them (SEARCH_CHUNK_BYTES of stored grid bytes, so int8 chunks hold twice the
   photos). Every kernel gives the fused score of the shipped ranking and a top 10; ms per scan and per
   10k photos (median of --rounds x --queries calls, kernels interleaved within each round). Kernels:
   f16: the gallery's scan kernel (runtime/scoring/scan.py). bf16: ONNX Runtime Cast + MatMul; numpy
   (bits shifted to float32) + matmul. int8: numpy (widen to float32 per chunk, matmul); ONNX Runtime
   DequantizeLinear + MatMul; Cast + MatMul with the scale and offset applied after it (a row's scale
   after the max over patches); MatMulInteger with the query quantized per word to int8 (`s8 query`)
   or uint8 (`u8 query`), the max over patches taken on the int32 products for a row scale.
   The bound: the machine's limits measured in the same run: a numpy streaming read (uint64 sum) of
   the same stored bytes (grid codes, scales, pooled vectors) is the memory floor; 2*N*P*D*T
   operations at the float32 GEMM peak (numpy and ONNX Runtime, best of a square and the scan's own
   shape) or, for MatMulInteger, the uint8 x int8 GEMM peak, the compute floor; bound = the larger.
   Also: the row checksums a search verifies (shard_files.row_checksums) over the same chunks.
3. Bytes per photo of each layout: grid + scales + pooled + centroids, and the catalogue (SQLite)
   measured on a real Gallery of --catalogue photos with their real paths.

Correctness first: every kernel against a float32 numpy reference (matchmap.score_grids over the
layout's decoded values, plus the fused term) on a small case; a kernel that disagrees stops the run.

Run:
    python bench/compact_grids.py
    python bench/compact_grids.py --captions 200 --sizes 10000 --rounds 3 --json compact.json
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from common import (
    FLICKR,
    add_common_options,
    flickr_captions,
    flickr_dev_images,
    open_bundle,
    synthetic_batches,
    write_json,
)
from first_stage import all_grids, fill, top
from query_latency import word_queries
from threadpoolctl import threadpool_limits

from assoc.runtime.encoding.bundle import Bundle
from assoc.runtime.encoding.encoders import TextEncoder
from assoc.runtime.indexing.indexer import available_memory
from assoc.runtime.scoring.first_stage import pooled_vectors, reduce_grids
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.scan import ScanKernel
from assoc.runtime.search.pipeline import SearchPlan, search_plan
from assoc.runtime.search.query import Query
from assoc.runtime.stores.shard_files import SEARCH_CHUNK_BYTES, row_checksums

TOP = 10
LEVELS = 127  # symmetric int8: codes -127..127
ZERO = 128  # the stored offset of the int8 codes (uint8 = code + 128)
LAYOUTS = ("f16", "bf16", "i8-vec", "i8-row")
SPEED_WORDS = (6, 15)
AGREEMENT_PHOTOS = 32  # photos scored at once against every caption's vectors (bounds the matchmap)


# ---------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Stored:
    """Some photos' grids in one layout: codes (n, P, D) and scales ((n, P), (n,) or None), float16."""

    layout: str
    codes: np.ndarray  # float16 | uint16 (bfloat16 bits) | uint8 (int8 code + ZERO)
    scales: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> Stored:
        return replace(
            self, codes=self.codes[start:stop], scales=None if self.scales is None else self.scales[start:stop]
        )

    @property
    def photo_bytes(self) -> int:
        """Stored bytes per photo of the grid and its scales."""
        scales = 0 if self.scales is None else self.scales[0].nbytes
        return self.codes[0].nbytes + scales

    def decoded(self) -> np.ndarray:
        """(n, P, D) float32 values the codes stand for."""
        if self.layout == "f16":
            return self.codes.astype(np.float32)
        if self.layout == "bf16":
            return (self.codes.astype(np.uint32) << 16).view(np.float32)
        values = self.codes.astype(np.float32) - ZERO
        scales = self.scales.astype(np.float32)
        return values * (scales[..., None] if self.layout == "i8-vec" else scales[:, None, None])


def store(grids: np.ndarray, layout: str, batch: int = 1000) -> Stored:
    """float16 grids (N, P, D) in a layout (batch photos at a time: bounds the float32 temporaries)."""
    if layout == "f16":
        return Stored(layout, grids)
    parts = [_store(grids[i : i + batch].astype(np.float32), layout) for i in range(0, len(grids), batch)]
    scales = None if parts[0].scales is None else np.concatenate([p.scales for p in parts])
    return Stored(layout, np.concatenate([p.codes for p in parts]), scales)


def _store(x: np.ndarray, layout: str) -> Stored:
    if layout == "bf16":  # round to nearest even: add 0x7FFF plus the lowest kept bit, keep the top 16 bits
        bits = x.view(np.uint32)
        return Stored(layout, ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16))
    codes, scales = quantize(x, axes=(-1,) if layout == "i8-vec" else (-2, -1))
    return Stored(layout, (codes.astype(np.int16) + ZERO).astype(np.uint8), scales)


def quantize(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of x, one float16 scale = max|x| / 127 per slice over `axes` (the codes are
    rounded against the scale as stored, float16); a zero slice gets scale 0 and codes 0."""
    scales = (np.abs(x).max(axis=axes) / LEVELS).astype(np.float16)
    wide = np.expand_dims(scales.astype(np.float32), axes)
    codes = np.rint(np.divide(x, wide, out=np.zeros_like(x), where=wide > 0))
    return np.clip(codes, -LEVELS, LEVELS).astype(np.int8), scales


def quantized_query(query_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A query (D, T) as int8 codes per word (column) and their float32 scales (T,)."""
    scales = np.abs(query_t).max(axis=0) / LEVELS
    scales = np.where(scales > 0, scales, 1).astype(np.float32)
    return np.clip(np.rint(query_t / scales), -LEVELS, LEVELS).astype(np.int8), scales


def centroid_layouts(centroids: np.ndarray) -> dict[str, np.ndarray]:
    """First-stage centroids (N, C, D) float16 as searched: float16, and decoded from int8 per centroid."""
    codes, scales = quantize(centroids.astype(np.float32), axes=(-1,))
    return {"f16": centroids.astype(np.float32), "c8": codes.astype(np.float32) * scales.astype(np.float32)[..., None]}


# ---------------------------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Kernel:
    """One way of scoring a layout: prepare(query) once per scan, then score(chunk, pooled, prepared)."""

    layout: str
    name: str
    integer: bool  # its arithmetic: uint8 x int8 GEMM (else float32)
    prepare: Callable[[Query], dict]
    score: Callable[[Stored, np.ndarray, dict], np.ndarray]


def fused_parts(query: Query) -> dict:
    """What the fused term needs of a query (as runtime/search/rerank.py chunk_scores feeds it)."""
    weight = np.float32(query.global_weight)
    return {
        "query": query.transposed,
        "global_query": np.ascontiguousarray((weight * query.pooled)[None, :]),
        "local_weight": np.asarray(1 - weight, np.float32),
    }


def prepare_offset(query: Query) -> dict:
    """Cast kernels on codes stored + 128: x . q = (codes . q) - 128 * sum(q), per word."""
    return {**fused_parts(query), "offset": (ZERO * query.transposed.sum(axis=0)).astype(np.float32)}


def prepare_integer(unsigned: bool) -> Callable[[Query], dict]:
    """MatMulInteger kernels: the query as int8 codes per word (uint8 + 128 for a uint8 query) and scales."""

    def prepare(query: Query) -> dict:
        codes, scales = quantized_query(query.transposed)
        if unsigned:
            codes = (codes.astype(np.int16) + ZERO).astype(np.uint8)
        return {**fused_parts(query), "query": codes, "query_scale": scales}

    return prepare


def f16_kernel(threads: int, kind: str) -> Kernel:
    """The gallery's own scan kernel, fed as rerank.chunk_scores feeds it."""
    scan = ScanKernel(kind, threads=threads, fused=True)

    def score(chunk: Stored, pooled: np.ndarray, q: dict) -> np.ndarray:
        return scan.scores(chunk.codes, q["query"], (pooled, q["global_query"].T, q["local_weight"]))

    return Kernel("f16", "ONNX Runtime scan kernel (today)", False, fused_parts, score)


def numpy_kernel(layout: str) -> Kernel:
    """Widen each chunk to float32 in numpy, one matmul, the reductions; scales after the matmul."""

    def score(chunk: Stored, pooled: np.ndarray, q: dict) -> np.ndarray:
        n, p, d = chunk.codes.shape
        if layout == "bf16":
            wide = (chunk.codes.astype(np.uint32) << 16).view(np.float32)
        else:
            wide = chunk.codes.astype(np.float32)
        mm = (wide.reshape(n * p, d) @ q["query"]).reshape(n, p, -1)
        if layout == "bf16":
            local = mm.max(axis=1).mean(axis=1)
        elif layout == "i8-vec":
            local = ((mm - q["offset"]) * chunk.scales.astype(np.float32)[..., None]).max(axis=1).mean(axis=1)
        else:
            local = (mm.max(axis=1) - q["offset"]).mean(axis=1) * chunk.scales.astype(np.float32)
        return q["local_weight"] * local + pooled.astype(np.float32) @ q["global_query"][0]

    prepare = fused_parts if layout == "bf16" else prepare_offset
    name = "numpy: bits shifted to float32 + matmul" if layout == "bf16" else "numpy: widen to float32 + matmul"
    return Kernel(layout, name, False, prepare, score)


def ort_kernel(layout: str, method: str, patches: int, threads: int, unsigned: bool = False) -> Kernel:
    """An ONNX Runtime graph (graph_model) for a layout: method cast, dequantize or integer."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    model = graph_model(layout, method, patches, unsigned)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    flat = method == "dequantize" and layout == "i8-vec"  # the grid as (n*P, D) rows: see graph_model
    bits = ort.OrtValue.ortvalue_from_numpy_with_onnx_type if layout == "bf16" else None
    keys = ["query", "global_query", "local_weight"]
    if method == "cast" and layout != "bf16":
        keys.append("offset")
    if method == "integer":
        keys.append("query_scale")

    def score(chunk: Stored, pooled: np.ndarray, q: dict) -> np.ndarray:
        grids = chunk.codes.reshape(-1, chunk.codes.shape[-1]) if flat else chunk.codes
        feeds = {"grids": bits(grids, 16) if bits else grids, "pooled": pooled, **{k: q[k] for k in keys}}
        if chunk.scales is not None:
            feeds["scales"] = chunk.scales
        return session.run(None, feeds)[0]

    if method == "integer":
        prepare, name = prepare_integer(unsigned), f"ONNX Runtime MatMulInteger, {'u8' if unsigned else 's8'} query"
    elif method == "dequantize":
        prepare, name = fused_parts, "ONNX Runtime DequantizeLinear + MatMul"
    else:
        prepare = fused_parts if layout == "bf16" else prepare_offset
        name = "ONNX Runtime Cast + MatMul" + ("" if layout == "bf16" else ", then offset and scale")
    return Kernel(layout, name, method == "integer", prepare, score)


def graph_model(layout: str, method: str, patches: int, unsigned: bool = False) -> bytes:
    """The fused MISA score of one layout's chunk as an ONNX model (built with the onnx package; the
    gallery's scan.py writes its graphs by hand, and would take the chosen one the same way).

    Inputs: grids (N, P, D) [(N*P, D) for DequantizeLinear per vector: its per-axis scale is 1-D],
    scales (float16; (N, P) or (N,)), query (D, T) float32 [int8 or uint8 codes for MatMulInteger, with
    query_scale (T,)], offset (T,) (128 * the query's column sums, for Cast on codes + 128), pooled
    (N, D) float16, global_query (1, D), local_weight (). Output: scores (N,). A scale that is not
    finite makes the photo's score NaN (codes cannot hold NaN); a bfloat16 grid holding NaN or
    infinity scores NaN, as scan.py's graphs do.
    """
    from onnx import TensorProto as TP
    from onnx import helper

    vector = layout == "i8-vec"
    nodes: list = []
    inits = [helper.make_tensor("zero", TP.UINT8, [], [ZERO]), helper.make_tensor("axis1", TP.INT64, [1], [1])]
    inits += [helper.make_tensor("axis2", TP.INT64, [1], [2]), helper.make_tensor("axes12", TP.INT64, [2], [1, 2])]

    def node(op: str, inputs: list[str], output: str, **attributes: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    grid_type = TP.BFLOAT16 if layout == "bf16" else TP.UINT8
    flat = method == "dequantize" and vector
    query_type = (TP.UINT8 if unsigned else TP.INT8) if method == "integer" else TP.FLOAT
    inputs = [helper.make_tensor_value_info("grids", grid_type, ["NP", "D"] if flat else ["N", "P", "D"])]
    inputs.append(helper.make_tensor_value_info("query", query_type, ["D", "T"]))
    if layout != "bf16":
        inputs.append(helper.make_tensor_value_info("scales", TP.FLOAT16, ["N", "P"] if vector else ["N"]))
        scale = node("Cast", ["scales"], "scale32", to=TP.FLOAT)
        per_photo = node("ReduceSum", [scale, "axis1"], "scale_sum", keepdims=0) if vector else scale
        poison = node("Sub", [per_photo, per_photo], "poison")  # NaN where a scale is not finite, else 0
        scale3 = node("Unsqueeze", [scale, "axis2"], "scale3") if vector else None

    if layout == "bf16":
        mm = node("MatMul", [node("Cast", ["grids"], "wide", to=TP.FLOAT), "query"], "mm")
        local = node(
            "ReduceMean", [node("ReduceMax", [mm], "best", axes=[1], keepdims=0)], "local", axes=[1], keepdims=0
        )
        total = node("ReduceSum", [mm, "axes12"], "total", keepdims=0)
        poison = node("Sub", [total, total], "poison")
    elif method == "cast":
        inputs.append(helper.make_tensor_value_info("offset", TP.FLOAT, ["T"]))
        mm = node("MatMul", [node("Cast", ["grids"], "wide", to=TP.FLOAT), "query"], "mm")
        if vector:
            scaled = node("Mul", [node("Sub", [mm, "offset"], "centred"), scale3], "scaled_mm")
            local = node(
                "ReduceMean", [node("ReduceMax", [scaled], "best", axes=[1], keepdims=0)], "local", axes=[1], keepdims=0
            )
        else:
            best = node("Sub", [node("ReduceMax", [mm], "best_codes", axes=[1], keepdims=0), "offset"], "best")
            local = node("Mul", [node("ReduceMean", [best], "mean", axes=[1], keepdims=0), scale], "local")
    elif method == "dequantize":
        scale_flat = scale
        if vector:
            scale_flat = node("Reshape", [scale, node("Constant", [], "minus1", value_ints=[-1])], "scale_flat")
        code_zero = helper.make_tensor("code_zero", TP.UINT8, [1], [ZERO])
        zero_point = node("ConstantOfShape", [node("Shape", [scale_flat], "scale_shape")], "zeros", value=code_zero)
        wide = node("DequantizeLinear", ["grids", scale_flat, zero_point], "wide", axis=0)
        mm = node("MatMul", [wide, "query"], "mm")
        if vector:  # (N*P, T) -> (N, P, T)
            columns = node("Shape", ["query"], "columns", start=1)
            shape = node("Concat", [node("Constant", [], "rows", value_ints=[-1, patches]), columns], "shape", axis=0)
            mm = node("Reshape", [mm, shape], "mm3")
        local = node(
            "ReduceMean", [node("ReduceMax", [mm], "best", axes=[1], keepdims=0)], "local", axes=[1], keepdims=0
        )
    else:  # integer: exact int32 products of the codes, scales after
        inputs.append(helper.make_tensor_value_info("query_scale", TP.FLOAT, ["T"]))
        mm = node("MatMulInteger", ["grids", "query", "zero"] + ["zero"] * unsigned, "mm")
        if vector:
            wide = node("Mul", [node("Cast", [mm], "mm_wide", to=TP.FLOAT), scale3], "scaled_mm")
            best = node("Mul", [node("ReduceMax", [wide], "best_scaled", axes=[1], keepdims=0), "query_scale"], "best")
            local = node("ReduceMean", [best], "local", axes=[1], keepdims=0)
        else:  # the max over patches on the integers: one scale per photo and one per word keep its order
            best_codes = node(
                "Cast", [node("ReduceMax", [mm], "best_codes", axes=[1], keepdims=0)], "best_wide", to=TP.FLOAT
            )
            best = node("Mul", [best_codes, "query_scale"], "best")
            local = node("Mul", [node("ReduceMean", [best], "mean", axes=[1], keepdims=0), scale], "local")

    inputs += [
        helper.make_tensor_value_info("pooled", TP.FLOAT16, ["N", "D"]),
        helper.make_tensor_value_info("global_query", TP.FLOAT, [1, "D"]),
        helper.make_tensor_value_info("local_weight", TP.FLOAT, []),
    ]
    glob = node("Mul", [node("Cast", ["pooled"], "pooled_wide", to=TP.FLOAT), "global_query"], "products")
    glob = node("ReduceSum", [glob, "axis1"], "global", keepdims=0)
    score = node("Add", [node("Mul", [local, "local_weight"], "weighted"), glob], "fused")
    node("Add", [score, poison], "scores")
    outputs = [helper.make_tensor_value_info("scores", TP.FLOAT, ["N"])]
    graph = helper.make_graph(nodes, f"compact-{layout}-{method}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def kernels(patches: int, threads: int, kind: str) -> list[Kernel]:
    out = [f16_kernel(threads, kind), ort_kernel("bf16", "cast", patches, threads), numpy_kernel("bf16")]
    for layout in ("i8-vec", "i8-row"):
        out += [numpy_kernel(layout)]
        out += [ort_kernel(layout, method, patches, threads) for method in ("dequantize", "cast", "integer")]
        out += [ort_kernel(layout, "integer", patches, threads, unsigned=True)]
    return out


def scan(kernel: Kernel, stored: Stored, pooled: np.ndarray, query: Query, photos: int, step: int) -> np.ndarray:
    """The exact top 10 of `photos` photos: the resident ones read in turn, `step` photos a chunk."""
    prepared = kernel.prepare(query)
    resident, out = len(stored.codes), []
    for start in range(0, photos, step):
        a = start % resident
        b = min(a + step, resident, a + photos - start)
        out.append(kernel.score(stored.rows(a, b), pooled[a:b], prepared))
    scores = np.concatenate(out)
    return np.argpartition(-scores, TOP - 1)[:TOP]


def checksum_pass(stored: Stored, pooled: np.ndarray, photos: int, step: int) -> None:
    """The row checksums a search verifies before scoring (grid, scales, pooled vector), same chunks."""
    resident = len(stored.codes)
    for start in range(0, photos, step):
        a = start % resident
        b = min(a + step, resident, a + photos - start)
        blocks = [stored.codes[a:b], pooled[a:b, None]]
        if stored.scales is not None:
            blocks.append(stored.scales[a:b].reshape(b - a, 1, -1))
        row_checksums(blocks)


def check_kernels(found: list[Kernel], bundle: Bundle) -> dict[str, float]:
    """Max |difference| of each kernel from the float32 reference on a small case; SystemExit if one is off."""
    rng = np.random.default_rng(7)
    (h, w), d = bundle.config.visual.grid, bundle.config.embed_dim
    n, step = 37, 16  # an odd number of photos, several chunks
    x = rng.standard_normal((n, h * w, d), dtype=np.float32) * rng.uniform(0.2, 1.5, (n, h * w, 1)).astype(np.float32)
    grids = (x / np.linalg.norm(x, axis=-1).mean(axis=-1)[:, None, None]).astype(np.float16)
    pooled = pooled_vectors(grids.reshape(n, h, w, d))
    query = Query.of(rng.standard_normal((7, d), dtype=np.float32) * 0.1, d, global_weight=0.4)
    stored = {layout: store(grids, layout) for layout in LAYOUTS}
    errors = {}
    for kernel in found:
        words = query.vectors
        if kernel.integer:
            codes, scales = quantized_query(query.transposed)
            words = (codes.astype(np.float32) * scales).T
        local = score_grids(stored[kernel.layout].decoded(), words, "misa")
        want = (1 - query.global_weight) * local + query.global_weight * (pooled.astype(np.float32) @ query.pooled)
        prepared = kernel.prepare(query)
        got = np.concatenate(
            [
                kernel.score(stored[kernel.layout].rows(a, a + step), pooled[a : a + step], prepared)
                for a in range(0, n, step)
            ]
        )
        errors[f"{kernel.layout}: {kernel.name}"] = error = float(np.abs(got - want).max())
        if not error < 1e-4:
            raise SystemExit(f"kernel {kernel.layout} / {kernel.name} is off the float32 reference by {error:.3g}")
    print(f"correctness: {len(found)} kernels within {max(errors.values()):.1e} of the float32 reference ({n} photos)")
    return errors


# ---------------------------------------------------------------------------------------------- agreement


def agreement(bundle: Bundle, args: argparse.Namespace) -> dict:
    """Section 1 on the real grids (module docstring)."""
    names, grids = all_grids(bundle, args.cache)
    n, h, w, d = grids.shape
    flat = grids.reshape(n, h * w, d)
    pooled = pooled_vectors(grids).astype(np.float32)
    centroids = centroid_layouts(cached_centroids(bundle, grids, args.cache))
    captions = flickr_captions(flickr_dev_images(), per_image=1)[: args.captions]
    queries = [Query.of_text(e, bundle.config) for e in TextEncoder(bundle, "cpu").encode([c for _, c in captions])]
    own = np.array([names.index(image) for image, _ in captions])
    print(f"\n1. agreement: {n} real photos, {len(queries)} dev captions, λ = {queries[0].global_weight}")

    words = np.concatenate([q.transposed for q in queries], axis=1)  # (D, all captions' vectors)
    codes, word_scales = quantized_query(words)
    variants = {
        "f16": ("f16", words),
        "bf16": ("bf16", words),
        "i8-vec": ("i8-vec", words),
        "i8-row": ("i8-row", words),
    }
    variants |= {f"{v}+q8": (v, codes.astype(np.float32) * word_scales) for v in ("i8-vec", "i8-row")}
    starts = np.cumsum([0] + [len(q.vectors) for q in queries[:-1]])
    counts = np.array([len(q.vectors) for q in queries], np.float32)
    sentences = np.stack([q.pooled for q in queries])  # (Q, D)
    weight = np.float32(queries[0].global_weight)
    start = time.perf_counter()
    stored = {layout: store(flat, layout) for layout in LAYOUTS}
    scores = {v: np.empty((len(queries), n), np.float32) for v in variants}
    for a in range(0, n, AGREEMENT_PHOTOS):
        b = min(a + AGREEMENT_PHOTOS, n)
        glob = weight * (pooled[a:b] @ sentences.T)  # (b - a, Q)
        decoded = {layout: s.rows(a, b).decoded().reshape(-1, d) for layout, s in stored.items()}
        for v, (layout, columns) in variants.items():
            best = (decoded[layout] @ columns).reshape(b - a, h * w, -1).max(axis=1)
            local = np.add.reduceat(best, starts, axis=1) / counts
            scores[v][:, a:b] = ((1 - weight) * local + glob).T
    print(f"   scored every photo for every caption in {len(variants)} variants in {time.perf_counter() - start:.0f} s")

    truth = [top(row, TOP) for row in scores["f16"]]
    gaps = [np.sort(row)[-TOP] - np.sort(row)[-TOP - 1] for row in scores["f16"]]
    plans = {"plan": search_plan(n, bundle.config.first_stage, TOP), "tight": SearchPlan(*args.tight, probe=n)}
    candidates = {}  # (plan, centroid layout) -> per caption, the candidates scored exactly
    for p, plan in plans.items():
        shortlists = [top(pooled @ q.pooled, plan.shortlist) for q in queries]
        for c, vectors in centroids.items():
            candidates[p, c] = [
                s[top(score_grids(vectors[s], q.vectors, "misa"), plan.candidates)]
                for s, q in zip(shortlists, queries, strict=True)
            ]
    rows = []
    print(f"   (median gap between the float16 10th and 11th scores: {np.median(gaps):.2e})")
    print(f"   two stages: the bundle's `plan` {plans['plan']} and a `tight` one {plans['tight']}")
    print(
        f"   {'grid':<11s}{'exact top-10 kept':>18s}{'max |Δscore|':>14s}{'mean |Δ|':>10s}{'R@1':>7s}{'R@10':>7s}"
        + "".join(f"{f'{p}, {c}':>13s}" for p, c in candidates)
    )
    for v, matrix in scores.items():
        diff = np.abs(matrix - scores["f16"])
        ranks = (matrix > matrix[np.arange(len(own)), own][:, None]).sum(axis=1)
        row = {
            "grid": v,
            "exact_kept": overlap(truth, [top(r, TOP) for r in matrix]),
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "R@1": 100 * float(np.mean(ranks < 1)),
            "R@10": 100 * float(np.mean(ranks < TOP)),
            "two_stage": {},
        }
        for (p, c), picks in candidates.items():
            found = [pick[top(r[pick], TOP)] for pick, r in zip(picks, matrix, strict=True)]
            row["two_stage"][f"{p}, {c} centroids"] = overlap(truth, found)
        rows.append(row)
        print(
            f"   {v:<11s}{row['exact_kept']:18.4f}{row['max_abs_diff']:14.2e}{row['mean_abs_diff']:10.1e}"
            f"{row['R@1']:7.2f}{row['R@10']:7.2f}" + "".join(f"{k:13.4f}" for k in row["two_stage"].values())
        )
    return {
        "photos": n,
        "captions": len(queries),
        "plans": {p: str(plan) for p, plan in plans.items()},
        "median_gap_10_11": float(np.median(gaps)),
        "rows": rows,
    }


def overlap(truth: list[np.ndarray], found: list[np.ndarray]) -> float:
    return float(np.mean([len(set(t) & set(f)) / TOP for t, f in zip(truth, found, strict=True)]))


def cached_centroids(bundle: Bundle, grids: np.ndarray, cache: Path) -> np.ndarray:
    """(N, C, D) float16 first-stage centroids of the real grids with the bundle's settings, cached."""
    config = bundle.config.first_stage
    where = cache / f"compact-centroids-flickr8k-all-{bundle.bundle_id}-{config.vectors}x{config.iterations}.npy"
    if where.is_file():
        return np.load(where)
    centroids = reduce_grids(grids, config).astype(np.float16)
    np.save(where, centroids)
    return centroids


# ---------------------------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class Job:
    """One timed unit of a round: a scan, a checksum pass, a streaming read, or a GEMM of the peaks."""

    name: str
    layout: str
    run: Callable[[Query], object]
    kernel: Kernel | None = None
    ops: float = 0.0  # a GEMM peak job's operations (float32, or uint8 x int8 where integer)
    integer: bool = False


def gemm_jobs(patches: int, dim: int, words: int, threads: int) -> list[Job]:
    """The GEMM peaks at the threads in force: float32 (numpy and ONNX Runtime MatMul) and uint8 x int8
    (ONNX Runtime MatMulInteger), each on a 2048 square and on the scan's own shape (an int8 chunk's
    patch vectors against T words); a peak is the best of its kind's rates."""
    import onnxruntime as ort
    from onnx import TensorProto as TP
    from onnx import helper

    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    jobs = [Job("float32 GEMM: numpy 2048^2", "", ignoring_query(lambda: square @ square), ops=2 * 2048**3)]
    rows = SEARCH_CHUNK_BYTES // (patches * dim) * patches
    for integer in (False, True):
        op = "MatMulInteger" if integer else "MatMul"
        a_type, b_type = (TP.UINT8, TP.INT8) if integer else (TP.FLOAT, TP.FLOAT)
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            op,
            [
                helper.make_tensor_value_info("a", a_type, ["M", "K"]),
                helper.make_tensor_value_info("b", b_type, ["K", "N"]),
            ],
            [helper.make_tensor_value_info("y", TP.INT32 if integer else TP.FLOAT, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for label, (m, k, t) in (
            ("2048^2", (2048, 2048, 2048)),
            (f"scan shape {rows}x{dim}x{words}", (rows, dim, words)),
        ):
            if integer:
                a = rng.integers(0, 256, (m, k), dtype=np.uint8)
                b = rng.integers(-LEVELS, LEVELS + 1, (k, t), dtype=np.int8)
            else:
                a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, t), dtype=np.float32)
            run = functools.partial(session.run, None, {"a": a, "b": b})
            name = f"{'uint8 x int8' if integer else 'float32'} GEMM: ONNX Runtime {label}"
            jobs.append(Job(name, "", ignoring_query(run), ops=2 * m * k * t, integer=integer))
    return jobs


def stream_read(stored: Stored, pooled: np.ndarray, photos: int) -> None:
    """A numpy streaming read (uint64 sums) of `photos` photos' stored bytes: grid codes, scales, pooled."""
    resident = len(stored.codes)
    for start in range(0, photos, resident):
        b = min(resident, photos - start)
        for array in (stored.codes[:b], pooled[:b]) + (() if stored.scales is None else (stored.scales[:b],)):
            flat = array.reshape(-1).view(np.uint8)
            body = len(flat) // 8 * 8
            flat[:body].view(np.uint64).sum()
            flat[body:].sum()


def speed(bundle: Bundle, args: argparse.Namespace) -> dict:
    """Section 2 (module docstring)."""
    (h, w), d, kind = bundle.config.visual.grid, bundle.config.embed_dim, bundle.config.score
    patches = h * w
    weight = bundle.config.ranking.global_weight
    queries = {
        t: [Query.of(q, d, kind=kind, global_weight=weight) for q in qs]
        for t, qs in word_queries(bundle, list(SPEED_WORDS), args.queries).items()
    }
    print(f"\n2. exact scan speed: {args.threads} thread(s), synthetic photos, λ = {weight}")
    found = kernels(patches, args.threads, kind)
    errors = check_kernels(found, bundle)

    resident = min(args.resident, max(args.sizes))
    need = resident * patches * d * 2 * 3  # float16, bfloat16 and both int8 layouts
    if need > (available_memory() or need) // 2:
        raise SystemExit(f"--resident {resident} needs {need / 1e9:.1f} GB, over half the memory available")
    grids = np.empty((resident, patches, d), np.float16)
    for records, batch in synthetic_batches(0, resident, (h, w), d):
        first = int(records[0].path.split("/")[-1][:7])
        grids[first : first + len(batch)] = batch.reshape(len(batch), patches, d)
    pooled = pooled_vectors(grids.reshape(resident, h, w, d))
    stored = {layout: store(grids, layout) for layout in LAYOUTS}
    del grids
    steps = {layout: max(1, SEARCH_CHUNK_BYTES // s.photo_bytes) for layout, s in stored.items()}

    rows, floors = [], []
    for n in sorted(args.sizes):
        for t, qs in queries.items():
            jobs = [
                Job(f"{k.layout}: {k.name}", k.layout, functools.partial(scan_job, k, stored, pooled, n, steps), k)
                for k in found
            ]
            for layout, s in stored.items():
                checksums = functools.partial(checksum_pass, s, pooled, n, steps[layout])
                jobs.append(Job(f"{layout}: row checksums", layout, ignoring_query(checksums)))
                read = functools.partial(stream_read, s, pooled, n)
                jobs.append(Job(f"{layout}: streaming read", layout, ignoring_query(read)))
            jobs += gemm_jobs(patches, d, t, args.threads)
            seconds = timed_rounds(jobs, qs, args.rounds)
            rates = {j.name: j.ops / seconds[j.name] / 1e9 for j in jobs if j.ops}
            peak = {
                integer: max(rates[job.name] for job in jobs if job.ops and job.integer == integer)
                for integer in (False, True)
            }
            read = {layout: seconds[f"{layout}: streaming read"] for layout in LAYOUTS}
            volume = {layout: n * (s.photo_bytes + pooled[0].nbytes) for layout, s in stored.items()}
            floors.append(
                {
                    "photos": n,
                    "words": t,
                    "read_gb_s": {k: volume[k] / v / 1e9 for k, v in read.items()},
                    "gemm_rates": rates,
                    "float32_peak": peak[False],
                    "int8_peak": peak[True],
                }
            )
            print(
                f"\n   {n} photos, T = {t}: streaming read "
                + ", ".join(f"{k} {v:.1f}" for k, v in floors[-1]["read_gb_s"].items())
                + f" GB/s; GEMM peaks float32 {peak[False]:.0f} GFLOP/s, uint8 x int8 {peak[True]:.0f} GOP/s"
            )
            print(
                f"   {'layout':<7s}{'kernel':<46s}{'ms':>9s}{'ms/10k':>8s}{'read floor':>11s}{'compute':>9s}"
                f"{'x bound':>8s}{'x f16 today':>12s}"
            )
            baseline = seconds[jobs[0].name]
            for job in jobs:
                if job.ops or job.name.endswith("streaming read"):
                    continue
                ms = 1000 * seconds[job.name]
                row = {"photos": n, "words": t, "layout": job.layout, "kernel": job.name.split(": ", 1)[1], "ms": ms}
                row |= {"ms_per_10k": ms * 10_000 / n, "read_floor_ms": 1000 * read[job.layout]}
                line = f"   {job.layout:<7s}{row['kernel'][:45]:<46s}{ms:9.1f}{row['ms_per_10k']:8.1f}"
                line += f"{row['read_floor_ms']:11.1f}"
                if job.kernel is not None:
                    row["compute_floor_ms"] = 1000 * 2 * n * patches * d * t / (peak[job.kernel.integer] * 1e9)
                    row["bound_ms"] = max(row["read_floor_ms"], row["compute_floor_ms"])
                    row["over_bound"] = ms / row["bound_ms"]
                    row["over_f16_today"] = seconds[job.name] / baseline
                    line += f"{row['compute_floor_ms']:9.1f}{row['over_bound']:8.2f}{row['over_f16_today']:12.2f}"
                rows.append(row)
                print(line)
    return {"threads": args.threads, "resident": resident, "kernel_errors": errors, "floors": floors, "rows": rows}


def ignoring_query(fn: Callable[[], object]) -> Callable[[Query], object]:
    return lambda _query: fn()


def scan_job(kernel: Kernel, stored: dict[str, Stored], pooled: np.ndarray, n: int, steps: dict, query: Query) -> None:
    scan(kernel, stored[kernel.layout], pooled, query, n, steps[kernel.layout])


def timed_rounds(jobs: list[Job], queries: list[Query], rounds: int) -> dict[str, float]:
    """Median seconds of each job over rounds x queries calls, after one untimed call each; the jobs run
    interleaved, each round starting one job later (drift in what else the cores do hits all alike)."""
    times: dict[str, list[float]] = {job.name: [] for job in jobs}
    for job in jobs:
        job.run(queries[0])
    for r in range(rounds):
        for job in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:
            for query in queries:
                start = time.perf_counter()
                job.run(query)
                times[job.name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------------------------------------- bytes


def photo_bytes(bundle: Bundle, args: argparse.Namespace) -> dict:
    """Section 3: stored bytes per photo of each layout, and a real Gallery's catalogue bytes per photo."""
    (h, w), d = bundle.config.visual.grid, bundle.config.embed_dim
    c = bundle.config.first_stage.vectors
    names, grids = all_grids(bundle, args.cache)
    paths = [str(FLICKR / "images" / name) for name in names[: args.catalogue]]
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        with fill(Path(folder) / "g", bundle, paths, grids[: len(paths)]):
            pass
        files = [p for p in (Path(folder) / "g").rglob("*") if p.is_file()]
        shards = sum(p.stat().st_size for p in files if p.parent.name == "shards") / len(paths)
        catalogue = sum(p.stat().st_size for p in files if p.parent.name != "shards") / len(paths)
    sample = grids[:2].reshape(2, h * w, d)
    rows = []
    print(
        f"\n3. bytes per photo (grid {h}x{w}, D {d}, {c} centroids; catalogue of a real Gallery of {len(paths)} photos)"
    )
    print(
        f"   {'layout':<14s}{'grid':>8s}{'scales':>8s}{'pooled':>8s}{'centroids':>10s}{'catalogue':>10s}{'total':>8s}"
        f"{'10^6 photos':>13s}"
    )
    for layout in LAYOUTS:
        for cents in ("f16", "c8"):
            if cents == "c8" and not layout.startswith("i8"):
                continue
            s = store(sample, layout)
            grid = s.codes[0].nbytes
            scales = s.photo_bytes - grid
            centroid_bytes = c * d * 2 if cents == "f16" else c * d + 2 * c
            total = grid + scales + d * 2 + centroid_bytes + catalogue
            name = layout if cents == "f16" else f"{layout} + c8"
            rows.append(
                {
                    "layout": name,
                    "grid": grid,
                    "scales": scales,
                    "pooled": d * 2,
                    "centroids": centroid_bytes,
                    "catalogue": catalogue,
                    "total": total,
                }
            )
            print(
                f"   {name:<14s}{grid:8d}{scales:8d}{d * 2:8d}{centroid_bytes:10d}{catalogue:10.0f}{total:8.0f}"
                f"{total / 1e3:11.1f} GB"
            )
    print(f"   (the real Gallery's shard files: {shards:.0f} bytes a photo in float16)")
    return {"rows": rows, "gallery_shard_bytes": shards, "gallery_catalogue_bytes": catalogue}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=500, help="dev captions for the agreement (one per dev photo)")
    parser.add_argument(
        "--tight",
        type=int,
        nargs=2,
        default=[500, 50],
        metavar=("SHORTLIST", "CANDIDATES"),
        help="a second, tighter two-stage plan for the agreement (the bundle's keeps everything)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="photos per exact scan")
    parser.add_argument("--resident", type=int, default=10_000, help="synthetic photos held in memory per layout")
    parser.add_argument("--queries", type=int, default=2, help="queries per round and T (dev captions, cut to T)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op and BLAS threads of the scans")
    parser.add_argument(
        "--catalogue", type=int, default=1000, help="real photos in the Gallery whose catalogue is measured"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["agreement", "speed", "bytes"])
    add_common_options(parser, "the temporary gallery files")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    if bundle.config.score != "misa":
        raise SystemExit(
            f"the candidate kernels are written for MISA; bundle {bundle.bundle_id} scores {bundle.config.score}"
        )
    print(
        f"bundle {bundle.bundle_id}: grid {bundle.config.visual.grid}, D {bundle.config.embed_dim},"
        f" {os.cpu_count()} cores"
    )
    figures: dict = {"bundle": bundle.bundle_id}
    if "agreement" not in args.skip:
        figures["agreement"] = agreement(bundle, args)
    if "speed" not in args.skip:
        with threadpool_limits(args.threads):
            figures["speed"] = speed(bundle, args)
    if "bytes" not in args.skip:
        figures["bytes"] = photo_bytes(bundle, args)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
