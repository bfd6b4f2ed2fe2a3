"""The deployable artifacts: a SavedModel for stock TF Serving and a
builtins-only `.tflite` for LiteRT, each with the tokenizer in the graph.
Not installed with the package: run from the repository (`main.py
--mode=export`, the tests, bench/)."""
