"""The one frame report: its wire form round-trips, and a report of the wrong shape is refused
with the field named, so a sender never passes a broken receiver answer on as a success."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semnet.errors import SemnetError
from semnet.pipeline.report import FrameReport

counts = st.integers(0, 2**32 - 1)
maybe_num = st.none() | st.floats(allow_nan=False, allow_infinity=False)
maybe_text = st.none() | st.text(max_size=20)

reports = st.builds(
    FrameReport,
    frame=counts,
    datagrams_sent=counts,
    stream=counts,
    name=maybe_text,
    codec=maybe_text,
    first_seq=st.none() | counts,
    datagrams_received=st.none() | counts,
    datagrams_malformed=st.dictionaries(st.text(max_size=10), counts, max_size=3),
    bpp=maybe_num,
    psnr_db=maybe_num,
    semantic_agree=st.none() | st.booleans(),
    classes=st.none()
    | st.lists(st.fixed_dictionaries({"label": st.text(max_size=8), "p": st.floats(0, 1)})),
    end_index=st.none() | counts,
    timings=st.dictionaries(st.text(max_size=10), st.floats(0, 10), max_size=3),
    receiver_report=st.none() | st.fixed_dictionaries({"fraction_lost": st.floats(0, 1)}),
    error=maybe_text,
)


@given(reports)
def test_the_wire_form_round_trips(report):
    wire = json.loads(json.dumps(report.to_json()))
    assert FrameReport.from_json(wire) == report
    assert ("error" in wire) == (report.error is not None)  # clients ask `"error" in report`


def test_the_image_stays_home():
    report = FrameReport(frame=1, datagrams_sent=2, image=np.zeros((2, 2, 3), np.uint8))
    assert "image" not in report.to_json() and report.ok


def test_unknown_keys_are_ignored_so_a_newer_receiver_still_reports():
    report = FrameReport.from_json({"frame": 1, "datagrams_sent": 2, "snr_db": 7.5})
    assert report == FrameReport(frame=1, datagrams_sent=2)


@pytest.mark.parametrize(
    "msg, field",
    [
        ({"frame": "1", "datagrams_sent": 2}, "'frame'"),
        ({"frame": True, "datagrams_sent": 2}, "'frame'"),  # JSON true is not a count
        ({"frame": 1, "datagrams_sent": 2, "psnr_db": "30"}, "'psnr_db'"),
        ({"frame": 1, "datagrams_sent": 2, "semantic_agree": 1}, "'semantic_agree'"),
        ({"frame": 1, "datagrams_sent": 2, "datagrams_malformed": {"crc": 1.5}}, "malformed"),
        ({"frame": 1, "datagrams_sent": 2, "timings": {"decode": "slow"}}, "'timings'"),
        ({"frame": 1, "datagrams_sent": 2, "error": 3}, "'error'"),
        ({"frame": 1, "datagrams_sent": 2, "classes": [{"label": "shirt"}]}, "'classes'"),
        ({"frame": 1}, "lacks 'datagrams_sent'"),
        ([1, 2], "JSON object, not list"),
    ],
)
def test_a_report_of_the_wrong_shape_names_the_field(msg, field):
    with pytest.raises(SemnetError, match=field):
        FrameReport.from_json(msg)


def test_a_huge_bad_value_gives_a_short_message():
    with pytest.raises(SemnetError) as caught:
        FrameReport.from_json({"frame": 1, "datagrams_sent": 2, "name": list(range(10**5))})
    assert len(str(caught.value)) < 200
