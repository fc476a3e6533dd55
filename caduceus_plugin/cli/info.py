"""``caduceus info [NAME]`` (version, scan backends, settings, models; or one component's spec) and
``caduceus list`` (every registered component, all plugins, and released checkpoints)."""

from __future__ import annotations

import argparse

from caduceus_plugin.cli.args import print_compute_paths


def _component_spec(comp) -> dict | None:  # type: ignore[no-untyped-def]
    from caduceus_plugin.registry.specs import load_specs

    return comp.spec or load_specs().get(comp.name)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.name:
        import json

        from caduceus_plugin.registry.components import get_registry

        registry = get_registry()
        kind = "head" if args.name in registry.names("head") and args.name not in registry.names() else "backbone"
        comp = registry.get(args.name, kind)
        spec = _component_spec(comp) or {}
        print(f"{comp.kind} {comp.name} (from {comp.distribution}, plugin {comp.plugin}; factory {comp.factory})")
        for key in ("description", "family"):
            if key in spec:
                print(f"{key}: {spec[key]}")
        for key in ("config", "input", "output"):
            if key in spec:
                print(f"{key}: {json.dumps(spec[key])}")
        for c in spec.get("checkpoints", []):
            print(f"checkpoint {comp.name}.{c['tag']}: {c['hf_repo']} ({c['params']:,} parameters; "
                  f"files {', '.join(c.get('files', []))})")
        return 0
    import torch

    import caduceus_plugin
    from caduceus_plugin.registry.specs import load_specs

    print(
        f"caduceus-plugin {caduceus_plugin.__version__} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda={'yes' if torch.cuda.is_available() else 'no'})"
    )
    print_compute_paths()
    from caduceus_plugin import settings

    print("settings:", ", ".join(settings.describe()) or "none set (CADUCEUS_* environment variables)")
    print("models:", ", ".join(sorted(load_specs())))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from caduceus_plugin.registry.components import get_registry
    from caduceus_plugin.registry.specs import load_specs

    load_specs()  # validates the shipped specs
    for comp in get_registry().components():
        spec = _component_spec(comp)
        about = f": {spec['description']}" if spec else ""
        print(f"{comp.kind} {comp.name} (from {comp.distribution}){about}")
        for c in spec.get("checkpoints", []) if spec else []:
            print(f"  {comp.name}.{c['tag']}: {c['hf_repo']} ({c['params']:,} parameters)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="version, scan backends, registered models; or one component's spec")
    info.add_argument("name", nargs="?", help="a registered component: print its spec and where it comes from")
    info.set_defaults(func=_cmd_info)
    sub.add_parser("list", help="registered components (all plugins) and released checkpoints").set_defaults(
        func=_cmd_list
    )
