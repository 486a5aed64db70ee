"""A lock-step fx interpreter: one traced ANN run as two networks, reference and DA, at once.

Calibration compares, at every activation site, what the original ANN computes (the
*reference*) with what the network calibrated so far computes (the *DA* network, DA-QCFS
upstream). :func:`run_lockstep` walks the graph node by node over a list of input chunks and
keeps one environment per network; at each site a callback turns the site's two input lists
into its two output lists (and may fit the site's parameters on the way). Values equal in
both networks (everything before the first site) are computed once and shared, and each value
is freed after its last use, so memory holds about one layer of the calibration set.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from .converter import ActivationSite, site_input

__all__ = ["SiteFn", "run_lockstep"]

SiteFn = Callable[[ActivationSite, list, list], tuple[list, list]]
"""``on_site(site, z_ref_chunks, z_da_chunks) -> (ref_output_chunks, da_output_chunks)``."""


def run_lockstep(gm: fx.GraphModule, sites: list[ActivationSite], chunks: list[torch.Tensor],
                 on_site: SiteFn, progress: Any = None) -> None:
    """Run ``gm`` on ``chunks`` node by node, keeping two environments (reference, DA).

    At each activation site ``on_site(site, z_ref_chunks, z_da_chunks)`` returns the two
    output chunk lists; ``progress`` (a tqdm bar or ``None``) advances by one per site.
    """
    nodes = list(gm.graph.nodes)
    site_of = {s.node: s for s in sites}
    site_in = {s.node: site_input(s) for s in sites}
    last_use: dict[fx.Node, int] = {}
    for i, node in enumerate(nodes):
        for a in node.all_input_nodes:
            last_use[a] = i
    env_r: dict[fx.Node, list] = {}
    env_d: dict[fx.Node, list] = {}
    nch = len(chunks)

    def call(node: fx.Node, env: dict, j: int) -> Any:
        args = fx.node.map_arg(node.args, lambda a: env[a][j])
        kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a][j])
        if node.op == "call_module":
            return gm.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    for i, node in enumerate(nodes):
        if node.op == "output":
            break
        if node.op == "placeholder":
            env_r[node] = env_d[node] = chunks
        elif node.op == "get_attr":
            val = operator.attrgetter(node.target)(gm)
            env_r[node] = env_d[node] = [val] * nch
        elif node in site_of:
            x = site_in[node]
            out_r, out_d = on_site(site_of[node], env_r[x], env_d[x])
            env_r[node], env_d[node] = out_r, out_d
            if progress is not None:
                progress.update(1)
        else:
            shared = all(env_r[a] is env_d[a] for a in node.all_input_nodes)
            env_r[node] = [call(node, env_r, j) for j in range(nch)]
            env_d[node] = env_r[node] if shared else [call(node, env_d, j) for j in range(nch)]
        for a in node.all_input_nodes:
            if last_use.get(a) == i:
                env_r.pop(a, None)
                env_d.pop(a, None)
