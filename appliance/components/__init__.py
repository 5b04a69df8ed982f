"""Building the component images (OpenZiti, llm-gateway, vLLM, admin) and the lab model."""
