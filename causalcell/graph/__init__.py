"""Gene regulatory networks: reading and writing them, converting them
(pandas, scipy.sparse, pgmpy) and cutting them under intervention.

A network is a :class:`networkx.DiGraph` of gene symbols with a float
``weight`` on each ``regulator -> target`` edge.
"""

from causalcell.graph.intervene import intervene
from causalcell.graph.io import (
    find_cycle_edges,
    from_pgmpy,
    network_to_frame,
    read_network,
    to_adjacency,
    to_pgmpy,
    write_network,
)

__all__ = [
    "find_cycle_edges",
    "from_pgmpy",
    "intervene",
    "network_to_frame",
    "read_network",
    "to_adjacency",
    "to_pgmpy",
    "write_network",
]
