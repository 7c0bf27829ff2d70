"""Blubber's own acceptance scenarios (spec §8, HEAD ``examples/*.feature``) at the Dockerfile level.

Each test compiles the scenario's config and checks the instructions that make
the scenario's assertion true once the image is built (podman builds of the
trickiest ones are in tests/integration/test_blubber_builds.py).
"""

from __future__ import annotations

import hashlib
import re

from blubber_helpers import dockerfile, lines

USERS = (
    'RUN groupadd -o -g "65533" -r "somebody" && useradd -l -o -m -d "/home/somebody" -r -g "somebody" '
    '-u "65533" "somebody" && mkdir -p "/srv/app" && chown "65533":"65533" "/srv/app" && mkdir -p "/opt/lib" '
    '&& chown "65533":"65533" "/opt/lib"\n'
    'RUN groupadd -o -g "900" -r "runuser" && useradd -l -o -m -d "/home/runuser" -r -g "runuser" -u "900" '
    '"runuser"\n'
)


def test_01_copy_a_script_and_run_it_as_entrypoint() -> None:
    # Spec §5.6 example 1, verbatim (Blubber 0.8.0 output).
    out = dockerfile("""
        version: v4
        base: debian:buster
        variants:
          hello:
            copies: [local]
            entrypoint: [./hello.sh]
    """, "hello")
    assert out == (
        'FROM debian:buster\nUSER "root"\nENV HOME="/root"\n' + USERS
        + 'USER "somebody"\nENV HOME="/home/somebody"\nWORKDIR "/srv/app"\n'
        'COPY --chown=65533:65533 [".", "."]\nUSER "runuser"\nENV HOME="/home/runuser"\n'
        'ENTRYPOINT ["./hello.sh"]\nLABEL blubber.variant="hello" blubber.version="+"\n'
    )


def test_01_files_excluded_by_glob_pattern() -> None:
    out = dockerfile("""
        version: v4
        base: localhost/debian:bookworm
        variants:
          hello:
            copies: [{from: local, exclude: ["*.md"]}]
    """, "hello")
    stages = out.split("\nFROM ")
    assert stages[0].startswith("FROM localhost/debian:bookworm AS hello_exclude_1\nUSER \"root\"\nRUN "
                                "--mount=type=bind,source=.,target=/run/blubber-exclude-src ")
    assert 'r[1] = "^[^/]*[.]md$"' in stages[0]
    assert 'COPY --chown=65533:65533 --from=hello_exclude_1 ["/blubber-exclude/0/root", "."]' in lines(out)
    assert "FROM localhost/debian:bookworm AS hello\n" in out  # the filter stage is not the image


def test_01_variants_include_one_another() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        variants:
          hello:
            copies: [local]
            entrypoint: [./hello.sh]
          hey:
            includes: [hello]
    """, "hey")
    assert 'COPY --chown=65533:65533 [".", "."]' in lines(out)
    assert 'ENTRYPOINT ["./hello.sh"]' in lines(out)
    assert lines(out)[-1] == 'LABEL blubber.variant="hey" blubber.version="+"'


def test_02_defaults_and_custom_owners() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        variants:
          default: {copies: [local]}
          custom:
            lives: {in: /usr/local/app, as: appowner, uid: 1234, gid: 1235}
            runs: {as: apprunner, uid: 4321, gid: 4320}
            copies: [local]
    """, "custom")
    assert ('RUN groupadd -o -g "1235" -r "appowner" && useradd -l -o -m -d "/home/appowner" -r -g '
            '"appowner" -u "1234" "appowner" && mkdir -p "/usr/local/app" && chown "1234":"1235" '
            '"/usr/local/app" && mkdir -p "/opt/lib" && chown "1234":"1235" "/opt/lib"') in lines(out)
    assert ('RUN groupadd -o -g "4320" -r "apprunner" && useradd -l -o -m -d "/home/apprunner" -r -g '
            '"apprunner" -u "4321" "apprunner"') in lines(out)
    assert 'WORKDIR "/usr/local/app"' in lines(out)
    assert 'COPY --chown=1234:1235 [".", "."]' in lines(out)
    assert lines(out)[-3:-1] == ['USER "apprunner"', 'ENV HOME="/home/apprunner"']


