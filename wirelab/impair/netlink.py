"""netem's netlink form: the RTM_NEWQDISC options, encoded from a spec and decoded
from the kernel's replies, in the spec's vocabulary and units.

pyroute2 0.7.12's netem support (``ipr.tc('add', 'netem', ...)``) covers the
classic ``tc_netem_qopt`` fields, correlations, reorder, corrupt and a 32-bit
rate; it has no delay distribution tables (TCA_NETEM_DELAY_DIST is a TODO), no
Gilbert-Elliott / 4-state loss (TCA_NETEM_LOSS is undecoded) and no 64-bit
delay/rate attributes. :class:`NetemOptions` extends pyroute2's netem options by
those attributes (same wire format as ``tc``), so distributions and ``gemodel``
work too, and :class:`NetemTcMsg` decodes the kernel's replies with it.
"""

from pyroute2.netlink import nla
from pyroute2.netlink.rtnl.tcmsg import sched_netem, tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

from wirelab.impair.distributions import load_distribution

#: Probabilities are u32 fractions of this; a 100% probability is this value.
U32_MAX = 2**32 - 1
#: tc_netem_qopt carries delay and jitter in 32-bit psched ticks.
MAX_DELAY_MS = U32_MAX / tick_in_usec / 1000.0


def u32_fraction(percent):
    """Percent -> netem's u32 probability."""
    return min(U32_MAX, int(round(U32_MAX * percent / 100.0)))


def percent_of_u32(u32):
    """netem's u32 probability -> percent (7 decimals: finer than one u32 step)."""
    return round(100.0 * u32 / U32_MAX, 7)


class NetemOptions(sched_netem.options):
    """pyroute2's netem options plus the attributes it leaves out (see top)."""

    nla_map = (
        ("TCA_NETEM_UNSPEC", "none"),
        ("TCA_NETEM_CORR", "netem_corr"),
        ("TCA_NETEM_DELAY_DIST", "array(int16)"),
        ("TCA_NETEM_REORDER", "netem_reorder"),
        ("TCA_NETEM_CORRUPT", "netem_corrupt"),
        ("TCA_NETEM_LOSS", "netem_loss"),
        ("TCA_NETEM_RATE", "netem_rate"),
        ("TCA_NETEM_ECN", "uint32"),
        ("TCA_NETEM_RATE64", "uint64"),
        ("TCA_NETEM_PAD", "none"),
        ("TCA_NETEM_LATENCY64", "int64"),
        ("TCA_NETEM_JITTER64", "int64"),
        ("TCA_NETEM_SLOT", "hex"),
        ("TCA_NETEM_SLOT_DIST", "hex"),
        ("TCA_NETEM_PRNG_SEED", "uint64"),
    )

    class netem_loss(nla):
        nla_map = (
            ("NETEM_LOSS_UNSPEC", "none"),
            ("NETEM_LOSS_GI", "gimodel"),
            ("NETEM_LOSS_GE", "gemodel"),
        )

        class gimodel(nla):
            fields = (("p13", "I"), ("p31", "I"), ("p32", "I"), ("p14", "I"), ("p23", "I"))

        class gemodel(nla):
            fields = (("p", "I"), ("r", "I"), ("h", "I"), ("k1", "I"))


class NetemTcMsg(tcmsg):
    """A tcmsg whose netem options use :class:`NetemOptions` (encode and decode)."""

    @staticmethod
    def get_options(self, *argv, **kwarg):
        if self.get_attr("TCA_KIND") == "netem":
            return NetemOptions
        return tcmsg.get_options(self, *argv, **kwarg)


