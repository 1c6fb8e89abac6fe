"""Seeded generators of realistic agent-memory records.

:func:`generate_episodes` produces episodes whose steps read like real coding-agent transcripts:
tool calls with file paths, shell commands, test output, tracebacks and diffs, outcomes that follow
from the steps, rewards, reflections and metadata. The same seed always yields the same records,
so benchmarks, tests and notebooks are reproducible.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator

from tiered.model import (
    Abstained,
    Complexity,
    ContextPattern,
    DecisionPoint,
    Embedding,
    Episode,
    ErrorRecovery,
    Evidence,
    ExecutionStep,
    Failure,
    Heuristic,
    Outcome,
    PartialSuccess,
    Pattern,
    PatternBody,
    Reflection,
    StepResult,
    Success,
    TaskContext,
    ToolSequence,
)

__all__ = ["generate_embeddings", "generate_episodes", "generate_heuristics", "generate_patterns"]

TASK_TYPES = ("code_generation", "debugging", "refactoring", "testing", "analysis", "documentation")
DOMAINS = ("web-api", "data-pipeline", "cli-tool", "ml-training", "infra", "frontend")
LANGUAGES = {
    "python": ("fastapi", "django", "pytest", "polars", None),
    "rust": ("tokio", "axum", "serde", None),
    "typescript": ("react", "express", "vitest", None),
    "go": ("gin", "cobra", None),
}
_MODULES = ("models", "handlers", "storage", "config", "utils", "cache", "auth", "routes", "jobs")
_FUNCS = (
    "load_user",
    "parse_config",
    "handle_request",
    "flush_batch",
    "retry_with_backoff",
    "validate_input",
    "serialize",
    "open_pool",
    "compute_reward",
    "merge_results",
)
_ERRORS = (
    ("TypeError", "unsupported operand type(s) for +: 'int' and 'NoneType'"),
    ("KeyError", "'user_id'"),
    ("AssertionError", "expected 200, got 500"),
    ("TimeoutError", "operation timed out after 30s"),
    ("ValueError", "invalid literal for int() with base 10: ''"),
    ("AttributeError", "'NoneType' object has no attribute 'get'"),
)
_SYMPTOMS = ("fails on empty input", "too slow under load", "missing tests", "needs retries")
_EXT = {"python": "py", "rust": "rs", "typescript": "ts", "go": "go"}


def _path(rng: random.Random, lang: str) -> str:
    top = rng.choice(("src", "app", "lib", "pkg"))
    return f"{top}/{rng.choice(_MODULES)}/{rng.choice(_MODULES)}.{_EXT[lang]}"


def _traceback(rng: random.Random, lang: str) -> str:
    err, msg = rng.choice(_ERRORS)
    frames = "\n".join(
        f'  File "{_path(rng, lang)}", line {rng.randint(10, 400)}, in {rng.choice(_FUNCS)}\n'
        f"    result = {rng.choice(_FUNCS)}(payload, timeout={rng.choice((5, 10, 30))})"
        for _ in range(rng.randint(2, 5))
    )
    return f"Traceback (most recent call last):\n{frames}\n{err}: {msg}"


def _step(rng: random.Random, lang: str, i: int, failing: bool) -> ExecutionStep:
    tool = rng.choices(
        ("read_file", "grep", "edit_file", "run_tests", "bash", "search_docs", "write_file"),
        weights=(5, 3, 4, 3, 2, 1, 1),
    )[0]
    path = _path(rng, lang)
    fn = rng.choice(_FUNCS)
    if tool == "read_file":
        params: dict[str, object] = {"path": path, "start_line": rng.randint(1, 200), "limit": 80}
        lines = [
            f"{n:4d}  def {rng.choice(_FUNCS)}(self, {rng.choice(('ctx', 'req', 'batch'))}):"
            for n in range(rng.randint(3, 12))
        ]
        result = StepResult("success", "\n".join(lines))
    elif tool == "grep":
        params = {"pattern": f"def {fn}", "path": path.rsplit("/", 1)[0], "case_sensitive": True}
        hits = [
            f"{_path(rng, lang)}:{rng.randint(1, 500)}: def {fn}(...)"
            for _ in range(rng.randint(0, 6))
        ]
        result = StepResult("success", "\n".join(hits) or "no matches")
    elif tool == "edit_file":
        params = {"path": path, "old": f"return {fn}(x)", "new": f"return {fn}(x, retries=3)"}
        result = StepResult(
            "success",
            f"--- a/{path}\n+++ b/{path}\n@@ -{i},3 +{i},3 @@\n"
            f"-    return {fn}(x)\n+    return {fn}(x, retries=3)",
        )
    elif tool == "run_tests":
        params = {
            "command": "pytest -x -q" if lang == "python" else f"{lang} test ./...",
            "timeout": 300,
        }
        passed, failed = rng.randint(20, 400), (rng.randint(1, 5) if failing else 0)
        out = f"{passed} passed, {failed} failed in {rng.uniform(0.5, 40):.2f}s"
        result = (
            StepResult("error", _traceback(rng, lang) + "\n" + out)
            if failing
            else StepResult("success", out)
        )
    elif tool == "bash":
        params = {
            "command": rng.choice(
                ("git status --short", "ls -la src", "make lint", "git diff --stat")
            )
        }
        result = StepResult(
            "success", "\n".join(f" M {_path(rng, lang)}" for _ in range(rng.randint(1, 5)))
        )
    elif tool == "search_docs":
        params = {"query": f"{lang} {fn.replace('_', ' ')} best practice", "max_results": 5}
        result = StepResult("success", f"Found {rng.randint(1, 9)} results for {fn}")
    else:
        params = {"path": path, "content_bytes": rng.randint(200, 6000)}
        result = (
            StepResult("timeout", "write timed out")
            if failing and rng.random() < 0.3
            else StepResult("success", "ok")
        )
    return ExecutionStep(
        tool=tool,
        action=f"{tool.replace('_', ' ')} for {fn}",
        parameters=params,  # type: ignore[arg-type]
        result=result,
        latency_ms=round(rng.lognormvariate(4.0, 1.0), 3),
        tokens=rng.randint(50, 4000),
    )


def _outcome(
    rng: random.Random, failing: bool, steps: tuple[ExecutionStep, ...]
) -> tuple[Outcome, float]:
    paths = sorted({str(s.parameters.get("path")) for s in steps if "path" in s.parameters})[:5]
    r = rng.random()
    if not failing:
        return Success("all tests pass", tuple(paths)), round(rng.uniform(0.7, 1.0), 4)
    if r < 0.4:
        return PartialSuccess("some checks still fail", tuple(paths[:2]), tuple(paths[2:])), round(
            rng.uniform(0.3, 0.7), 4
        )
    if r < 0.9:
        err, msg = rng.choice(_ERRORS)
        return Failure(f"{err} persisted after {len(steps)} steps", msg), round(
            rng.uniform(0.0, 0.3), 4
        )
    return Abstained("task needs credentials the agent does not have"), 0.0


def generate_episodes(
    n: int,
    *,
    seed: int = 0,
    start_time: int = 1_767_225_600_000_000,  # 2026-01-01T00:00:00Z
    mean_gap_us: int = 60_000_000,
    steps: tuple[int, int] = (2, 14),
    id_prefix: str = "ep",
) -> list[Episode]:
    """``n`` realistic episodes, start times rising by exponential gaps; same seed, same list."""
    return list(
        iter_episodes(
            n,
            seed=seed,
            start_time=start_time,
            mean_gap_us=mean_gap_us,
            steps=steps,
            id_prefix=id_prefix,
        )
    )


def iter_episodes(
    n: int,
    *,
    seed: int = 0,
    start_time: int = 1_767_225_600_000_000,
    mean_gap_us: int = 60_000_000,
    steps: tuple[int, int] = (2, 14),
    id_prefix: str = "ep",
) -> Iterator[Episode]:
    rng = random.Random(seed)
    t = start_time
    for i in range(n):
        t += int(rng.expovariate(1.0 / mean_gap_us)) + 1
        lang = rng.choice(tuple(LANGUAGES))
        failing = rng.random() < 0.35
        nsteps = rng.randint(*steps)
        st = tuple(_step(rng, lang, j, failing and j == nsteps - 1) for j in range(nsteps))
        outcome, reward = _outcome(rng, failing, st)
        task = rng.choice(TASK_TYPES)
        domain = rng.choice(DOMAINS)
        duration = int(sum(s.latency_ms for s in st) * 1000) + rng.randint(1, 5_000_000)
        yield Episode(
            id=f"{id_prefix}-{seed}-{i:07d}",
            task_type=task,
            description=f"{task.replace('_', ' ')}: {rng.choice(_FUNCS)} in {_path(rng, lang)} "
            f"({rng.choice(_SYMPTOMS)})",
            context=TaskContext(
                domain=domain,
                language=lang,
                framework=rng.choice(LANGUAGES[lang]),
                complexity=rng.choice(tuple(Complexity)),
                tags=tuple(
                    rng.sample(
                        ("perf", "bug", "api", "db", "flaky", "security", "ux"), rng.randint(0, 3)
                    )
                ),
            ),
            start_time=t,
            end_time=t + duration,
            steps=st,
            outcome=outcome,
            reward=reward,
            reflection=Reflection(
                successes=(f"located {rng.choice(_FUNCS)} quickly",) if not failing else (),
                improvements=(f"run {rng.choice(('unit', 'integration'))} tests earlier",)
                if rng.random() < 0.6
                else (),
                insights=(f"{domain} code often calls {rng.choice(_FUNCS)} twice",)
                if rng.random() < 0.3
                else (),
            ),
            pattern_ids=tuple(f"pat-{rng.randint(0, 199)}" for _ in range(rng.randint(0, 3))),
            heuristic_ids=tuple(f"heu-{rng.randint(0, 99)}" for _ in range(rng.randint(0, 2))),
            metadata={
                "agent": rng.choice(("planner", "coder", "reviewer")),
                "repo": f"org/{domain}-{rng.randint(1, 20)}",
                "session": f"s{rng.randint(1, max(1, n // 20))}",
                **({"ticket": f"T-{rng.randint(1000, 9999)}"} if rng.random() < 0.5 else {}),
            },
            tags=tuple(
                rng.sample(("retry", "hotfix", "nightly", "manual", "ci"), rng.randint(0, 2))
            ),
        )


def generate_patterns(n: int, *, seed: int = 0) -> list[Pattern]:
    """``n`` patterns of all four kinds."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = i % 4
        body: PatternBody
        if k == 0:
            body = ToolSequence(
                tuple(rng.sample(("grep", "read_file", "edit_file", "run_tests", "bash"), 3)),
                f"when {rng.choice(_FUNCS)} fails",
            )
        elif k == 1:
            body = DecisionPoint(
                f"tests fail in {rng.choice(_MODULES)}", f"read {rng.choice(_MODULES)} first"
            )
        elif k == 2:
            err = rng.choice(_ERRORS)[0]
            body = ErrorRecovery(err, (f"grep for {err}", "add a guard", "rerun tests"))
        else:
            body = ContextPattern(
                (rng.choice(DOMAINS), rng.choice(tuple(LANGUAGES))), "write the test first"
            )
        out.append(
            Pattern(
                f"pat-{seed}-{i}",
                body,
                rng.choice(DOMAINS),
                round(rng.random(), 4),
                round(rng.uniform(-1, 1), 4),
                rng.randint(0, 500),
            )
        )
    return out


def generate_heuristics(n: int, *, seed: int = 0) -> list[Heuristic]:
    rng = random.Random(seed)
    return [
        Heuristic(
            f"heu-{seed}-{i}",
            f"when {rng.choice(_FUNCS)} raises {rng.choice(_ERRORS)[0]}",
            f"check {rng.choice(_MODULES)} before editing",
            round(rng.random(), 4),
            Evidence(
                tuple(f"ep-{seed}-{rng.randint(0, 999):07d}" for _ in range(3)),
                round(rng.random(), 4),
                rng.randint(1, 50),
            ),
        )
        for i in range(n)
    ]


def generate_embeddings(
    n: int, *, dim: int = 64, seed: int = 0, model: str = "minilm-64"
) -> list[Embedding]:
    """``n`` embeddings of ``dim`` dimensions, clustered like real sentence embeddings."""
    rng = random.Random(seed)
    centers = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(8)]
    out = []
    for i in range(n):
        c = centers[i % len(centers)]
        out.append(
            Embedding(
                f"emb-{seed}-{i}",
                f"ep-{seed}-{i:07d}",
                rng.choice(("episode", "pattern")),
                model,
                array("f", [x + rng.gauss(0, 0.3) for x in c]),
            )
        )
    return out
