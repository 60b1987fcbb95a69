"""The export stage: classifier folders to ONNX (fp32 + int8) behind a parity gate, with a deployment table."""
