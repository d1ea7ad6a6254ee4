"""Creates the project's virtual environment (.venv) from uv.lock.

ml-metadata and TFDV 1.21 only ship `manylinux_2_39` wheels: their extensions need glibc 2.38+
and the libstdc++ of GCC 13+. On a Debian host whose own C runtime is older (Debian 12 has glibc
2.36), this script fetches Debian 13's libc6, libstdc++6 and libgcc-s1 through a private apt
configuration, unpacks them into .venv/runtime, and replaces .venv/bin/python with a wrapper that
starts the stock interpreter under that runtime. Nothing outside the project directory changes.

Run with the base Python 3.11 (`make setup` does). A second run on a ready tree does nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
RUNTIME = VENV / "runtime"
RUNTIME_LIBS = RUNTIME / "usr" / "lib" / "x86_64-linux-gnu"
STAMP = VENV / ".setup-stamp"
UV_VERSION = "0.13.8"
UV = ROOT / ".tools" / f"uv-{UV_VERSION}" / "bin" / "uv"
# uv's download cache stays inside the project too, unless the user points UV_CACHE_DIR elsewhere.
UV_CACHE = ROOT / ".cache" / "uv"

# components/stack.py's Keras 2 flag, set in every interpreter of .venv at start-up (a .pth
# file's import line), as the Dockerfile's ENV does in the image, so that no module depends on
# being imported before TensorFlow.
STACK_MODULE = ROOT / "components" / "stack.py"
STACK_PTH = VENV / "lib" / "python3.11" / "site-packages" / "movielens_recommender_stack.pth"

REQUIRED_GLIBC = (2, 39)
RUNTIME_SUITE = "trixie"
RUNTIME_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class SetupError(RuntimeError):
    """A requirement of the host that this script cannot meet by itself."""


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def needs_private_runtime(libc_name: str, libc_version: str) -> bool:
    """True when the host's C library is glibc older than the wheels need."""
    if libc_name != "glibc":
        raise SetupError(
            f"This stack needs Linux x86-64 with glibc (found C library {libc_name!r}). ScaNN and "
            "ml-metadata 1.21 publish no other wheels: use Debian 12+ / Ubuntu 24.04+, or the "
            "container image (Dockerfile)."
        )
    return parse_version(libc_version) < REQUIRED_GLIBC


def debian_archive_uris(sources_dir: Path = Path("/etc/apt")) -> list[str]:
    """The host's Debian archive mirrors (security mirrors excluded), from its apt sources.

    Reads both the deb822 `*.sources` files and the one-line `sources.list` format.
    """
    uris: list[str] = []
    deb822_files = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in deb822_files:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines()
                if ":" in line and not line.lstrip().startswith("#")
            )
            suites = fields.get("Suites", "").split()
            if "deb" in fields.get("Types", "").split() and any(
                "security" not in suite for suite in suites
            ):
                uris.extend(fields.get("URIs", "").split())
    one_line_files = [sources_dir / "sources.list", *sorted(
        (sources_dir / "sources.list.d").glob("*.list"))]
    for path in one_line_files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and "security" not in words[2]:
                uris.append(words[1])
    debian_uris = [uri for uri in dict.fromkeys(uris) if "debian" in uri]
    return debian_uris


def private_apt_options(workdir: Path) -> list[str]:
    """apt-get options that use only files under `workdir` (no change to /etc/apt or /var)."""
    options = {
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": workdir / "sources.list.d",
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": "/dev/null",
        "Dir::State::Lists": workdir / "lists",
        "Dir::Cache": workdir / "cache",
        "APT::Architecture": "amd64",
        "APT::Architectures": "amd64",
    }
    if os.geteuid() == 0:
        # As root apt downloads as the _apt user, which cannot write into a private directory.
        options["APT::Sandbox::User"] = "root"
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def install_private_runtime() -> None:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SetupError(
                f"This host's glibc is older than {'.'.join(map(str, REQUIRED_GLIBC))} and it has "
                f"no {tool} to fetch a newer private C runtime. Use a host with glibc >= 2.39 "
                "(Debian 13, Ubuntu 24.04) or the container image (Dockerfile)."
            )
    uris = debian_archive_uris()
    if not uris or not Path(DEBIAN_KEYRING).exists():
        raise SetupError(
            "This host's glibc is too old for the ml-metadata / TFDV 1.21 wheels, and no Debian "
            f"archive (apt sources + {DEBIAN_KEYRING}) was found to fetch Debian 13's C runtime "
            "from. Use a host with glibc >= 2.39 (Debian 13, Ubuntu 24.04) or the container image."
        )
    print(f"setup: fetching Debian {RUNTIME_SUITE}'s {', '.join(RUNTIME_PACKAGES)} "
          f"from {uris[0]} into {RUNTIME.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory(dir=VENV, prefix=".apt-") as tmp:
        workdir = Path(tmp)
        for sub in ("sources.list.d", "lists/partial", "cache/archives/partial", "debs"):
            (workdir / sub).mkdir(parents=True)
        (workdir / "sources.list.d" / f"{RUNTIME_SUITE}.sources").write_text(
            f"Types: deb\nURIs: {' '.join(uris)}\nSuites: {RUNTIME_SUITE}\n"
            f"Components: main\nSigned-By: {DEBIAN_KEYRING}\n"
        )
        apt = ["apt-get", "-q", *private_apt_options(workdir)]
        run([*apt, "update"], quiet=True)
        run([*apt, "download", *RUNTIME_PACKAGES], cwd=workdir / "debs", quiet=True)
        staging = workdir / "runtime"
        for deb in sorted((workdir / "debs").glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(staging)])
        if not (staging / RUNTIME_LIBS.relative_to(RUNTIME) / "ld-linux-x86-64.so.2").exists():
            raise SetupError(f"The {RUNTIME_SUITE} packages did not contain ld-linux-x86-64.so.2.")
        shutil.rmtree(RUNTIME, ignore_errors=True)
        staging.rename(RUNTIME)


