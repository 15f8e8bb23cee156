"""Write a zip of compiled modules: the guest runner and every module it imports.

Run by the host with the interpreter the guest uses, so bytecode and stdlib
match:  /usr/bin/python3 -IS guest/pack.py OUT.zip (it holds the package guest/)
The module list is what importing every guest module really loads; anything
imported later still loads from the guest's root filesystem, only slower.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _guest_modules() -> list[str]:
    """Every module of the guest package, as imported names (guest.adapters.dln2)."""
    names = []
    for top, dirs, files in os.walk(HERE):
        dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(top, d, "__init__.py")))
        package = os.path.relpath(top, os.path.dirname(HERE)).replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py") and name != "pack.py":
                names.append(package if name == "__init__.py" else f"{package}.{name[:-3]}")
    return names


def main(out: str) -> int:
    sys.path.insert(0, os.path.dirname(HERE))
    import importlib

    for name in _guest_modules():  # init's main() runs only as __main__
        importlib.import_module(name)
    for name in ("tty", "traceback"):  # init.py imports these only when it needs them
        importlib.import_module(name)

    wanted = dict(sys.modules)
    import importlib._bootstrap_external as bootstrap
    import zipfile

    tmp = out + ".tmp"
    count = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, module in sorted(wanted.items()):
            source = getattr(module, "__file__", None)
            if not source or not source.endswith(".py") or name in ("__main__", "os.path"):
                continue
            with open(source, "rb") as handle:
                code = compile(handle.read(), source, "exec", dont_inherit=True)
            stat = os.stat(source)
            data = bootstrap._code_to_timestamp_pyc(code, int(stat.st_mtime), stat.st_size)
            base = name.replace(".", "/")
            is_package = hasattr(module, "__path__")
            archive.writestr(f"{base}/__init__.pyc" if is_package else f"{base}.pyc", bytes(data))
            count += 1
    os.replace(tmp, out)
    print(f"{count} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
