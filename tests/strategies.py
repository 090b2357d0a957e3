"""Hypothesis strategies for the values a DAG passes to ``defer(kwargs=...)`` or a trigger event.

Only values whose 3.2 encoding keeps what 3.1.8 kept: the lossy ones (``Decimal("1.50")``,
complex numbers) are pinned by the golden corpus instead.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from decimal import Decimal

import pendulum
from hypothesis import strategies as st

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]

# Writers and readers both store datetime.timestamp(): keep to years every platform handles.
instants = st.datetimes(
    min_value=datetime.datetime(1971, 1, 2), max_value=datetime.datetime(2200, 1, 1)
)

aware_datetimes = st.one_of(
    instants,  # naive: both sides read it in the same local time zone
    st.builds(lambda d, z: d.replace(tzinfo=zoneinfo.ZoneInfo(z)), instants, st.sampled_from(ZONES)),
    st.builds(
        lambda d, z: pendulum.instance(d, tz=pendulum.timezone(z)), instants, st.sampled_from(ZONES)
    ),
    st.builds(
        lambda d, o: pendulum.instance(d, tz=pendulum.FixedTimezone(o * 60)),
        instants,
        st.integers(-14 * 60, 14 * 60),
    ),
    st.builds(lambda d: d.replace(tzinfo=datetime.timezone.utc), instants),
)

decimals = st.one_of(
    st.integers(-(10**20), 10**20).map(Decimal),
    st.integers(1, 10**6).flatmap(
        lambda n: st.sampled_from([Decimal(n) / 8, Decimal(n) / 4 + Decimal("0.5")])
    ).filter(lambda d: d != d.to_integral_value() and "E" not in str(d)),
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    aware_datetimes,
    st.dates(min_value=datetime.date(1, 1, 1)),
    st.timedeltas(min_value=datetime.timedelta(days=-10**5), max_value=datetime.timedelta(days=10**5)),
    st.sampled_from(ZONES).map(pendulum.timezone),
    st.integers(-14 * 3600, 14 * 3600).map(pendulum.FixedTimezone),
    st.sampled_from(ZONES).map(zoneinfo.ZoneInfo),
    decimals,
    st.uuids().map(lambda u: uuid.UUID(str(u))),
)

hashables = st.one_of(st.integers(-1000, 1000), st.text(max_size=6), st.booleans(), st.none())

values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6).filter(lambda k: not k.startswith("__")), children, max_size=4),
        st.sets(hashables, max_size=4),
        # 3.1 stored str(frozenset), whose element order depends on the object's insertion
        # history, not on its value: small ints land in distinct slots, so the order is fixed.
        st.frozensets(st.integers(0, 7), max_size=4),
    ),
    max_leaves=20,
)

#: What a deferral stores: a str-keyed dict at the top.
kwargs = st.dictionaries(st.text(max_size=8).filter(lambda k: not k.startswith("__")), values, max_size=6)
