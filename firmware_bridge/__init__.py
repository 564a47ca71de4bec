"""Firmware bridge: the device side of the wire and getting models onto gateways.

Public API::

    virtual_device.main            # ``selfmis sim`` / ``selfmis-sim``: the simulated wearable on a pty, TCP, file, stdout
    virtual_device.open_pty        # a raw pseudo-terminal pair, as a USB serial device looks
    deploy.pack_bundle / push / rollback / status     # ``selfmis deploy``: bundles onto a gateway (dir or ssh)
    deploy.render_systemd_unit     # the gateway service
    deploy.export_c_array          # a bundle as a C array for TFLite Micro
    demo.main                      # ``selfmis demo``: a real MI record through edge-run

``c/`` holds the wire framing in C99 (with shared test vectors), ``firmware/`` the reference sketches.
The wire codec itself is :mod:`selfmis.protocol` and the simulated device :mod:`selfmis.simulate`
(the base layer); never import training or conversion toolchains here.
"""
from . import deploy, virtual_device

__all__ = ["deploy", "virtual_device"]