def test_02_insecure_runtime_keeps_the_lives_user() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        lives: {uid: 1234}
        variants:
          insecure: {runs: {insecurely: true, uid: 4321}}
    """, "insecure")
    # The runs user is still created, but the image keeps running as the lives user.
    assert any('-u "4321" "runuser"' in line for line in lines(out))
    assert lines(out)[-2:] == ['WORKDIR "/srv/app"', 'LABEL blubber.variant="insecure" blubber.version="+"']


def test_02_environment_and_runtime_directory() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        variants:
          env:
            runs:
              environment: {FOO: bar, BAZ: qux}
              in: /some/other/directory
            entrypoint: [env]
    """, "env")
    body = lines(out)
    assert body[body.index('WORKDIR "/srv/app"') + 1] == 'ENV BAZ="qux" FOO="bar"'
    assert body[-4:-1] == ['ENV HOME="/home/runuser"', 'WORKDIR "/some/other/directory"',
                           'ENTRYPOINT ["env"]']


def test_03_packages_sources_and_signing_keys() -> None:
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQINBFe\n-----END PGP PUBLIC KEY BLOCK-----\n"
    out = dockerfile(f"""
        version: v4
        variants:
          build:
            base: debian:bookworm
            apt:
              sources:
                - url: https://packages.microsoft.com/debian/12/prod
                  distribution: bookworm
                  components: [main]
                  signed-by: "{key.encode('unicode_escape').decode()}"
              packages:
                default: [gcc, libc6-dev]
                bookworm-backports: [golang]
    """, "build")
    digest = hashlib.sha256(key.encode()).hexdigest()
    body = lines(out)
    i = body.index('ENV DEBIAN_FRONTEND="noninteractive"')
    assert body[i + 1] == (f'RUN mkdir -p "/etc/apt/keyrings" && printf \'%b\' \'-----BEGIN PGP PUBLIC '
                           f'KEY BLOCK-----\\nmQINBFe\\n-----END PGP PUBLIC KEY BLOCK-----\\n\' > '
                           f"'/etc/apt/keyrings/{digest}.asc'")
    assert body[i + 2] == 'RUN apt-get update && apt-get install -y "ca-certificates"'
    assert body[i + 3] == (f"RUN printf '%b' 'deb [signed-by=/etc/apt/keyrings/{digest}.asc] "
                           "https://packages.microsoft.com/debian/12/prod bookworm main\\n' > "
                           "'/etc/apt/sources.list.d/99blubber.list'")
    # Releases sorted; "default" means no -t.
    assert body[i + 4] == ('RUN apt-get update && apt-get install -y -t "bookworm-backports" "golang" && '
                           'apt-get install -y "gcc" "libc6-dev" && rm -rf /var/lib/apt/lists/*')


def test_03_apt_proxies_are_written_then_removed() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        apt:
          proxies: [http://webproxy.example:8080, {url: "http://p2:3128", source: "https://security.debian.org/"}]
          packages: [curl]
        variants: {net: {}}
    """, "net")
    assert ("RUN printf '%b' 'Acquire::http::Proxy \"http://webproxy.example:8080\";\\nAcquire::https::Proxy::"
            "security.debian.org \"http://p2:3128\";\\n' > '/etc/apt/apt.conf.d/99blubber-proxies'"
            ) in lines(out)
    assert ('RUN apt-get update && apt-get install -y "curl" && rm -rf /var/lib/apt/lists/* && '
            'rm -f "/etc/apt/apt.conf.d/99blubber-proxies"') in lines(out)


def test_04_builder_with_string_command() -> None:
    out = dockerfile("""
        version: v4
        variants:
          build:
            base: debian:bullseye
            apt: {packages: [gcc, libc6-dev]}
            builder: {requirements: [main.c], command: "gcc -o hello main.c"}
            entrypoint: [./hello]
    """, "build")
    body = lines(out)
    i = body.index('COPY --chown=65533:65533 ["main.c", "./"]')
    assert body[i + 1] == "RUN gcc -o hello main.c"


def test_04_multiple_builders_run_in_order() -> None:
    out = dockerfile("""
        version: v4
        variants:
          build:
            base: golang:1.18
            builders:
              - custom: {requirements: [go.mod, go.sum], command: "go mod download"}
              - custom: {requirements: [main.go], command: "go build ."}
    """, "build")
    body = lines(out)
    i = body.index('COPY --chown=65533:65533 ["go.mod", "go.sum", "./"]')
    assert body[i:i + 4] == ['COPY --chown=65533:65533 ["go.mod", "go.sum", "./"]', "RUN go mod download",
                             'COPY --chown=65533:65533 ["main.go", "./"]', "RUN go build ."]


def test_04_inline_script_and_scratch_application() -> None:
    script = '#!/bin/bash\nif ! [[ "$CGO_ENABLED" == "0" ]]; then\n  exit 1\nfi\ngo build $(go list)\n'
    out = dockerfile("""
        version: v4
        variants:
          build:
            base: golang:1.18
            runs: {environment: {CGO_ENABLED: "0"}}
            builders:
              - custom:
                  requirements: [main.go]
                  script: |
                    #!/bin/bash
                    if ! [[ "$CGO_ENABLED" == "0" ]]; then
                      exit 1
                    fi
                    go build $(go list)
          application:
            copies: [{from: build, source: ./hello-world-go, destination: /hello}]
            entrypoint: [/hello]
    """, "application")
    d = "/tmp/blubber-script-" + hashlib.sha256(script.encode()).hexdigest()[:16]
    run = next(line for line in lines(out) if line.startswith("RUN --mount=type=tmpfs"))
    assert run == (f"RUN --mount=type=tmpfs,target={d} printf '%b' "
                   "'#!/bin/bash\\nif ! [[ \"$CGO_ENABLED\" == \"0\" ]]; then\\n  exit 1\\nfi\\n"
                   "go build $(go list)\\n'"
                   f" > '{d}/script' && chmod 0555 '{d}/script' && '{d}/script'")
    assert out.endswith('FROM scratch AS application\n'
                        'COPY --from=build ["/srv/app/hello-world-go", "/hello"]\n'
                        'ENTRYPOINT ["/hello"]\nLABEL blubber.variant="application" blubber.version="+"\n')


def test_04_script_without_shebang_gets_bin_sh() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        variants: {build: {builder: {script: "make all"}}}
    """, "build")
    assert "printf '%b' '#!/bin/sh\\nmake all' > " in out


