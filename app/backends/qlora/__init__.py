"""The `qlora` backend's parts: prompts, the transformers and vLLM engines, and fine-tuning."""
