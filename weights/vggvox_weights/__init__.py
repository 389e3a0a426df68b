"""The shipped ONNX speaker models, their model cards and calibrations (package data).

``export.py`` (rebuilds the models; needs PyTorch), ``quantize.py`` (makes the
int8 model, with ``segmask.py``'s rewrite of the graph) and ``calibrate.py`` (fits
the calibrations; both need the development speech) sit beside this file in a
checkout.
They are maintainer's tools: never imported at run time, and left out of the
wheel by setup.py.
"""
