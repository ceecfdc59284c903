import pytest

from gpuaf.units import approx_duration, duration_s, format_duration, format_mib, memory_mib


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("4G", 4096),
        ("4GB", 4096),
        ("4GiB", 4096),
        ("512M", 512),
        ("1.5T", 1572864),
        ("2048", 2048),
        (100, 100),
        ("16g", 16384),
    ],
)
def test_memory(text, mib):
    assert memory_mib(text) == mib


@pytest.mark.parametrize("bad", ["", "G", "-1G", "4X", 0, True, "0.1K"])
def test_bad_memory(bad):
    with pytest.raises(ValueError):
        memory_mib(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("8h", 28800),
        ("2d", 172800),
        ("02:00:00", 7200),
        (90, 90),
        ("45s", 45),
    ],
)
def test_duration(text, seconds):
    assert duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["", "8 hours", "1:60:00", "0m", -5, False])
def test_bad_duration(bad):
    with pytest.raises(ValueError):
        duration_s(bad)


def test_formats():
    assert format_mib(16384) == "16 GiB"
    assert format_mib(71168) == "69.5 GiB"
    assert format_mib(512) == "512 MiB"
    assert format_duration(28800) == "8 h"
    assert format_duration(90) == "90 s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3, "about 10 s"), (44, "about 40 s"), (89, "about 90 s"), (373, "about 6 min"),
     (5399, "about 90 min"), (5400, "about 2 h"), (3 * 3600 + 100, "about 3 h")],
)  # fmt: skip
def test_estimates_are_rounded_for_people(seconds, text):
    assert approx_duration(seconds) == text
