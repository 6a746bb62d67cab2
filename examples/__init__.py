"""Scripts that build real example models (torch exports and weightless Llama graphs)."""
