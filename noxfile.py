"""Sessions: tests (default suite), slow, lint, leaderboard, perf.

Sessions run in the current environment (install with `pip install -e ".[test]"` first), so the
several-GB torch install is not repeated per session.
"""

import sys

import nox

PY = sys.executable  # the environment nox itself was installed in

nox.options.sessions = ["tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The default test suite (the README's test command)."""
    session.run(PY, "-m", "pytest", *session.posargs)


@nox.session(python=False)
def slow(session: nox.Session) -> None:
    """Tests marked slow: longer end-to-end runs."""
    session.run(PY, "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", "bench", "tests", "benchmarks", "noxfile.py")


@nox.session(python=False)
def perf(session: nox.Session) -> None:
    """Speed measured side by side in one run (ratios, not timed tests); posargs go to perf_ldm.py."""
    session.run(PY, "benchmarks/perf_scoring.py")
    session.run(PY, "benchmarks/perf_startup.py")
    session.run(PY, "benchmarks/perf_ldm.py", *session.posargs)
    session.run(PY, "benchmarks/perf_tune.py")
    session.run(PY, "benchmarks/perf_view.py")
