"""Where is an address: a longest-prefix match in a MaxMind DB, as routing does.

    geolocate("10.20.30.10")
    -> {"ip": "10.20.30.10", "found": True, "prefix": "10.20.30.0/24",
        "city": "Ashburn", "region": "Virginia", "country": "US",
        "country_name": "United States", "loc": "39.0400,-77.4900",
        "org": "AS64499 wirelab Cloud", "emulated": True, "node": "cloudgw",
        "db_prefix": "10.20.30.0/24", "record": {...the GeoIP2 record...}}
    geolocate("192.0.2.1")   -> {"ip": "192.0.2.1", "bogon": True,
                                 "prefix": "192.0.2.0/24", "reason": "documentation ..."}
    geolocate("8.8.8.8")     -> {"ip": "8.8.8.8", "found": False, "prefix": None}

The fields ``ip city region country loc org`` are ipinfo's (``loc`` is
"lat,lon" with four decimals, ``org`` "AS<number> <name>" when the record has
an AS); ``prefix`` is the network that matched.

**Which answer wins for private space.** The emulated network is numbered in
private and shared space (10/8, 172.16/12, 192.168/16, 100.64/10) -- bogons on
the real Internet. So:

* a *wirelab* database (``database_type`` ``wirelab-City``, written by
  :mod:`wirelab.geo.build`) answers first for every address it holds, flagged
  ``"emulated": true``; an address it lacks is then a bogon if reserved, else
  not found. Its ``prefix`` is the network as the address plan has it (the /8
  of a nested /8 > /16 > /24), ``db_prefix`` the piece of the file's search
  tree that held the address (maxminddb's ``get_with_prefix_len``);
* any other database (a real GeoLite2/GeoIP2 City file given with ``--db``)
  answers as ipinfo does: reserved ranges are bogons before the file is asked,
  and ``prefix`` is the file's network for the address.
"""

import functools
import ipaddress
import os
from dataclasses import dataclass, field

from wirelab.errors import ConfigError
from wirelab.geo import bogons

EMULATED_TYPE_PREFIX = "wirelab"


def parse_address(text):
    """An ``ipaddress`` address, or ConfigError (exit 2) with one line."""
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise ConfigError(f"{text!r} is not an IPv4 or IPv6 address (names are not "
                          "resolved: there is no network to ask)") from None


@dataclass(frozen=True)
class Answer:
    """One lookup's result; :meth:`to_dict` gives the ipinfo-shaped dict."""

    ip: str
    found: bool = False
    bogon: bool = False
    prefix: str = None            # matched network (plan's, or the file's)
    db_prefix: str = None         # the file's search-tree network
    reason: str = None            # bogons: why the range is reserved
    emulated: bool = False
    city: str = None
    region: str = None
    country: str = None
    country_name: str = None
    latitude: float = None
    longitude: float = None
    org: str = None
    node: str = None
    record: dict = field(default=None, compare=False)

    @property
    def loc(self):
        if self.latitude is None or self.longitude is None:
            return None
        return f"{self.latitude:.4f},{self.longitude:.4f}"

    def to_dict(self):
        if self.bogon:
            return {"ip": self.ip, "bogon": True, "prefix": self.prefix, "reason": self.reason}
        if not self.found:
            return {"ip": self.ip, "found": False, "prefix": None}
        out = {"ip": self.ip, "found": True, "prefix": self.prefix, "city": self.city,
               "region": self.region, "country": self.country, "country_name": self.country_name,
               "loc": self.loc, "org": self.org, "emulated": self.emulated}
        if self.emulated:
            out["node"] = self.node
        out["db_prefix"] = self.db_prefix
        out["record"] = self.record
        return out

    def line(self):
        """One line for people: address, matched prefix, place, lat/lon, org."""
        if self.bogon:
            return f"{self.ip}  {self.prefix}  bogon: {self.reason}"
        if not self.found:
            return f"{self.ip}  -  not in the database"
        place = ", ".join(p for p in (self.city, self.region, self.country) if p) or "(no city)"
        where = f"  [{self.node}, emulated]" if self.emulated else ""
        return f"{self.ip}  {self.prefix}  {place}  {self.loc or '-'}  {self.org or '-'}{where}"


