"""The CPU miniature of the LLaVA path: tiny LM + tokenizer, synthetic-scene questions, scoring, the run."""
