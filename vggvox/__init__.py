"""vggvox: speaker identification with ONNX speaker embeddings.

The shared pipeline that both the daemon (``vggvoxd``) and the clients
(``vggvox_client``) use: audio loading, model cards, the embedder, scoring,
the voiceprint store, list formats and evaluation metrics.
"""

__version__ = "0.1.0"