def test_04_requirements_exclude_caches_and_mounts() -> None:
    out = dockerfile("""
        version: v4
        variants:
          assets:
            base: node:22-bookworm
            lives: {in: /src}
            builders:
              - node: {requirements: [package.json, package-lock.json]}
              - custom: {requirements: [webpack.config.js, ./src/], command: "npm run build"}
          build:
            base: golang:1.23
            runs: {environment: {CGO_ENABLED: "0", GOCACHE: /var/cache/go}}
            builders:
              - custom:
                  requirements: [{from: local, exclude: ["*.md"]}]
                  command: "go build"
                  caches: ["${GOCACHE}", {destination: "${GOPATH}/pkg", access: locked, id: gopkg}]
                  mounts: [{from: assets, source: /src/dist, destination: ./dist}]
    """, "build")
    body = lines(out)
    assert body[0] == "FROM node:22-bookworm AS assets"
    assert 'COPY --chown=65533:65533 --from=build_exclude_1 ["/blubber-exclude/0/root", "./"]' in body
    assert ("RUN --mount=type=bind,from=assets,source=/src/dist,target=/srv/app/dist,rw "
            "--mount=type=cache,target=${GOCACHE},sharing=shared,uid=65533,gid=65533 "
            "--mount=type=cache,id=gopkg,target=${GOPATH}/pkg,sharing=locked,uid=65533,gid=65533 go build"
            ) in body


def test_05_copies_from_another_variant_into_scratch() -> None:
    out = dockerfile("""
        version: v4
        variants:
          build:
            base: golang:1.18
            lives: {in: /src}
            builders: [{custom: {requirements: [main.go], command: "go build ."}}]
          production:
            base: ~
            copies: [{from: build, source: /src/hello-world-go, destination: /hello-world}]
            entrypoint: [/hello-world]
    """, "production")
    assert out.split("FROM scratch AS production\n")[1] == (
        'COPY --from=build ["/src/hello-world-go", "/hello-world"]\nENTRYPOINT ["/hello-world"]\n'
        'LABEL blubber.variant="production" blubber.version="+"\n')


PY = """
    version: v4
    variants:
      hello:
        base: python:3.10-bullseye
        builders:
          - python:
              version: python3
              requirements: {reqs}
              {extra}
        copies: [local]
"""


def _python(extra: str = "", reqs: str = "[requirements.txt]") -> list[str]:
    out = lines(dockerfile(PY.format(extra=extra, reqs=reqs), "hello"))
    start = out.index('WORKDIR "/srv/app"') + 1
    return out[start:out.index('COPY --chown=65533:65533 [".", "."]')]


