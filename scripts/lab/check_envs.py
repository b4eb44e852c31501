"""Checks the labgrid files of configs/labgrid without a lab: each
environment loads (its imports: dpplab_labgrid.py), every resource and
driver it names is one labgrid knows, with arguments the class accepts; the
QEMU targets are instantiated (drivers bound); the exporter configuration
names known resources with accepted arguments.

    python3 check_envs.py ENV.yaml... --exporter EXPORTER.yaml...
"""

import sys

import attr
import yaml

from labgrid import Environment, target_factory


def check_args(kind, name, cls, args, where):
    fields = {a.name for a in attr.fields(cls) if a.init}
    unknown = sorted(set(args or {}) - fields - {"name"})
    missing = sorted(
        a.name
        for a in attr.fields(cls)
        if a.init and a.default is attr.NOTHING and a.name not in (args or {}) and a.name not in ("target", "name")
    )
    problems = [f"{where}: {kind} {name}: unknown argument {u}" for u in unknown]
    problems += [f"{where}: {kind} {name}: missing argument {m}" for m in missing]
    return problems


def check_env(path):
    problems = []
    env = Environment(config_file=path)
    for tname, target in env.config.get_targets().items():
        for kind, table in (("resource", target_factory.resources), ("driver", target_factory.drivers)):
            for name, args in (target.get(kind + "s") or {}).items():
                cls = table.get(name)
                if cls is None:
                    problems.append(f"{path}: {tname}: unknown {kind} {name}")
                    continue
                problems += check_args(kind, name, cls, args, f"{path}: {tname}")
        if not target.get("resources") and not problems:
            # Local targets (QEMU): instantiate them, drivers bound.
            t = env.get_target(tname)
            for name in target["drivers"]:
                t.get_driver(name, activate=False)
    return problems


def check_exporter(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    for group, resources in data.items():
        for name, args in resources.items():
            cls = target_factory.resources.get(name)
            if cls is None:
                problems.append(f"{path}: {group}: unknown resource {name}")
                continue
            problems += check_args("resource", name, cls, args, f"{path}: {group}")
    return problems


def main(argv):
    problems = []
    exporter = False
    for arg in argv:
        if arg == "--exporter":
            exporter = True
            continue
        found = check_exporter(arg) if exporter else check_env(arg)
        print(f"{'not ok' if found else 'ok'}: {arg}")
        problems += found
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
