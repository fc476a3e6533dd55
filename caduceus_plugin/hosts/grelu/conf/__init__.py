"""Hydra configuration of ``caduceus train`` (groups ``model/``, ``data/``, ``task/``, ``trainer/``).

Another Hydra app can compose these groups by adding ``pkg://caduceus_plugin.hosts.grelu.conf`` to its search path
(``hydra.searchpath=[pkg://caduceus_plugin.hosts.grelu.conf]``, or
:data:`caduceus_plugin.hosts.grelu.train.CONFIG_SEARCH_PATH`).
"""
