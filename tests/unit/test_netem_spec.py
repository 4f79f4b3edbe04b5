"""NetemSpec without root: parsing, validation, default limit, str(), wire format.

The wire-format tests encode the RTM_NEWQDISC options with our message class
and decode them again, so the attributes pyroute2 0.7.12 lacks (distribution
table, Gilbert-Elliott, 64-bit delay and rate) are checked byte-for-byte here
and against a real kernel in tests/integration/test_netem_live.py.
"""

import math

import pytest

from wirelab.errors import ConfigError
from wirelab.impair import distributions, faults, netlink, nft, spec as spec_mod
from wirelab.impair.spec import NetemSpec

BRIEF = "delay=20ms jitter=5ms loss=1% reorder=25% gap=5 duplicate=1% rate=10mbit limit=10000"


def test_parse_the_full_example():
    s = NetemSpec.parse(BRIEF)
    assert (s.delay, s.jitter, s.loss, s.reorder, s.gap, s.duplicate, s.rate, s.limit) == (
        20.0, 5.0, 1.0, 25.0, 5, 1.0, 10_000_000, 10_000)
    assert str(s) == ("netem delay 20ms 5ms loss 1% duplicate 1% reorder 25% gap 5 "
                      "rate 10Mbit limit 10000")


def test_keywords_strings_and_numbers_are_the_same_spec():
    a = NetemSpec(delay="20ms", jitter="5000us", loss="1%", rate="10mbit")
    b = NetemSpec(delay=20, jitter=5, loss=1, rate=10_000_000)
    c = NetemSpec.from_kwargs({"delay": "0.02s", "jitter": 5}, loss="1", rate="10Mbit")
    assert a == b == c
    assert NetemSpec.parse(["delay=20ms", "loss=1%"]) == NetemSpec(delay=20, loss=1)


def test_empty_spec_is_no_impairment():
    s = NetemSpec.parse("")
    assert s == NetemSpec()
    assert str(s) == f"netem limit {spec_mod.MIN_LIMIT}"


@pytest.mark.parametrize("text,bps", [
    ("10mbit", 10**7), ("1gbit", 10**9), ("100kbit", 10**5), ("1000000", 10**6),
    ("1mbps", 8 * 10**6), ("1mibit", 2**20), ("2.5gbit", 25 * 10**8)])
def test_rate_units_like_tc(text, bps):
    assert NetemSpec(rate=text).rate == bps


@pytest.mark.parametrize("text,ms", [("20", 20.0), ("20ms", 20.0), ("1s", 1000.0),
                                     ("500us", 0.5), ("1.5ms", 1.5)])
def test_time_units(text, ms):
    assert NetemSpec(delay=text).delay == ms


IMPOSSIBLE = [
    ("loss=150%", "between 0% and 100%"),
    ("loss=-1%", "between 0% and 100%"),
    ("delay=-5ms", "must not be negative"),
    ("delay=nan", "finite"),
    ("loss=nan", "finite"),
    ("delay=inf", "finite"),
    ("colour=blue", "unknown key 'colour'"),
    ("delay=10ms jitter=20ms", "shortest delay would be -10ms"),
    ("delay=10ms jitter=5ms distribution=normal", "shortest delay would be"),
    ("reorder=25%", "needs a delay"),
    ("delay=10ms gap=5", "gap=5 needs reorder"),
    ("delay=10ms reorder=10% gap=-1", "must not be negative"),
    ("delay=10ms reorder_corr=10%", "reorder_corr needs reorder"),
    ("loss_corr=25%", "loss_corr needs loss"),
    ("duplicate_corr=25%", "duplicate_corr needs duplicate"),
    ("corrupt_corr=25%", "corrupt_corr needs corrupt"),
    ("delay=10ms delay_corr=25%", "delay_corr needs a jitter"),
    ("delay=10ms distribution=normal", "give jitter too"),
    ("delay=10ms jitter=1ms distribution=gaussian", "one of uniform, normal"),
    ("loss=1% gemodel=1%", "either loss"),
    ("gemodel=1%,2%,3%,4%,5%", "p[,r[,1-h[,1-k]]]"),
    ("gemodel=1%,200%", "between 0% and 100%"),
    ("rate=10mbitx", "unknown rate unit"),
    ("rate=0", "at least 8bit"),
    ("limit=0", "at least 1 packet"),
    ("limit=1.5", "whole number"),
    ("delay=20furlongs", "unknown time unit"),
    ("delay=300s", "32-bit tick field"),
    ("delay", "not key=value"),
    ("delay=1ms delay=2ms", "given twice"),
    ("loss=1x", "a percentage"),
]


