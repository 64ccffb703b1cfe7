"""The tools MoKA's roles use: tree index, error extractor, model and performance parsers,
scaffold, lint and memory. Each is one module; none calls the LLM."""
