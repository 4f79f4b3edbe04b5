"""A three-node topology for core tests: h1 -- r1 -- LAN(h2, h3).

    h1 10.9.0.1/24 -- r1 -- 10.9.1.0/24 LAN (s1): h2 .2, h3 .3
"""

from mininet.topo import Topo

from wirelab.net.nodes import Host, LanBridge, LinuxRouter


class TinyTopo(Topo):
    def build(self, bad_route=False):
        self.addHost("h1", cls=Host, routes=[("default", "10.9.0.2")])
        r1_routes = [("10.77.0.0/16", "10.99.99.99")] if bad_route else []
        self.addHost("r1", cls=LinuxRouter, routes=r1_routes)
        self.addHost("h2", cls=Host, routes=[("default", "10.9.1.1")])
        self.addHost("h3", cls=Host, routes=[("default", "10.9.1.1")])
        self.addSwitch("lan1", cls=LanBridge)
        self.addLink("h1", "r1", params1={"addrs": ["10.9.0.1/24"]},
                     params2={"addrs": ["10.9.0.2/24"]})
        self.addLink("r1", "lan1", params1={"addrs": ["10.9.1.1/24"]})
        self.addLink("h2", "lan1", params1={"addrs": ["10.9.1.2/24"]})
        self.addLink("h3", "lan1", params1={"addrs": ["10.9.1.3/24"]})


H2 = "10.0.2.2"


class RouterPair(Topo):
    """Two hosts and a LinuxRouter between them, for netem and fault tests.

        h1 10.0.1.2 --- 10.0.1.1 r1 10.0.2.1 --- 10.0.2.2 h2
                      r1-eth0        r1-eth1
    """

    def build(self):
        h1 = self.addHost("h1", cls=Host, routes=[("default", "10.0.1.1")])
        h2 = self.addHost("h2", cls=Host, routes=[("default", "10.0.2.1")])
        r1 = self.addHost("r1", cls=LinuxRouter)
        self.addLink(h1, r1, params1={"addrs": ["10.0.1.2/24"]}, params2={"addrs": ["10.0.1.1/24"]})
        self.addLink(r1, h2, params1={"addrs": ["10.0.2.1/24"]}, params2={"addrs": [f"{H2}/24"]})
