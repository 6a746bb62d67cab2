"""Graph IR over ONNX, transform passes and analysis passes. May import `targets`."""
