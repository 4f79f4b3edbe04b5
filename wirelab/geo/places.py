"""Where the sites of the ``internet`` topology are: real cities, real coordinates.

``topologies/internet.py`` is an abstract picture (a home, an ISP, a backbone
ring, a university, a cloud, a corporation) with no geography. To geolocate its
addresses we put each *site* in a real city, once, here -- by node name, so
that the prefixes, which the topology computes, are never copied: the
database's networks all come from the plan (:mod:`wirelab.geo.derive`).

The story follows the US research backbone: the backbone routers sit in four
of Abilene's cities, the home and its ISP in the Boston area, the university
at Urbana-Champaign (off Chicago), the cloud at Ashburn, Virginia (off
Washington: the "us-east" data-centre town) and the corporation in Atlanta.

Every coordinate is copied from the Internet Topology Zoo as the ``topohub``
package ships it (``topohub/data/topozoo/<Network>.json``, node ``pos`` =
[longitude, latitude], two decimals: about 1 km); the comment on each place
names the network file it comes from, and ``tests/unit/test_geo_build.py``
checks each one against that file. States and countries are plain facts about
the cities (ISO 3166-1 alpha-2, ISO 3166-2 subdivision codes).

Organisations carry autonomous system numbers from 64496-64511, the range
RFC 5398 reserves for documentation, so no real network is named.
"""

import fnmatch
from dataclasses import dataclass

# Topology Zoo positions have two decimals (~1.1 km) and mark a city's centre;
# the addresses of a site may be anywhere in its metro area. GeoIP2's
# accuracy_radius is "the radius in kilometers around the specified location
# where the IP address is likely to be": a metro area is tens of km across.
CITY_ACCURACY_KM = 20


@dataclass(frozen=True)
class Place:
    """A city with its coordinates (degrees, WGS 84)."""

    city: str
    latitude: float
    longitude: float
    country_iso: str = ""        # ISO 3166-1 alpha-2, "" when unknown
    country: str = ""
    subdivision_iso: str = ""    # ISO 3166-2 code without the country ("NY"), "" when unknown
    subdivision: str = ""
    accuracy_km: int = CITY_ACCURACY_KM

    def __post_init__(self):
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise ValueError(f"{self.city}: ({self.latitude}, {self.longitude}) is not a "
                             "latitude/longitude")


@dataclass(frozen=True)
class Org:
    """Who holds the addresses: GeoIP2's traits (organization, isp, AS)."""

    organization: str
    asn: int = 0                 # 0: none known
    as_organization: str = ""
    isp: str = ""


@dataclass(frozen=True)
class Site:
    """Nodes (names or fnmatch patterns) that are in one place and one organisation."""

    name: str
    nodes: tuple
    place: Place
    org: Org

    def holds(self, node):
        return any(fnmatch.fnmatchcase(node, pattern) for pattern in self.nodes)


US = {"country_iso": "US", "country": "United States"}

# Coordinates: (latitude, longitude) = reversed topohub "pos" of the node of that
# name in the file named in the comment.
BOSTON = Place("Boston", 42.36, -71.06, **US, subdivision_iso="MA",
               subdivision="Massachusetts")                      # topozoo/Abvt.json "Boston"
CAMBRIDGE = Place("Cambridge", 42.38, -71.11, **US, subdivision_iso="MA",
                  subdivision="Massachusetts")                   # topozoo/Bbnplanet.json "Cambridge"
NEW_YORK = Place("New York", 40.71, -74.01, **US, subdivision_iso="NY",
                 subdivision="New York")                         # topozoo/Abilene.json "New York"
CHICAGO = Place("Chicago", 41.85, -87.65, **US, subdivision_iso="IL",
                subdivision="Illinois")                          # topozoo/Abilene.json "Chicago"
WASHINGTON = Place("Washington", 38.9, -77.04, **US, subdivision_iso="DC",
                   subdivision="District of Columbia")           # topozoo/Abilene.json "Washington DC"
ATLANTA = Place("Atlanta", 33.75, -84.39, **US, subdivision_iso="GA",
                subdivision="Georgia")                           # topozoo/Abilene.json "Atlanta"
CHAMPAIGN = Place("Champaign", 40.12, -88.24, **US, subdivision_iso="IL",
                  subdivision="Illinois")                        # topozoo/Savvis.json "Champaign"
ASHBURN = Place("Ashburn", 39.04, -77.49, **US, subdivision_iso="VA",
                subdivision="Virginia")                          # topozoo/HurricaneElectric.json "Ashburn"

# (place, topohub network file, node name there): what the test checks.
PLACE_SOURCES = [
    (BOSTON, "Abvt", "Boston"), (CAMBRIDGE, "Bbnplanet", "Cambridge"),
    (NEW_YORK, "Abilene", "New York"), (CHICAGO, "Abilene", "Chicago"),
    (WASHINGTON, "Abilene", "Washington DC"), (ATLANTA, "Abilene", "Atlanta"),
    (CHAMPAIGN, "Savvis", "Champaign"), (ASHBURN, "HurricaneElectric", "Ashburn"),
]

ISP = Org("wirelab Access ISP", 64496, "wirelab Access ISP", "wirelab Access ISP")
BACKBONE = Org("wirelab Backbone", 64497, "wirelab Backbone", "wirelab Backbone")

# The internet topology's sites, by node name (topologies/internet.py builds
# home<k> and srv<k> for k = 1..N: patterns). A node in no site has no place,
# and its addresses stay out of the database.
INTERNET_SITES = (
    # The home network is the ISP's customer: its addresses are the ISP's (as
    # a real home's are), the organisation is the customer.
    Site("home", ("hgw", "home[0-9]*", "homelan"), CAMBRIDGE,
         Org("wirelab home network", ISP.asn, ISP.as_organization, ISP.isp)),
    Site("isp", ("isp",), BOSTON, ISP),
    Site("backbone-newyork", ("bb1",), NEW_YORK, BACKBONE),
    Site("backbone-chicago", ("bb2",), CHICAGO, BACKBONE),
    Site("backbone-washington", ("bb3",), WASHINGTON, BACKBONE),
    Site("backbone-atlanta", ("bb4",), ATLANTA, BACKBONE),
    Site("university", ("unigw", "campus"), CHAMPAIGN,
         Org("wirelab University", 64498, "wirelab University", "wirelab Backbone")),
    Site("cloud", ("cloudgw", "srv[0-9]*", "cloudlan"), ASHBURN,
         Org("wirelab Cloud", 64499, "wirelab Cloud", "wirelab Cloud")),
    Site("corporation", ("corpgw", "office"), ATLANTA,
         Org("wirelab Corp", 64500, "wirelab Corp", "wirelab Backbone")),
)


def site_of(node, sites):
    """The first site in ``sites`` holding ``node``, or None."""
    return next((s for s in sites if s.holds(node)), None)
