"""The shipped ONNX models (speaker embeddings, and the speaker segmentation that finds
overlapped speech), their model cards and calibrations (package data).

The maintainer's tools that make them live in ``weights/``, the folder above this
package, in a checkout: ``export.py`` (rebuilds the speaker models; needs PyTorch),
``export_segmentation.py`` (rebuilds segmentation-3.0; needs PyTorch),
``quantize.py`` (makes the int8 model, with ``segmask.py``'s rewrite of the graph)
and ``calibrate_shipped.py`` (fits the calibrations; both need the development
speech). They are never imported at run time, and being outside this package they
are not in the wheel.
"""
