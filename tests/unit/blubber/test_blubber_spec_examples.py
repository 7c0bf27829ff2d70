"""The worked examples of spec/blubber.md (§4, §5.6), observed with Blubber 0.8.0, byte for byte."""

from __future__ import annotations

from blubber_helpers import dockerfile, lines


def users(app: str = "/srv/app", lives: tuple[str, int, int] = ("somebody", 65533, 65533),
          runs: tuple[str, int, int] = ("runuser", 900, 900)) -> str:
    (ln, lu, lg), (rn, ru, rg) = lives, runs
    return (f'RUN groupadd -o -g "{lg}" -r "{ln}" && useradd -l -o -m -d "/home/{ln}" -r -g "{ln}" '
            f'-u "{lu}" "{ln}" && mkdir -p "{app}" && chown "{lu}":"{lg}" "{app}" && mkdir -p "/opt/lib" '
            f'&& chown "{lu}":"{lg}" "/opt/lib"\n'
            f'RUN groupadd -o -g "{rg}" -r "{rn}" && useradd -l -o -m -d "/home/{rn}" -r -g "{rn}" '
            f'-u "{ru}" "{rn}"\n')


def test_example_2_multi_stage_builder_with_requirements_in_a_subdirectory() -> None:
    out = dockerfile("""
        version: v4
        base: debian:buster
        apt: {packages: [ca-certificates]}
        lives: {in: /srv/service}
        variants:
          build:
            apt: {packages: [gcc, make]}
            builder: {command: [make, build], requirements: [Makefile, src/]}
          production:
            copies:
              - {from: build, source: /srv/service/bin/app, destination: /usr/local/bin/app}
              - {from: local, source: config.yaml, destination: config.yaml}
            entrypoint: [/usr/local/bin/app]
    """, "production")
    u = users("/srv/service")
    assert out == (
        'FROM debian:buster AS build\nUSER "root"\nENV HOME="/root"\nENV DEBIAN_FRONTEND="noninteractive"\n'
        'RUN apt-get update && apt-get install -y "ca-certificates" "gcc" "make" && '
        'rm -rf /var/lib/apt/lists/*\n'
        + u + 'USER "somebody"\nENV HOME="/home/somebody"\nWORKDIR "/srv/service"\nRUN mkdir -p "src/"\n'
        'COPY --chown=65533:65533 ["Makefile", "./"]\nCOPY --chown=65533:65533 ["src", "src/"]\n'
        'RUN make "build"\nUSER "runuser"\nENV HOME="/home/runuser"\n'
        'FROM debian:buster AS production\nUSER "root"\nENV HOME="/root"\n'
        'ENV DEBIAN_FRONTEND="noninteractive"\n'
        'RUN apt-get update && apt-get install -y "ca-certificates" && rm -rf /var/lib/apt/lists/*\n'
        + u + 'USER "somebody"\nENV HOME="/home/somebody"\nWORKDIR "/srv/service"\n'
        'COPY --chown=65533:65533 --from=build ["/srv/service/bin/app", "/usr/local/bin/app"]\n'
        'COPY --chown=65533:65533 ["config.yaml", "config.yaml"]\nUSER "runuser"\nENV HOME="/home/runuser"\n'
        'ENTRYPOINT ["/usr/local/bin/app"]\nLABEL blubber.variant="production" blubber.version="+"\n')


def test_example_3_includes_npm_ci_environment_insecure() -> None:
    out = dockerfile("""
        version: v4
        base: node:10-slim
        runs:
          environment: {PORT: "8080", LOG_LEVEL: debug}
        variants:
          build:
            node: {requirements: [package.json, package-lock.json], use-npm-ci: true}
            copies: [local]
          test:
            includes: [build]
            runs: {insecurely: true}
            entrypoint: [npm, test]
    """, "test")
    assert out == (
        'FROM node:10-slim\nUSER "root"\nENV HOME="/root"\n' + users()
        + 'USER "somebody"\nENV HOME="/home/somebody"\nWORKDIR "/srv/app"\n'
        'ENV LOG_LEVEL="debug" PORT="8080"\n'
        'COPY --chown=65533:65533 ["package.json", "package-lock.json", "./"]\nRUN npm ci\n'
        'COPY --chown=65533:65533 [".", "."]\nENV NODE_ENV=""\nENTRYPOINT ["npm", "test"]\n'
        'LABEL blubber.variant="test" blubber.version="+"\n')


def test_example_4_phase_placement_without_python() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        apt: {packages: [gcc]}
        node: {requirements: [package.json]}
        builder: {command: [make], requirements: [Makefile]}
        runs: {environment: {ZED: z, ALPHA: "a\\"b$c d"}}
        entrypoint: [node, server.js]
        variants: {all: {copies: [local]}}
    """, "all")
    skip = ("USER ", "ENV HOME=", "WORKDIR ", "RUN groupadd")
    body = [line for line in lines(out) if not line.startswith(skip)]
    assert body[1:] == [
        'ENV DEBIAN_FRONTEND="noninteractive"',
        'RUN apt-get update && apt-get install -y "gcc" && rm -rf /var/lib/apt/lists/*',
        'ENV ALPHA="a\\"b$c d" ZED="z"',
        'COPY --chown=65533:65533 ["package.json", "./"]',
        "RUN npm install",
        'COPY --chown=65533:65533 ["Makefile", "./"]',
        "RUN make",
        'COPY --chown=65533:65533 [".", "."]',
        'ENV NODE_ENV=""',
        'ENTRYPOINT ["node", "server.js"]',
        'LABEL blubber.variant="all" blubber.version="+"',
    ]


def test_merge_rules_example() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        runs: {environment: {AA: top, BB: top}, as: toprun}
        entrypoint: [top]
        node: {env: production, requirements: [package.json]}
        variants:
          bbb:
            runs: {environment: {BB: bbb, CC: bbb}, uid: 1000}
            entrypoint: []
            node: {requirements: []}
          xyz:
            includes: [bbb]
            runs: {environment: {CC: xyz}}
    """, "xyz")
    body = lines(out)
    assert 'ENV AA="top" BB="bbb" CC="xyz"' in body
    assert body[4] == ('RUN groupadd -o -g "900" -r "toprun" && useradd -l -o -m -d "/home/toprun" -r '
                       '-g "toprun" -u "1000" "toprun"')
    assert not any("npm" in line or line.startswith("ENTRYPOINT") for line in body)
    assert body[-2] == 'ENV NODE_ENV="production"'


def test_uid_0_at_the_top_level_drops_every_chown() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        lives: {uid: 0, gid: 0}
        variants:
          app: {lives: {uid: 0}, copies: [local]}
    """, "app")
    assert users(lives=("somebody", 0, 0)).splitlines()[0] in lines(out)
    assert 'COPY [".", "."]' in lines(out)


def test_includes_merge_order_and_appended_packages() -> None:
    out = dockerfile("""
        version: v4
        base: debian:bookworm
        apt: {packages: [top]}
        variants:
          ddd: {apt: {packages: [ddd]}, python: {version: python3}}
          bbb: {includes: [ddd], apt: {packages: [bbb]}, node: {env: production}}
          ccc: {apt: {packages: [ccc]}, node: {env: staging}}
          xyz: {includes: [bbb, ccc], apt: {packages: [xyz, top]}}
    """, "xyz")
    assert 'RUN apt-get update && apt-get install -y "top" "ddd" "bbb" "ccc" "xyz" "top" && ' \
           "rm -rf /var/lib/apt/lists/*" in lines(out)
    assert 'ENV NODE_ENV="staging"' in lines(out)
