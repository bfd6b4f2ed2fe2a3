"""`model.export(path, format=...)`: Keras 3's convention, with tfgpt2's
artifacts for its two formats and clear refusals before any tracing."""

import pytest

import tfgpt2.export


def test_an_option_of_another_format_is_refused_and_nothing_is_written(tiny_model, tmp_path):
    with pytest.raises(TypeError, match="format='litert' takes quantization, cache_length"):
        tiny_model.export(tmp_path / "m.tflite", format="litert", xla=True)
    with pytest.raises(TypeError, match="takes version, cache_length, xla"):
        tiny_model.export(tmp_path / "served", format="tf_saved_model", quantization="int8")
    assert list(tmp_path.iterdir()) == []


def test_input_signature_does_not_apply_to_the_string_artifacts(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="input_signature does not apply"):
        tiny_model.export(tmp_path / "served", format="tf_saved_model", input_signature=[])


def test_other_formats_go_to_keras(tiny_model, tmp_path):
    # Keras' own check answers for a format tfgpt2 does not build.
    with pytest.raises(ValueError, match="Unrecognized format="):
        tiny_model.export(tmp_path / "x", format="no-such-format")


def test_unknown_target_names_the_formats():
    assert tfgpt2.export.FORMATS == ("tf_saved_model", "litert", "litertlm")
    with pytest.raises(ValueError, match="'tf_saved_model', 'litert', 'litertlm'"):
        tfgpt2.export.get_target("tflite")


def test_a_file_where_the_directory_should_be_is_a_clear_error(tiny_model, tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="is a file"):
        tiny_model.export(tmp_path / "taken" / "m.tflite", format="litert")
