"""Offline IP geolocation of the emulated network, in the MaxMind DB format.

    from wirelab.geo import geolocate, default_database
    geolocate("10.20.30.10")          # ipinfo-shaped dict: city, region, country, loc, org, prefix
    geolocate("81.2.69.142", db="GeoLite2-City.mmdb")   # a real GeoIP2/GeoLite2 City file

- :mod:`wirelab.geo.places`  where the ``internet`` topology's sites are (real cities)
- :mod:`wirelab.geo.derive`  a topology's address plan -> located prefixes (pure)
- :mod:`wirelab.geo.build`   GeoIP2-City-shaped records -> ``.mmdb`` (mmdb-writer), cached by hash
- :mod:`wirelab.geo.bogons`  reserved ranges, answered as ipinfo does
- :mod:`wirelab.geo.lookup`  longest-prefix match (maxminddb), the precedence rules, ``geolocate``
- :mod:`wirelab.geo.cli`     ``wirelab geolocate``
"""


def geolocate(address, db=None):
    """The ipinfo-shaped dict for ``address`` (see :func:`wirelab.geo.lookup.geolocate`)."""
    from wirelab.geo.lookup import geolocate as _geolocate
    return _geolocate(address, db)


def default_database():
    """The path of the ``internet`` topology's database, built if needed."""
    from wirelab.geo.build import default_database as _default
    return _default()
