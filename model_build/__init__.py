"""Offline model building: train with PyTorch, export to ONNX, verify, quantize, gate, document, publish."""