@pytest.mark.parametrize("text,message", IMPOSSIBLE)
def test_impossible_values_are_one_line_config_errors(text, message):
    with pytest.raises(ConfigError) as err:
        NetemSpec.parse(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("netem")


def test_non_numbers_from_python_are_rejected():
    with pytest.raises(ConfigError):
        NetemSpec(delay=True)
    with pytest.raises(ConfigError):
        NetemSpec(loss=float("nan"))
    with pytest.raises(ConfigError):
        NetemSpec(delay=[1])


def test_jitter_up_to_delay_is_allowed_and_reorders():
    s = NetemSpec(delay=10, jitter=10)
    assert s.reorders
    assert not NetemSpec(delay=10, jitter=10, rate="10mbit").reorders
    assert not NetemSpec(delay=10).reorders


def test_spec_is_frozen():
    s = NetemSpec(delay=1)
    with pytest.raises(Exception):
        s.delay = 2


# ----------------------------------------------------------- default limit

def test_default_limit_without_rate_covers_a_fast_delay_line():
    # 10 Gbit/s * 20 ms = 25 MB = 16667 full-size packets; 1.5x headroom.
    s = NetemSpec(delay=20)
    assert s.delay_line_packets == math.ceil(10e9 / 8 * 0.020 / 1500) == 16667
    assert s.effective_limit == math.ceil(1.5 * 16667) == 25001
    assert s.effective_limit > 1000  # netem's own default would tail-drop


def test_default_limit_has_a_floor():
    assert NetemSpec().effective_limit == spec_mod.MIN_LIMIT == 10_000
    assert NetemSpec(delay=1).effective_limit == spec_mod.MIN_LIMIT
    assert NetemSpec(loss=1).effective_limit == spec_mod.MIN_LIMIT


def test_default_limit_counts_the_jitter_tail():
    assert NetemSpec(delay=20, jitter=5).effective_limit == math.ceil(1.5 * math.ceil(10e9 / 8 * 0.025 / 1500))


def test_default_limit_with_rate_is_delay_line_plus_one_bdp_of_buffer():
    # 10 Mbit/s * 100 ms = 125 kB = 84 packets in flight, plus max(84, 100) buffer.
    assert NetemSpec(delay=100, rate="10mbit").effective_limit == 84 + 100
    # 1 Gbit/s * 100 ms = 8334 packets: one BDP of buffer on top.
    assert NetemSpec(delay=100, rate="1gbit").effective_limit == 2 * 8334


def test_explicit_limit_wins():
    assert NetemSpec(delay=100, limit=50).effective_limit == 50
    assert "limit 50" in str(NetemSpec(delay=100, limit=50))


# ------------------------------------------------------------------ str()

@pytest.mark.parametrize("text,expected", [
    ("delay=20ms", "netem delay 20ms limit 25001"),
    ("delay=20ms jitter=5ms delay_corr=25% distribution=normal",
     "netem delay 20ms 5ms 25% distribution normal limit 47018"),
    ("loss=1% loss_corr=25%", "netem loss 1% 25% limit 10000"),
    ("gemodel=1%,10%", "netem loss gemodel 1% 10% 100% 0% limit 10000"),
    ("corrupt=0.1% corrupt_corr=5%", "netem corrupt 0.1% 5% limit 10000"),
    ("delay=1ms rate=1500kbit", "netem delay 1ms rate 1.5Mbit limit 101"),
])
def test_str_is_tc_style(text, expected):
    assert str(NetemSpec.parse(text)) == expected


def test_to_dict_round_trips():
    s = NetemSpec.parse(BRIEF + " corrupt=0.5%")
    d = s.to_dict()
    assert d["effective_limit"] == 10_000
    assert NetemSpec.from_kwargs(d) == s
    g = NetemSpec(gemodel="1%,10%,70%,0.1%")
    assert NetemSpec.from_kwargs(g.to_dict()) == g


# ----------------------------------------------------------- wire format

def _round_trip(spec):
    msg = netlink.NetemTcMsg()
    msg["index"] = 2
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", spec.netlink_options()]]
    msg.encode()
    back = netlink.NetemTcMsg(msg.data)
    back.decode()
    return back.get_attr("TCA_OPTIONS")


@pytest.mark.parametrize("text", [
    BRIEF, "delay=20ms jitter=5ms delay_corr=10%", "gemodel=1%,10%,70%,0.1%",
    "delay=1ms rate=40gbit", "loss=0.001%", "delay=10ms reorder=50%",
    "delay=20ms jitter=5ms distribution=normal"])
def test_options_encode_and_decode_to_the_same_spec(text):
    spec = NetemSpec.parse(text)
    assert spec.mismatches(netlink.decode_options(_round_trip(spec))) == []


def test_every_attribute_is_sent_so_change_leaves_nothing_stale():
    names = [a[0] for a in NetemSpec(delay=1).netlink_options()["attrs"]]
    for attr in ("TCA_NETEM_CORR", "TCA_NETEM_REORDER", "TCA_NETEM_CORRUPT",
                 "TCA_NETEM_RATE", "TCA_NETEM_LATENCY64", "TCA_NETEM_JITTER64"):
        assert attr in names


def test_gemodel_h_field_is_delivery_probability_in_bad_state():
    opts = _round_trip(NetemSpec(gemodel="1%,10%,70%,0.1%"))
    ge = opts.get_attr("TCA_NETEM_LOSS").get_attr("NETEM_LOSS_GE")
    assert ge["h"] == round((2**32 - 1) * 0.30)     # 1-h = 70% loss -> h = 30%
    assert ge["k1"] == round((2**32 - 1) * 0.001)


def test_reorder_alone_sends_gap_1_like_tc():
    assert NetemSpec(delay=10, reorder=25).netlink_options()["gap"] == 1
    assert NetemSpec(delay=10, reorder=25, gap=5).netlink_options()["gap"] == 5


def test_rate_above_32_bits_goes_in_rate64():
    attrs = dict((a[0], a[1]) for a in NetemSpec(rate="40gbit").netlink_options()["attrs"])
    assert attrs["TCA_NETEM_RATE"]["rate"] == 2**32 - 1
    assert attrs["TCA_NETEM_RATE64"] == 40 * 10**9 // 8


def test_normal_table_comes_from_iproute2():
    table = distributions.load_distribution("normal")
    assert len(table) == 4096 and min(table) == -32768
    # A normal table spans +-4 jitters: jitter may be at most delay / 4.
    NetemSpec(delay=20, jitter=5, distribution="normal")
    with pytest.raises(ConfigError, match="largest jitter for this delay: 5ms"):
        NetemSpec(delay=20, jitter=6, distribution="normal")


def test_missing_table_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(distributions, "DIST_DIRS", (str(tmp_path),))
    monkeypatch.setattr(distributions.glob, "glob", lambda _pattern: [])
    monkeypatch.delenv("TC_LIB_DIR", raising=False)
    distributions.load_distribution.cache_clear()
    try:
        with pytest.raises(ConfigError, match="pareto.dist not found"):
            NetemSpec(delay=50, jitter=1, distribution="pareto")
    finally:
        distributions.load_distribution.cache_clear()


# ------------------------------------------------------ faults (no root)

@pytest.mark.parametrize("kwargs", [
    dict(n=0, dport=80), dict(n=1, dport=0), dict(n=1, dport=80, direction="up"),
    dict(n=1, dport=80, src="not-an-ip"), dict(n=True, dport=80), dict(n=1)])
def test_fault_validation(kwargs):
    with pytest.raises(ConfigError):
        faults.DropNthDataSegment(**kwargs)


def test_fault_rules_are_exact_matches():
    f = faults.DropNthDataSegment(n=3, direction="to_client", dport=5001, dst="10.0.1.2")
    assert f.nft_flow() == " tcp sport 5001 ip daddr 10.0.1.2"
    assert "ip hdrlength 5 tcp doff 8 ip length > 52" in f.nft_candidates()
    assert f.nth_candidate() == 3
    assert faults.DropFirstFin(direction="to_server", dport=22).nft_flow() == " tcp dport 22"
    assert nft.table_name("20250101T000000-abcdef") == "wl_20250101T000000-abcdef"


def test_a_fault_is_a_value():
    f = faults.DropSynAck(dport=80)
    with pytest.raises(AttributeError):
        f.dport = 81   # frozen: installing it cannot change it
    assert f == faults.DropSynAck(dport=80)
