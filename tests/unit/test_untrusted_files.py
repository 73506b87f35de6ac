"""Hostile or broken files (inventory, expectation, result, scenario, token) are one line and
exit 2 through the CLI, quickly: never a traceback, a MemoryError or minutes of parsing."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_cli
from netprobe.core.untrusted import MAX_DEPTH, load_json, load_yaml
from netprobe.errors import ConfigError


def billion_laughs() -> str:
    text, prev = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n', "a"
    for i in range(2, 10):
        name = chr(96 + i)
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text


HOSTILE_YAML = {
    "billion-laughs": billion_laughs(),
    "deep-nesting": "[" * 20000 + "]" * 20000,
    "recursive-alias": "&a [*a]",
    "giant-number": "hosts: " + "9" * 5000,
    "nan": "apiserver_port: .nan",
    "syntax": "hosts: [\n  - {name: a\n",
}


@pytest.mark.parametrize("text", HOSTILE_YAML.values(), ids=HOSTILE_YAML.keys())
def test_hostile_yaml_is_one_config_error_fast(text):
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, source="f.yaml")
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith("f.yaml: ") and "\n" not in str(caught.value)


def test_anchors_within_bounds_still_work():
    assert load_yaml("base: &b {x: 1}\nother: *b\n", source="f.yaml") == {"base": {"x": 1}, "other": {"x": 1}}
    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, source="f.yaml") is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_data_or_one_config_error(text):
    for load in (load_yaml, load_json):
        try:
            load(text, source="f")
        except ConfigError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("command", [
    ["mesh", "-i", "{f}"],
    ["verify", "-i", "{f}", "--expect", "{f}"],
    ["verify", "--result", "{f}", "--expect", "{f}"],
    ["diff", "{f}", "{f}"],
    ["lab", "up", "{f}", "--dry-run"],
])
@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", billion_laughs().encode(), b"[" * 20000],
                         ids=["not-utf8", "billion-laughs", "deep"])
def test_every_file_reading_command_says_one_line(tmp_path, capsys, command, content):
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    code, out, err = run_cli([a.replace("{f}", str(path)) for a in command], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and str(path) in err, err


def test_a_directory_or_an_oversized_file_is_refused_before_reading(tmp_path, capsys):
    code, _, err = run_cli(["mesh", "-i", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(50 << 20)
    started = time.monotonic()
    code, _, err = run_cli(["mesh", "-i", str(big)], capsys)
    assert code == 2 and "at most" in err and time.monotonic() - started < 1


def test_a_token_file_that_is_not_utf8(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_bytes(b"\xff" * 40)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("token_file: token\nhosts:\n  - {name: a, address: 192.0.2.1, agent: 'unix:/nonexistent'}\n")
    code, _, err = run_cli(["mesh", "-i", str(inventory)], capsys)
    assert code == 2 and "not UTF-8" in err and err.count("\n") == 1
