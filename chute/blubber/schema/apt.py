"""``apt``: Debian packages, extra sources (with signing keys) and proxies.

``packages`` is a list (0.8) or a mapping of target release to list
([later-DF]); a list means the release ``default``. Everything appends on
merge. Packages install as root in the privileged phase.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Cmd, Env, Instruction, Phase, Record, Run
from .decode import Ctx, Keys, Path, items, kind, mapping, string, string_list
from .shell import write_file_cmd
from .validation import DEBIAN_COMPONENT, DEBIAN_PACKAGE, DEBIAN_RELEASE, HTTP_URL

DEFAULT_RELEASE = "default"
SOURCES_LIST = "/etc/apt/sources.list.d/99blubber.list"
KEYRING_DIR = "/etc/apt/keyrings"
PROXIES_CONF = "/etc/apt/apt.conf.d/99blubber-proxies"

KEYS = Keys("apt", ("packages", "sources", "proxies"))
SOURCE_KEYS = Keys("an apt source", ("url", "distribution", "components", "signed-by"))
PROXY_KEYS = Keys("an apt proxy", ("url", "source"))


class AptSource(Record):
    __slots__ = ("components", "distribution", "signed_by", "url")

    def __init__(
        self,
        url: str,
        distribution: str,
        components: tuple[str, ...] = (),
        signed_by: str = "",
    ) -> None:
        self.url = url
        self.distribution = distribution
        self.components = components
        self.signed_by = signed_by

    def keyring_path(self) -> str:
        import hashlib

        return f"{KEYRING_DIR}/{hashlib.sha256(self.signed_by.encode()).hexdigest()}.asc"

    def line(self) -> str:
        head = "deb"
        if self.signed_by:
            head += f" [signed-by={self.keyring_path()}]"
        return " ".join((head, self.url, self.distribution, *self.components))


class AptProxy(Record):
    __slots__ = ("source", "url")

    def __init__(self, url: str, source: str = "") -> None:
        self.url = url
        self.source = source

    def line(self) -> str:
        scheme_of = self.source or self.url
        scheme = scheme_of.split(":", 1)[0].lower()
        cfg = f"Acquire::{scheme}::Proxy"
        if self.source:
            cfg += "::" + _host(self.source)
        return f'{cfg} "{self.url}";'


def _host(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    for sep in "/?#":
        rest = rest.split(sep, 1)[0]
    return rest.rsplit("@", 1)[-1]


class AptConfig(Record):
    __slots__ = ("packages", "proxies", "sources")

    def __init__(
        self,
        packages: dict[str, list[str]] | None = None,
        sources: list[AptSource] | None = None,
        proxies: list[AptProxy] | None = None,
    ) -> None:
        self.packages = packages  # release -> packages, insertion ordered
        self.sources = sources
        self.proxies = proxies

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any) -> AptConfig:
        cfg = cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        if "packages" in fields:
            cfg.packages = _packages(ctx, *fields["packages"])
        if "sources" in fields:
            p, v = fields["sources"]
            entries = items(ctx, p, v, what="apt sources")
            if entries is not None:
                cfg.sources = [s for s in (_source(ctx, ep, ev) for ep, ev in entries) if s is not None]
        if "proxies" in fields:
            p, v = fields["proxies"]
            entries = items(ctx, p, v, what="apt proxies")
            if entries is not None:
                cfg.proxies = [x for x in (_proxy(ctx, ep, ev) for ep, ev in entries) if x is not None]
        return cfg

    def merged(self, other: AptConfig) -> AptConfig:
        packages = self.packages
        if other.packages is not None:
            packages = {k: list(v) for k, v in (self.packages or {}).items()}
            for release, pkgs in other.packages.items():
                packages.setdefault(release, []).extend(pkgs)
        sources = self.sources if other.sources is None else [*(self.sources or ()), *other.sources]
        proxies = self.proxies if other.proxies is None else [*(self.proxies or ()), *other.proxies]
        return AptConfig(packages, sources, proxies)

    def is_empty(self) -> bool:
        return not (self.packages and any(self.packages.values())) and not self.sources and not self.proxies

    def instructions(self, phase: Phase) -> list[Instruction]:
        if phase is not Phase.PRIVILEGED or self.is_empty():
            return []
        out: list[Instruction] = [Env((("DEBIAN_FRONTEND", "noninteractive"),), "apt")]
        if self.proxies:
            proxies = "".join(p.line() + "\n" for p in self.proxies)
            out.append(Run((write_file_cmd(PROXIES_CONF, proxies),), "apt"))
        for src in self.sources or ():
            if src.signed_by:
                out.append(Run((Cmd("mkdir -p", (KEYRING_DIR,)),
                                write_file_cmd(src.keyring_path(), src.signed_by)), "apt"))
        if self.sources:
            # Third-party sources are usually https: get the CA bundle first.
            out.append(Run((Cmd("apt-get update"), Cmd("apt-get install -y", ("ca-certificates",))), "apt"))
            out.append(Run((write_file_cmd(SOURCES_LIST, "".join(s.line() + "\n" for s in self.sources)),),
                           "apt"))
        cmds: list[Cmd] = []
        releases = sorted(r for r, pkgs in (self.packages or {}).items() if pkgs)
        if releases:
            cmds.append(Cmd("apt-get update"))
        for release in releases:
            pkgs = tuple(self.packages[release])  # type: ignore[index]
            if release == DEFAULT_RELEASE:
                cmds.append(Cmd("apt-get install -y", pkgs))
            else:
                cmds.append(Cmd("apt-get install -y -t", (release, *pkgs)))
        cmds.append(Cmd("rm -rf /var/lib/apt/lists/*"))
        if self.proxies:
            cmds.append(Cmd("rm -f", (PROXIES_CONF,)))
        out.append(Run(tuple(cmds), "apt"))
        return out


def _packages(ctx: Ctx, path: Path, value: Any) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if isinstance(value, list):
        pkgs = string_list(ctx, path, value, what="package names") or []
        _check_packages(ctx, path, pkgs)
        return {DEFAULT_RELEASE: pkgs}
    if isinstance(value, dict):
        out: dict[str, list[str]] = {}
        for release, pkgs_value in value.items():
            p = (*path, release)
            if release != DEFAULT_RELEASE and not DEBIAN_RELEASE.fullmatch(release):
                ctx.error(p, f"{release!r} is not a valid Debian release name", "use a release such as "
                          "bookworm-backports, or 'default' for the base image's release", at_key=True)
            pkgs = string_list(ctx, p, pkgs_value, what="package names")
            if pkgs is not None:
                _check_packages(ctx, p, pkgs)
                out.setdefault(release, []).extend(pkgs)
        return out
    ctx.error(path, f"must be a list of packages or a mapping of release to packages, not {kind(value)}",
              "write packages: [curl, git] or packages: {bookworm-backports: [curl]}", decode=True)
    return None


def _check_packages(ctx: Ctx, path: Path, pkgs: list[str]) -> None:
    for i, pkg in enumerate(pkgs):
        if not DEBIAN_PACKAGE.fullmatch(pkg):
            ctx.error((*path, i), f"{pkg!r} is not a valid Debian package name",
                      "a package name is lower case, at least 2 characters, optionally with =VERSION or "
                      "/RELEASE (e.g. curl, libc6=2.36-9, npm/bookworm-backports)")


def _source(ctx: Ctx, path: Path, value: Any) -> AptSource | None:
    fields = mapping(ctx, value, path, SOURCE_KEYS)
    if fields is None:
        if value is None:
            ctx.error(path, "an apt source must be a mapping, not null", "give url and distribution",
                      decode=True)
        return None
    url = string(ctx, *fields["url"]) if "url" in fields else ""
    dist = string(ctx, *fields["distribution"]) if "distribution" in fields else ""
    comps = string_list(ctx, *fields["components"], what="components") if "components" in fields else None
    signed = string(ctx, *fields["signed-by"]) if "signed-by" in fields else ""
    if not url:
        ctx.error(path, "url is required for an apt source", "e.g. url: http://apt.wikimedia.org/wikimedia")
    elif not HTTP_URL.fullmatch(url):
        ctx.error(fields["url"][0], f"{url!r} is not a valid HTTP/HTTPS URL", "e.g. https://deb.example.org/debian")
    if not dist:
        ctx.error(path, "distribution is required for an apt source", "e.g. distribution: bookworm")
    elif not DEBIAN_RELEASE.fullmatch(dist):
        ctx.error(fields["distribution"][0], f"{dist!r} is not a valid Debian distribution name",
                  "e.g. bookworm or bullseye-wikimedia")
    for i, comp in enumerate(comps or ()):
        if not DEBIAN_COMPONENT.fullmatch(comp):
            ctx.error((*fields["components"][0], i), f"{comp!r} is not a valid component name",
                      "e.g. main, contrib or thirdparty/confluent")
    return AptSource(url, dist, tuple(comps or ()), signed)


def _proxy(ctx: Ctx, path: Path, value: Any) -> AptProxy | None:
    if isinstance(value, str):
        url, source, url_path = value, "", path
    else:
        fields = mapping(ctx, value, path, PROXY_KEYS)
        if fields is None:
            if value is None:
                ctx.error(path, "an apt proxy must be a URL or a mapping, not null", "give the proxy URL",
                          decode=True)
            return None
        url = string(ctx, *fields["url"]) if "url" in fields else ""
        source = string(ctx, *fields["source"]) if "source" in fields else ""
        url_path = fields["url"][0] if "url" in fields else path
        if source and not HTTP_URL.fullmatch(source):
            ctx.error(fields["source"][0], f"{source!r} is not a valid HTTP/HTTPS URL",
                      "the source is the apt repository URL the proxy is for")
    if not url:
        ctx.error(path, "url is required for an apt proxy", "e.g. http://webproxy.example:8080")
    elif not HTTP_URL.fullmatch(url):
        ctx.error(url_path, f"{url!r} is not a valid HTTP/HTTPS URL", "e.g. http://webproxy.example:8080")
    return AptProxy(url, source)