def test_06_python_virtualenv_and_requirements() -> None:
    assert _python() == [
        'COPY --chown=65533:65533 ["requirements.txt", "./"]',
        'RUN python3 "-m" "venv" "/opt/lib/venv"',
        'ENV PATH="/opt/lib/venv/bin:$PATH" VIRTUAL_ENV="/opt/lib/venv"',
        'RUN python3 "-m" "pip" "install" "-U" "setuptools!=60.9.0" && python3 "-m" "pip" "install" "-U" '
        '"wheel" "tox" "pip"',
        'RUN python3 "-m" "pip" "install" "-r" "requirements.txt"',
    ]


def test_06_use_system_site_packages_and_no_deps() -> None:
    out = _python("use-system-site-packages: true\n              no-deps: true", "[alt-requirements.txt]")
    assert out[1] == 'RUN python3 "-m" "venv" "/opt/lib/venv" "--system-site-packages"'
    assert out[-1] == 'RUN python3 "-m" "pip" "install" "--no-deps" "-r" "alt-requirements.txt"'
    full = dockerfile(PY.format(extra="no-deps: true", reqs="[r.txt]"), "hello")
    assert 'ENV HOME="/home/runuser"\nRUN python3 "-m" "pip" "check"\n' in full  # post-install check


def test_06_version_pins() -> None:
    out = _python('pip-version: "~=26.0"\n              setuptools-version: "~=81.0"\n'
                  '              tox-version: "4.49.1"\n              wheel-version: "~=0.46.3"')
    assert out[3] == ('RUN python3 "-m" "pip" "install" "-U" "setuptools~=81.0" && '
                      'python3 "-m" "pip" "install" "-U" "wheel~=0.46.3" "tox==4.49.1" "pip~=26.0"')


def test_06_poetry_1_and_2() -> None:
    reqs = "[pyproject.toml, poetry.lock]"
    p1 = _python("poetry: {version: ==1.5.1}", reqs)
    assert p1[4:] == [
        'ENV POETRY_VIRTUALENVS_PATH="/opt/lib/poetry"',
        'RUN python3 "-m" "pip" "install" "-U" "poetry==1.5.1"',
        'RUN mkdir -p "/opt/lib/poetry"',
        'RUN poetry "install" "--no-root" "--no-dev"',
    ]
    assert _python("poetry: {version: ==2.0.1, only: main}", reqs)[-1] == \
        'RUN poetry "install" "--no-root" "--only" "main"'
    assert _python("poetry: {version: ==2.0.1, without: dev}", reqs)[-1] == \
        'RUN poetry "install" "--no-root" "--without" "dev"'
    assert _python("poetry: {version: ==1.8.3, devel: true}", reqs)[-1] == 'RUN poetry "install" "--no-root"'


def test_07_node_builder() -> None:
    out = dockerfile("""
        version: v4
        variants:
          hello:
            base: node:22
            builders: [{node: {requirements: [package.json, package-lock.json], use-npm-ci: true}}]
            copies: [local]
            entrypoint: [node, hello.js]
    """, "hello")
    body = lines(out)
    i = body.index('COPY --chown=65533:65533 ["package.json", "package-lock.json", "./"]')
    assert body[i + 1] == "RUN npm ci"
    assert body[-3:-1] == ['ENV NODE_ENV=""', 'ENTRYPOINT ["node", "hello.js"]']


def test_07_node_production_with_allowed_dedupe_failure() -> None:
    out = dockerfile("""
        version: v4
        base: node:22
        variants:
          prod: {node: {requirements: [package.json], env: production, allow-dedupe-failure: true}}
    """, "prod")
    assert ('RUN npm install "--only=production" && { npm dedupe "--only=production" || echo "WARNING: npm '
            'dedupe failed, continuing anyways"; }') in lines(out)
    assert 'ENV NODE_ENV="production"' in lines(out)


def test_08_build_arguments() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        arguments: {MAKE_TARGET: foo, A_FIRST: "1"}
        variants:
          make: {builder: {command: "make ${MAKE_TARGET}"}}
    """, "make")
    assert lines(out)[1:5] == ['USER "root"', 'ENV HOME="/root"', 'ARG A_FIRST="1"', 'ARG MAKE_TARGET="foo"']
    assert "RUN make ${MAKE_TARGET}" in lines(out)


def test_99_labels_on_a_scratch_image() -> None:
    out = dockerfile("version: v4\nvariants:\n  hello: {}\n", "hello")
    assert out == 'FROM scratch\nLABEL blubber.variant="hello" blubber.version="+"\n'
    from blubber_helpers import config

    from chute import __version__
    from chute.blubber import compile_variant
    assert re.search(rf'blubber.version="{re.escape(__version__)}"', compile_variant(config(
        "version: v4\nvariants:\n  hello: {}\n"), "hello"))
