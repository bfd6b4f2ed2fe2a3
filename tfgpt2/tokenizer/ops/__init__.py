"""The tokenizer's graph code: integer TF ops that LiteRT runs as builtins."""
