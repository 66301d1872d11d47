"""Register maps as data: decoding documented register words, round trips, block planning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ampshare.adapters.meters import (
    BUILTIN_MAPS,
    DataType,
    Quantity,
    RegisterMap,
    RegisterSpec,
    decode_map,
    encode_map,
    reading_from_values,
    sunspec_map,
)
from ampshare.adapters.meters._registers import decode_value, encode_value, plan_blocks
from ampshare.errors import DeviceProtocolError

Q = Quantity
ALL = {Q.CURRENT_L1: 12.5, Q.CURRENT_L2: 7.25, Q.CURRENT_L3: 0.5, Q.VOLTAGE_L1: 230.1,
       Q.VOLTAGE_L2: 229.9, Q.VOLTAGE_L3: 231.0, Q.POWER: 4500.0, Q.POWER_L1: 2800.0,
       Q.POWER_L2: 1600.0, Q.POWER_L3: 100.0, Q.ENERGY_IMPORT: 123_456_700.0}


def _addr(model: str, q: Quantity) -> int:
    return next(r.address for r in BUILTIN_MAPS[model].registers if r.quantity is q)


def test_documented_addresses_of_each_map() -> None:
    # Addresses as the manufacturers publish them (0-based protocol addresses).
    assert _addr("sdm630", Q.CURRENT_L1) == 0x0006
    assert _addr("sdm630", Q.POWER) == 0x0034
    assert _addr("sdm630", Q.ENERGY_IMPORT) == 0x0048
    assert _addr("em24", Q.CURRENT_L1) == 0x000C
    assert _addr("em340", Q.POWER) == 0x0028
    assert _addr("b23", Q.VOLTAGE_L1) == 0x5B00
    assert _addr("b23", Q.CURRENT_L1) == 0x5B0C
    assert _addr("umg604", Q.CURRENT_L1) == 19012
    assert BUILTIN_MAPS["sdm630"].function == "input"
    assert BUILTIN_MAPS["b24"].function == "holding"


def test_decodes_words_as_a_real_sdm630_sends_them() -> None:
    # 230.0 V as IEEE 754 float32 is 0x43660000, high word first.
    regs = {0: 0x4366, 1: 0x0000}
    rmap = RegisterMap(model="t", function="input", word_order="big",
                       registers=(RegisterSpec(quantity=Q.VOLTAGE_L1, address=0,
                                               dtype=DataType.F32),))
    assert decode_map(rmap, regs) == {Q.VOLTAGE_L1: 230.0}


def test_decodes_carlo_gavazzi_low_word_first() -> None:
    # EM24: 12.345 A is INT32 12345 (A x 1000) = 0x00003039, least significant word first.
    regs = dict.fromkeys(range(0x36), 0)
    regs.update({0x0C: 0x3039, 0x0D: 0x0000})
    out = decode_map(BUILTIN_MAPS["em24"], regs)
    assert out[Q.CURRENT_L1] == pytest.approx(12.345)


def test_decodes_abb_unsigned_and_64_bit() -> None:
    # B23: 230.1 V is u32 2301 (0.1 V); 1234.56 kWh import is u64 123456 (0.01 kWh).
    rmap = BUILTIN_MAPS["b23"]
    regs = {a + i: 0 for a, n in rmap.addresses() for i in range(n)}
    regs.update({0x5B00: 0, 0x5B01: 2301, 0x5000: 0, 0x5001: 0, 0x5002: 0x0001, 0x5003: 0xE240})
    out = decode_map(rmap, regs)
    assert out[Q.VOLTAGE_L1] == pytest.approx(230.1)
    assert out[Q.ENERGY_IMPORT] == pytest.approx(1_234_560.0)


@pytest.mark.parametrize("model", sorted(BUILTIN_MAPS))
def test_every_map_round_trips(model: str) -> None:
    rmap = BUILTIN_MAPS[model]
    out = decode_map(rmap, encode_map(rmap, ALL))
    assert set(out) == set(ALL)
    for q, v in ALL.items():
        assert out[q] == pytest.approx(v, rel=1e-6, abs=0.01), q


@pytest.mark.parametrize("model_id", [201, 202, 203, 204])
def test_sunspec_models_round_trip_with_scale_factors(model_id: int) -> None:
    rmap = sunspec_map(40070, model_id)
    out = decode_map(rmap, encode_map(rmap, ALL))
    lines = {201: 1, 202: 2, 203: 3, 204: 3}[model_id]
    assert (Q.CURRENT_L3 in out) == (lines == 3)
    assert (Q.VOLTAGE_L1 in out) == (model_id != 204)
    assert out[Q.POWER] == pytest.approx(4500.0)
    assert out[Q.CURRENT_L1] == pytest.approx(12.5)


def test_sunspec_not_implemented_value_is_left_out() -> None:
    rmap = sunspec_map(0, 203)
    regs = encode_map(rmap, ALL)
    regs[3] = 0x8000  # AphA not implemented
    assert Q.CURRENT_L1 not in decode_map(rmap, regs)


def test_missing_register_is_a_protocol_error() -> None:
    with pytest.raises(DeviceProtocolError, match="missing"):
        decode_map(BUILTIN_MAPS["sdm630"], {})


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
       st.sampled_from(["big", "little"]))
def test_float_encoding_round_trips(value: float, order: str) -> None:
    words = encode_value(value, DataType.F64, order)  # type: ignore[arg-type]
    assert decode_value(words, DataType.F64, order) == value  # type: ignore[arg-type]


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_i32_round_trips_in_both_word_orders(value: int) -> None:
    for order in ("big", "little"):
        assert decode_value(encode_value(value, DataType.I32, order), DataType.I32, order) == value


def test_blocks_merge_small_gaps_and_respect_the_request_limit() -> None:
    blocks = plan_blocks([(0, 2), (4, 2), (100, 2), (0x5B00, 2)])
    assert [(b.address, b.count) for b in blocks] == [(0, 6), (100, 2), (0x5B00, 2)]
    many = plan_blocks([(a, 2) for a in range(0, 400, 2)])
    assert all(b.count <= 125 for b in many)
    assert sum(b.count for b in many) == 400


@pytest.mark.parametrize(("q", "bad"), [(Q.CURRENT_L1, math.nan), (Q.VOLTAGE_L2, -0.1),
                                        (Q.POWER, 1e12), (Q.CURRENT_L3, math.inf)])
def test_implausible_values_are_protocol_errors(q: Quantity, bad: float) -> None:
    with pytest.raises(DeviceProtocolError, match=q.value):
        reading_from_values("m", 0.0, {q: bad})


def test_reading_holds_current_magnitudes_in_line_order() -> None:
    r = reading_from_values("m", 5.0, {Q.CURRENT_L1: -3.0, Q.CURRENT_L3: 2.0, Q.POWER: -100.0})
    assert r.current_a == (3.0, None, 2.0)
    assert r.power_w == -100.0
    assert r.voltage_v is None
