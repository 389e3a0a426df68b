"""The shipped ONNX speaker models and their model cards (package data).

``export.py`` beside this file rebuilds them; it needs PyTorch and is never
imported at run time.
"""
