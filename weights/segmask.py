"""CAM++'s context masks computed at segment rate: the same function, a third of the nodes.

Each of CAM++'s 52 CAM layers multiplies its local output ``y`` (channels x T) by a
mask made from the layer's input ``x``::

    context = mean_T(x) + upsample(avg_pool_100(x))   # one value per 100-frame segment
    mask = sigmoid(conv1x1(relu(conv1x1(context))))
    out = y * mask

As exported, ``upsample`` repeats each segment's column 100 times (Unsqueeze,
Expand, Reshape, Slice, and ~25 shape nodes to size them) *before* the two 1x1
convolutions, which then compute the same column up to 100 times over. A 1x1
convolution, a ReLU and a sigmoid act on each column alone, so they commute with
the repetition: this rewrite runs them on the segments (1 to a few columns) and
repeats only the finished mask, by a MatMul with a 0/1 matrix (segments x T)
built once per input from T. Multiplying by 1 and adding 0 is exact, so the mask
is the same function of ``x``; onnxruntime's GEMM may sum a 1-column product in
another order than a 100-column one, so embeddings agree to about 1e-6, not bit
for bit (``check`` measures it).

Why it matters: the shape and repetition nodes were ~1,100 of the graph's 3,102,
and each costs onnxruntime a dispatch whatever its size; the segment-rate convs
cost nothing worth quantising, so weights/quantize.py leaves them fp32.

A maintainer's tool (needs ``onnx``), never imported at run time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEGMENT = 100
"""Frames per CAM segment (CAM++'s seg_len): the AveragePool kernel the rewrite looks for."""

MASK_CONV_MARKS = ("cam_layer/linear1/", "cam_layer/linear2/")
"""Name fragments of the mask's two 1x1 convolutions (export names), now at segment rate."""

UPSAMPLE = "segmask_upsample"
"""The (segments x T) 0/1 matrix that repeats a segment's column over its frames."""


def _attr(node: onnx.NodeProto, name: str) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _only_consumer(consumers: dict[str, list[onnx.NodeProto]], tensor: str,
                   op_type: str) -> onnx.NodeProto:
    nodes = [n for n in consumers.get(tensor, []) if n.op_type == op_type]
    if len(nodes) != 1:
        raise ValueError(f"segmask: {tensor} feeds {len(nodes)} {op_type} nodes, expected 1")
    return nodes[0]


def _upsample_nodes(x: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing UPSAMPLE from the time axis of ``x`` (batch, channels, T)."""
    const = {"segmask_zero": 0, "segmask_one": 1, "segmask_len": SEGMENT,
             "segmask_len_1": SEGMENT - 1}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in const.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "segmask_axis1"))
    mk = helper.make_node
    nodes = [
        mk("Shape", [x], ["segmask_T1"], start=2, end=3),
        mk("Squeeze", ["segmask_T1"], ["segmask_T"]),
        mk("Range", ["segmask_zero", "segmask_T", "segmask_one"], ["segmask_t"]),
        mk("Div", ["segmask_t", "segmask_len"], ["segmask_seg_of_t"]),  # floor: t >= 0
        mk("Add", ["segmask_T", "segmask_len_1"], ["segmask_T_up"]),
        mk("Div", ["segmask_T_up", "segmask_len"], ["segmask_S"]),  # ceil(T / SEGMENT)
        mk("Range", ["segmask_zero", "segmask_S", "segmask_one"], ["segmask_s"]),
        mk("Unsqueeze", ["segmask_s", "segmask_axis1"], ["segmask_s_col"]),
        mk("Equal", ["segmask_s_col", "segmask_seg_of_t"], ["segmask_is_seg"]),
        mk("Cast", ["segmask_is_seg"], [UPSAMPLE], to=TensorProto.FLOAT),
    ]
    return nodes, inits


def rewrite(model: onnx.ModelProto) -> int:
    """Rewrite every CAM layer of ``model`` in place; return how many were rewritten."""
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pools = [n for n in g.node if n.op_type == "AveragePool"
             and _attr(n, "kernel_shape") == [SEGMENT] and _attr(n, "strides") == [SEGMENT]]
    if not pools:
        raise ValueError("segmask: no CAM segment pooling found (is this CAM++?)")
    after: dict[int, list[onnx.NodeProto]] = {}
    for k, pool in enumerate(pools):
        x = pool.input[0]
        mean = _only_consumer(consumers, x, "ReduceMean")
        add = _only_consumer(consumers, mean.output[0], "Add")
        conv1 = _only_consumer(consumers, add.output[0], "Conv")
        relu = _only_consumer(consumers, conv1.output[0], "Relu")
        conv2 = _only_consumer(consumers, relu.output[0], "Conv")
        sigmoid = _only_consumer(consumers, conv2.output[0], "Sigmoid")
        mul = _only_consumer(consumers, sigmoid.output[0], "Mul")
        if _attr(conv1, "kernel_shape") != [1] or _attr(conv2, "kernel_shape") != [1]:
            raise ValueError(f"segmask: {conv1.name}: the mask's convolutions must be 1x1")
        if k == 0:
            # Every CAM layer runs at the same frame rate (CAM++'s D-TDNN blocks and
            # transits have stride 1), so one matrix serves them all.
            nodes, inits = _upsample_nodes(x)
            after[id(pool)] = nodes
            g.initializer.extend(inits)
        add.input[1] = pool.output[0]  # mean (C x 1) + segments (C x S), broadcast
        masked = sigmoid.output[0] + "_over_frames"
        after[id(sigmoid)] = [helper.make_node("MatMul", [sigmoid.output[0], UPSAMPLE],
                                               [masked], name=sigmoid.name + "_over_frames")]
        mul.input[list(mul.input).index(sigmoid.output[0])] = masked
    ordered: list[onnx.NodeProto] = []
    for n in g.node:
        ordered.append(n)
        ordered.extend(after.get(id(n), []))
    _keep_live(g, ordered)
    return len(pools)


def _keep_live(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Replace the graph's nodes by those that reach an output, and drop unused weights."""
    needed = {o.name for o in g.output}
    live: list[onnx.NodeProto] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(live))
    kept = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(kept)


def mask_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the mask's 1x1 convolutions (run at segment rate after ``rewrite``)."""
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and any(m in n.name for m in MASK_CONV_MARKS)]
