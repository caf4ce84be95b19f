"""Per-sample decode: hostile JSON and invisible captions are named rejections, never crashes."""
import json

import pytest

from learnsieve.core.decode import (
    caption_bytes,
    decode_labelled,
    decode_sample,
    visible,
)
from learnsieve.core.jsonsafe import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    json_problem,
    loads_bounded,
)
from learnsieve.core.records import DeadLetter, Decoded, Sample, Scored, output_json
from tests.conftest import good_example


def _sample(**files):
    return Sample(key="k", source="s.tar", shard_index=0, index=0, files=files)


def _decode(**files):
    return decode_sample(_sample(**files), 32, 64_000_000, 8192)


def _reason(d):
    return d.reason if isinstance(d, DeadLetter) else "ok"


DEEP = b"[" * 5000 + b"]" * 5000
DEEP_CAPTION = b'{"caption": "c", "x": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}"


def test_deeply_nested_json_is_bad_json_not_a_recursion_error():
    img, cap = good_example()
    with pytest.raises(RecursionError):
        json.loads(b"[" * 200_000 + b"]" * 200_000)  # what decode and the writer used to hit
    for raw in (DEEP, DEEP_CAPTION, b"[" * 200_000):
        d = _decode(jpg=img, json=raw)
        assert _reason(d) == "bad_json" and d.stage == "decode" and "levels" in d.detail
        assert _reason(_decode(jpg=img, txt=cap, json=raw)) == "bad_json"  # the writer would parse it
        assert caption_bytes({"json": raw}) is None
    d = decode_labelled(_sample(jpg=img, cls=b"1", json=DEEP), 32, 64_000_000, 10)
    assert _reason(d) == "bad_json"


def test_json_bounds():
    img, _ = good_example()
    assert json_problem(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is None
    assert "65 levels" in json_problem(b"[" * 65 + b"]" * 65)
    assert json_problem(json.dumps({"s": "[[[[{{{{" * 100, "l": [[1]] * 500}).encode()) is None  # brackets in strings
    assert json_problem(json.dumps({"s": '\\"[' * 100}).encode()) is None  # escaped quotes
    big = json.dumps({"caption": "c", "pad": "x" * MAX_JSON_BYTES}).encode()
    assert "bytes" in json_problem(big) and _reason(_decode(jpg=img, json=big)) == "bad_json"
    with pytest.raises(ValueError):
        loads_bounded(b"{broken")
    assert loads_bounded(b'{"caption": "c"}') == {"caption": "c"}


def test_json_captions_still_work_and_invalid_json_is_named():
    img, _ = good_example()
    d = _decode(jpg=img, json=json.dumps({"caption": "a dog", "url": "u"}).encode())
    assert isinstance(d, Decoded) and d.caption == "a dog"
    assert _reason(_decode(jpg=img, json=b"{broken")) == "bad_json"
    assert _reason(_decode(jpg=img, json=b'{"url": "u"}')) == "missing_caption"
    assert _reason(_decode(jpg=img, json=b'{"caption": "\\ud800"}')) == "caption_not_utf8"
    assert isinstance(_decode(jpg=img, txt=b"a cat", json=b"{broken"), Decoded)  # as before


@pytest.mark.parametrize("caption", ["\u200b", "\u200c\u200d", "\u2060 \ufeff", "\u200b\u200b\u200e",
                                     "\u00ad", "\x07\x1b", "\u3164", "\u2800\u2800", "\ufe0f", "\u202e"])
def test_invisible_captions_are_empty_caption(caption):
    img, _ = good_example()
    d = _decode(jpg=img, txt=caption.encode())
    assert _reason(d) == "empty_caption" and d.detail == "no visible character"
    assert not visible(caption)


@pytest.mark.parametrize("caption", ["a", "\u200ba dog\u200b", "犬", "café", "🐕", "\u0928\u093f",
                                     "\ue000", "x\u0301"])
def test_visible_captions_pass(caption):
    img, _ = good_example()
    d = _decode(jpg=img, txt=caption.encode())
    assert isinstance(d, Decoded) and visible(caption)


def test_output_json_never_raises_on_hostile_json():
    s = Scored("k", "src.tar", 0, 3, {"learnability": 1.5})
    for raw in (DEEP, DEEP_CAPTION, b"[" * 200_000, b"\xff\xfe{", b"x" * (MAX_JSON_BYTES + 1),
                b'{"n": ' + b"9" * 5000 + b"}"):
        out = json.loads(output_json(raw, s, "learnability"))
        assert out["original_json_invalid"] is True and out["learnsieve"]["value"] == 1.5
    out = json.loads(output_json(b'{"a": [[[1]]]}', s, "learnability"))
    assert out["a"] == [[[1]]]
