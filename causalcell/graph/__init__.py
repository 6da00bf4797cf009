"""Gene regulatory networks: reading and writing them, converting them
(pandas, scipy.sparse, pgmpy), cutting them under intervention and learning
them from data.

A network is a :class:`networkx.DiGraph` of gene symbols with a float
``weight`` on each ``regulator -> target`` edge.
"""

from causalcell.graph._intervene import intervene
from causalcell.graph._io import (
    find_cycle_edges,
    from_pgmpy,
    network_to_frame,
    read_network,
    to_adjacency,
    to_pgmpy,
    write_network,
)
from causalcell.graph._lasso import learn_network
from causalcell.graph._pc import learn_pc

__all__ = [
    "find_cycle_edges",
    "from_pgmpy",
    "intervene",
    "learn_network",
    "learn_pc",
    "network_to_frame",
    "read_network",
    "to_adjacency",
    "to_pgmpy",
    "write_network",
]
