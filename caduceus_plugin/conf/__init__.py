"""Hydra configuration of ``caduceus train`` (groups ``model/``, ``data/``, ``task/``, ``trainer/``).

Another Hydra app can compose these groups by adding ``pkg://caduceus_plugin.conf`` to its search path
(``hydra.searchpath=[pkg://caduceus_plugin.conf]``, or :data:`caduceus_plugin.train.CONFIG_SEARCH_PATH`).
"""
