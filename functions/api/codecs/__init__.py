"""Codecs: one module per protocol and operation (``v1_predict``, ``v1_explain``, ``v2_infer``), each turning a
request body into calls of the prediction service and its results into a response; ``v2_tensors`` is the Open
Inference Protocol's tensor wire format (JSON and the binary-data extension) that ``v2_infer`` speaks."""