def write_python_wrapper(base_python: str) -> None:
    """Makes .venv/bin/python start the base interpreter under the private C runtime.

    `--argv0` keeps sys.executable at .venv/bin/python, so the venv is found and every
    subprocess started through sys.executable (Beam workers, TFX) goes through this wrapper too;
    console scripts reach it through their shebang.
    """
    wrapper = VENV / "bin" / "python"
    wrapper.unlink()
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Written by scripts/setup_env.py: runs Python under Debian 13's C runtime (see README).\n"
        f'exec "{RUNTIME_LIBS}/ld-linux-x86-64.so.2" --library-path "{RUNTIME_LIBS}" '
        f'--argv0 "{wrapper}" "{base_python}" "$@"\n'
    )
    wrapper.chmod(0o755)


def run(cmd: list[str], cwd: Path = ROOT, quiet: bool = False, env: dict | None = None) -> None:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
    )
    if result.returncode != 0:
        raise SetupError(
            f"`{' '.join(map(str, cmd))}` failed with exit code {result.returncode}"
            + (f":\n{result.stdout[-4000:]}" if quiet else "")
        )


def ensure_uv() -> Path:
    if not UV.exists():
        print(f"setup: installing uv {UV_VERSION} into {UV.parent.parent.relative_to(ROOT)}")
        run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-cache-dir", "--target", str(UV.parent.parent), f"uv=={UV_VERSION}"])
    return UV


def lock_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("uv.lock", "pyproject.toml", "scripts/setup_env.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def write_stack_pth() -> None:
    environment = runpy.run_path(str(STACK_MODULE))["KERAS_2_ENVIRONMENT"]
    settings = "; ".join(f"os.environ.setdefault({name!r}, {value!r})"
                         for name, value in environment.items())
    text = f"import os; {settings}\n"
    if not STACK_PTH.exists() or STACK_PTH.read_text() != text:
        STACK_PTH.write_text(text)


def main() -> int:
    fingerprint = lock_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        write_stack_pth()
        print("setup: .venv is up to date with uv.lock")
        return 0
    if sys.version_info[:2] != (3, 11):
        raise SetupError(f"Run setup with Python 3.11 (this is {platform.python_version()}).")
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise SetupError(
            f"ScaNN and ml-metadata 1.21 publish Linux x86-64 wheels only (this host is "
            f"{platform.system()} {platform.machine()}): use the container image (Dockerfile)."
        )
    private_runtime = needs_private_runtime(*platform.libc_ver())
    base_python = os.path.realpath(sys.executable)
    uv = ensure_uv()
    uv_env = {"UV_CACHE_DIR": str(UV_CACHE), **os.environ, "UV_PYTHON_DOWNLOADS": "never",
              "UV_PROJECT_ENVIRONMENT": str(VENV)}
    STAMP.unlink(missing_ok=True)
    shutil.rmtree(VENV, ignore_errors=True)
    run([str(uv), "venv", "--quiet", "--python", base_python, str(VENV)], env=uv_env)
    if private_runtime:
        install_private_runtime()
        write_python_wrapper(base_python)
    run([str(uv), "sync", "--frozen", "--python", str(VENV / "bin" / "python")], env=uv_env)
    write_stack_pth()
    STAMP.write_text(fingerprint)
    print("setup: .venv ready" + (" (private Debian 13 C runtime)" if private_runtime else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as error:
        print(f"setup failed: {error}", file=sys.stderr)
        sys.exit(1)