def _names_en(part):
    return (part or {}).get("names", {}).get("en") if isinstance(part, dict) else None


def _org(record):
    """ipinfo's org from GeoIP2 traits (City/Insights) or a GeoLite2-ASN record."""
    traits = record.get("traits") if isinstance(record.get("traits"), dict) else record
    asn = traits.get("autonomous_system_number")
    name = traits.get("autonomous_system_organization") or traits.get("organization") \
        or traits.get("isp")
    if asn:
        return f"AS{asn} {name}" if name else f"AS{asn}"
    return name


def answer_from_record(ip, record, db_prefix, emulated):
    """An Answer from a GeoIP2-shaped record (the one place its keys are read)."""
    location = record.get("location") or {}
    subdivisions = record.get("subdivisions") or [{}]
    country = record.get("country") or record.get("registered_country") or {}
    ours = record.get("wirelab") or {}
    prefix = ours.get("network") if emulated and ours.get("network") else db_prefix
    return Answer(ip=ip, found=True, prefix=prefix, db_prefix=db_prefix, emulated=emulated,
                  city=_names_en(record.get("city")), region=_names_en(subdivisions[0]),
                  country=country.get("iso_code"), country_name=_names_en(country),
                  latitude=location.get("latitude"), longitude=location.get("longitude"),
                  org=_org(record), node=ours.get("node") if emulated else None, record=record)


class GeoDatabase:
    """An open MaxMind DB file: ``lookup(address) -> Answer``. A context manager."""

    def __init__(self, path):
        import maxminddb
        if not os.path.exists(path):
            raise ConfigError(f"{path}: no such database file")
        if os.path.isdir(path):
            raise ConfigError(f"{path}: a folder, not a MaxMind DB (.mmdb) file")
        try:
            self._reader = maxminddb.open_database(path)
        except (maxminddb.InvalidDatabaseError, ValueError):
            raise ConfigError(f"{path}: not a MaxMind DB (.mmdb) file") from None
        self.path = path
        meta = self._reader.metadata()
        self.database_type = meta.database_type
        self.ip_version = meta.ip_version
        self.emulated = str(meta.database_type).startswith(EMULATED_TYPE_PREFIX)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._reader.close()

    def _query(self, address):
        """(record or None, the file's network for the address)."""
        if address.version == 6 and self.ip_version == 4:
            return None, None     # an IPv4-only file holds no IPv6 address
        try:
            record, prefixlen = self._reader.get_with_prefix_len(str(address))
        except ValueError:
            return None, None
        if record is None:
            return None, None
        net = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False)
        return record, str(net)

    def lookup(self, address):
        """The Answer for ``address`` (text or ``ipaddress``), by the precedence above."""
        address = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) \
            else parse_address(address)
        ip = str(address)
        reserved = bogons.bogon(address)
        if reserved is not None and not self.emulated:
            return Answer(ip=ip, bogon=True, prefix=str(reserved[0]), reason=reserved[1])
        record, db_prefix = self._query(address)
        if record is not None and isinstance(record, dict):
            return answer_from_record(ip, record, db_prefix, self.emulated)
        if reserved is not None:
            return Answer(ip=ip, bogon=True, prefix=str(reserved[0]), reason=reserved[1])
        return Answer(ip=ip)


@functools.lru_cache(maxsize=8)
def _open_cached(path, _mtime_ns, _size):
    return GeoDatabase(path)


def open_database(path):
    """A GeoDatabase for ``path``, shared between calls while the file is unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        return GeoDatabase(path)     # raises the one-line error
    return _open_cached(os.path.abspath(path), st.st_mtime_ns, st.st_size)


_default = []     # this process's default database path (plans do not change while it runs)


def _default_path():
    if not _default or not os.path.isfile(_default[0]):
        from wirelab.geo.build import default_database
        _default[:] = [default_database()]
    return _default[0]


def geolocate(address, db=None):
    """The ipinfo-shaped dict for ``address`` from ``db`` (a path or GeoDatabase;
    default: the ``internet`` topology's database, built if needed)."""
    if db is None:
        db = _default_path()
    database = db if isinstance(db, GeoDatabase) else open_database(db)
    return database.lookup(address).to_dict()
