"""write_c_array: the model as an aligned C array, byte-identical to the .tflite (what `xxd -i` gives)."""
import shutil
import subprocess

import pytest

from tfmpq.export import parse_c_array, write_c_array
from tfmpq.export.c_array import c_source


def test_round_trip_is_byte_identical(plain_int8, tmp_path):
    model = plain_int8[0]
    (tmp_path / "m.tflite").write_bytes(model)
    header, source = write_c_array(str(tmp_path / "m.tflite"), "model_data", tmp_path / "fw")
    assert header.endswith("fw/model_data.h") and source.endswith("fw/model_data.cc")
    text = open(source).read()
    assert "alignas(16) const unsigned char model_data[] = {" in text
    assert f"const unsigned int model_data_len = {len(model)};" in text
    assert '#include "model_data.h"' in text
    assert parse_c_array(text) == model
    h = open(header).read()
    assert "extern const unsigned char model_data[];" in h and "extern const unsigned int model_data_len;" in h


def test_same_bytes_as_xxd(plain_int8, tmp_path):
    if shutil.which("xxd") is None:
        pytest.skip("xxd not installed")
    (tmp_path / "model_data").write_bytes(plain_int8[1])
    xxd = subprocess.run(["xxd", "-i", "model_data"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert parse_c_array(xxd.stdout) == parse_c_array(c_source(plain_int8[1], "model_data")[1]) == plain_int8[1]


def test_compiles_and_holds_the_model(plain_int8, tmp_path):
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    write_c_array(plain_int8[0], "model_data", tmp_path)
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "model_data.h"\n'
        "int main() {\n"
        "  if (reinterpret_cast<std::uintptr_t>(model_data) % 16) return 2;\n"
        "  std::fwrite(model_data, 1, model_data_len, stdout);\n  return 0;\n}\n"
    )
    subprocess.run([compiler, "-std=c++17", "-o", "dump", "main.cc", "model_data.cc"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True)
    assert out.stdout == plain_int8[0]


@pytest.mark.parametrize("name", ["1model", "model-data", "", "model data"])
def test_invalid_names(name, plain_int8, tmp_path):
    with pytest.raises(ValueError, match=r"Invalid value for `name`: expected a C identifier"):
        write_c_array(plain_int8[0], name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_parse_rejects_a_wrong_length():
    with pytest.raises(ValueError, match=r"holds 2 bytes but m_len = 3"):
        parse_c_array("const unsigned char m[] = {0x01, 0x02};\nconst unsigned int m_len = 3;")
