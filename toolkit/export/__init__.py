"""ONNX export (`onnx_export`), the metadata that makes a file self-describing (`metadata`),
verification against torch (`verify`) and the onnxruntime runtime (`runtime`)."""
