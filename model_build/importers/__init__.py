"""``maas import``: existing models (ONNX files, PyTorch programs, Hugging Face folders) as gated versions.

``source`` is the contract between a source kind and the shared import tail (``model_build.importers.tail``);
one module per source kind turns a path into an ``ImportedSource``.
"""