def encode_options(spec):
    """TCA_OPTIONS for RTM_NEWQDISC from a :class:`~wirelab.impair.spec.NetemSpec`.

    Every attribute is always sent, zero when unused: netem's change keeps
    any attribute that is absent, so a partial message would leave stale
    settings behind (e.g. the rate of the previous spec)."""
    pct = u32_fraction
    ns = lambda ms: int(round(ms * 1e6))  # noqa: E731
    attrs = [
        ["TCA_NETEM_CORR", {"delay_corr": pct(spec.delay_corr), "loss_corr": pct(spec.loss_corr),
                            "dup_corr": pct(spec.duplicate_corr)}],
        ["TCA_NETEM_REORDER", {"prob_reorder": pct(spec.reorder),
                               "corr_reorder": pct(spec.reorder_corr)}],
        ["TCA_NETEM_CORRUPT", {"prob_corrupt": pct(spec.corrupt),
                               "corr_corrupt": pct(spec.corrupt_corr)}],
        ["TCA_NETEM_LATENCY64", ns(spec.delay)],
        ["TCA_NETEM_JITTER64", ns(spec.jitter)],
    ]
    rate_bytes = (spec.rate or 0) // 8
    attrs.append(["TCA_NETEM_RATE", {"rate": min(rate_bytes, U32_MAX), "packet_overhead": 0,
                                     "cell_size": 0, "cell_overhead": 0}])
    if rate_bytes >= U32_MAX:
        attrs.append(["TCA_NETEM_RATE64", rate_bytes])
    if spec.gemodel is not None:
        p, r, one_minus_h, one_minus_k = spec.gemodel
        # struct tc_netem_gemodel {p, r, h, k1}: h is the probability of
        # DELIVERY in the bad state (tc prints 1-h as 100% - h), k1 is the loss
        # probability in the good state (tc's 1-k as is). Checked in UML 6.1:
        # p=100% r=0% 1-h=100% loses every packet, 1-h=0% none.
        attrs.append(["TCA_NETEM_LOSS", {"attrs": [["NETEM_LOSS_GE", {
            "p": pct(p), "r": pct(r), "h": pct(100.0 - one_minus_h),
            "k1": pct(one_minus_k)}]]}])
    if spec.distribution != "uniform":
        attrs.append(["TCA_NETEM_DELAY_DIST", load_distribution(spec.distribution)])
    gap = spec.gap or (1 if spec.reorder else 0)  # as tc: reorder alone means gap 1
    return {
        "delay": min(int(spec.delay * 1000 * tick_in_usec), U32_MAX),
        "jitter": min(int(spec.jitter * 1000 * tick_in_usec), U32_MAX),
        "limit": spec.effective_limit,
        "loss": pct(spec.loss),
        "gap": gap,
        "duplicate": pct(spec.duplicate),
        "attrs": attrs,
    }


def decode_options(opts):
    """Kernel netem options (a decoded :class:`NetemOptions`) -> the spec's
    vocabulary and units, as :meth:`NetemSpec.expected_readback` writes them."""
    if opts is None:
        return {}
    corr = opts.get_attr("TCA_NETEM_CORR") or {}
    reorder = opts.get_attr("TCA_NETEM_REORDER") or {}
    corrupt = opts.get_attr("TCA_NETEM_CORRUPT") or {}
    rate = opts.get_attr("TCA_NETEM_RATE") or {}
    rate64 = opts.get_attr("TCA_NETEM_RATE64")
    lat64, jit64 = opts.get_attr("TCA_NETEM_LATENCY64"), opts.get_attr("TCA_NETEM_JITTER64")
    loss = opts.get_attr("TCA_NETEM_LOSS")
    ge = loss.get_attr("NETEM_LOSS_GE") if loss is not None else None
    rate_bytes = rate64 if rate64 is not None else rate.get("rate", 0)
    pct = percent_of_u32
    return {
        "delay": lat64 / 1e6 if lat64 is not None else opts["delay"] / tick_in_usec / 1000,
        "jitter": jit64 / 1e6 if jit64 is not None else opts["jitter"] / tick_in_usec / 1000,
        "delay_corr": pct(corr.get("delay_corr", 0)),
        "loss": pct(opts["loss"]),
        "loss_corr": pct(corr.get("loss_corr", 0)),
        "gemodel": ((pct(ge["p"]), pct(ge["r"]), round(100.0 - pct(ge["h"]), 7),
                     pct(ge["k1"])) if ge is not None else None),
        "reorder": pct(reorder.get("prob_reorder", 0)),
        "reorder_corr": pct(reorder.get("corr_reorder", 0)),
        "gap": opts["gap"],
        "duplicate": pct(opts["duplicate"]),
        "duplicate_corr": pct(corr.get("dup_corr", 0)),
        "corrupt": pct(corrupt.get("prob_corrupt", 0)),
        "corrupt_corr": pct(corrupt.get("corr_corrupt", 0)),
        "rate": rate_bytes * 8 if rate_bytes else None,
        "limit": opts["limit"],
    }
