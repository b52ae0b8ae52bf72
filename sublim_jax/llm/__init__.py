"""The LLM path: NNX decoders (Llama, Qwen2, Qwen3), HF/GGUF checkpoints, sampling, LoRA training,
sharding over device meshes. Optional dependencies: ``uv sync --extra llm``."""
