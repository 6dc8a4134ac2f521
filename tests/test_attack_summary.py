"""Every combination of options the attack audit accepts must summarize, empty groups included.

The audit's rows are computed once per (attack, budget mode, targeted, minimal) on a defended digits model
with a surrogate and all three threats, checks on. Every other accepted combination is a subset of those
rows: a subset of threats keeps the rows of those threats; checks off drops the rows the checks add (the
same rows an unchecked run lacks). Each is summarized, and so are the degenerate variants a run can end
with: no rows, every image skipped, one image, no clean-correct image, only evidence rows. A summary must
come out whole: every flag present as true, false or null with its evidence, JSON-serializable, with the
gate's metrics derivable from it.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from robaudit.audits.attack import AttackAudit
from robaudit.audits.attack.masking import FLAGS
from robaudit.audits.attack.report import metrics as attack_metrics
from robaudit.audits.base import AuditBatch
from robaudit.data import DataSpec, load_dataset
from robaudit.defenses.base import compose
from robaudit.errors import InputError
from robaudit.models import LoadedModel, ModelSpec, load_model

THREATS = ("white", "gray", "black")
SUBSETS = [list(c) for k in (1, 2, 3) for c in combinations(THREATS, k)]
#: the rows the masking checks add (an unchecked run has none of them)
CHECK_ROWS = {
    "gradient",
    "unbounded",
    "gradient-free",
    "autoattack:randomized-outputs",
    "autoattack:probability-outputs",
    "autoattack:dynamic-defense",
}
NORM = {"linf": "linf", "range-linf": "linf", "l2": "l2", "rel-l2": "l2", "l1": "l1"}
EPS = {"linf": [0.02, 0.05], "range-linf": [0.02, 0.05], "l2": [0.5, 1.0], "rel-l2": [0.05, 0.1], "l1": [4.0, 8.0]}


def aa(norm: str) -> str:
    return f"autoattack:version=custom,attacks=apgd-ce+square,n_iter=2,n_queries=5,norm={norm}"


# (attack, budget mode, targeted, minimal): pgd where it applies, AutoAttack in every norm, DDN minimal
PGD_MODES = ("linf", "range-linf", "l2", "rel-l2")
CASES = (
    [("pgd:norm={norm},steps=2", mode, targeted, False) for mode in PGD_MODES for targeted in (False, True)]
    + [("aa", mode, False, False) for mode in EPS]
    + [("ddn:steps=3", "linf", targeted, True) for targeted in (False, True)]
)


class World:
    def __init__(self) -> None:
        model = load_model(ModelSpec("digits_cnn", pretrained=True), "cpu")
        self.model: LoadedModel = compose(model, ["blur:sigma=0.5"])
        self.surrogate = load_model(ModelSpec("digits_cnn", pretrained=True), "cpu")
        data = load_dataset(DataSpec("digits"))
        indices = np.arange(10, 14)
        self.batch = AuditBatch(indices, data.load(indices).images, torch.from_numpy(data.labels[indices]))


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def audit_for(attack: str, mode: str, targeted: bool, minimal: bool) -> AttackAudit:
    spec = aa(NORM[mode]) if attack == "aa" else attack.format(norm=NORM[mode])
    return AttackAudit(
        attack=spec,
        threats=list(THREATS),
        eps=None if minimal else EPS[mode],
        eps_mode=mode,
        targeted=targeted,
        minimal=minimal,
        check_samples=3,
    )


def rows_of(audit: AttackAudit, world: World) -> pd.DataFrame:
    """The batch's rows as a report holds them (the runner's shared columns, the report schema's types)."""
    audit.attach_surrogate(world.surrogate)
    audit.prepare(world.model)
    columns = audit.run_batch(world.model, world.batch)
    sample = columns.pop("sample")
    n = len(sample)
    columns.update(
        chunk=np.zeros(n, dtype=np.int32),
        index=world.batch.indices[sample],
        label=world.batch.labels.numpy()[sample],
        skipped=np.zeros(n, dtype=bool),
        skip_reason=np.full(n, None, dtype=object),
    )
    return pa.table(columns, schema=audit.schema()).to_pandas()


def variants(rows: pd.DataFrame, audit: AttackAudit) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    params = audit.params
    out = []
    for threats in SUBSETS:
        kept = rows[rows["threat"].isin(threats) | rows["check_name"].isin(CHECK_ROWS)]
        for checks in (True, False):
            these = kept if checks else kept[~kept["check_name"].isin(CHECK_ROWS)]
            out.append(
                (f"{'+'.join(threats)}, checks {checks}", these, {**params, "threats": threats, "checks": checks})
            )
    empty = rows.iloc[:0]
    skipped = pd.DataFrame({c: [None, None] for c in rows.columns}).astype(rows.dtypes.to_dict(), errors="ignore")
    skipped["index"], skipped["label"], skipped["skipped"] = [10, 11], [0, 1], True
    wrong = rows.assign(label=(rows["clean_prediction"].fillna(0).astype(int) + 1) % 10)
    out += [
        ("no rows", empty, params),
        ("every image skipped", skipped, params),
        ("one image", rows[rows["index"] == rows["index"].iloc[0]], params),
        ("no clean-correct image", wrong, params),
        ("evidence rows only", rows[rows["check_name"].notna()], params),
        ("main rows only", rows[rows["check_name"].isna()], params),
    ]
    return out


def check_summary(summary: dict[str, Any], metadata: dict[str, Any], name: str) -> None:
    assert list(summary["flags"]) == list(FLAGS), name
    for flag, entry in summary["flags"].items():
        assert entry["flag"] in (True, False, None), (name, flag)
        assert isinstance(entry["evidence"], str) and entry["evidence"], (name, flag)
    assert isinstance(summary["gradient_masking"], bool)
    json.dumps(summary)
    attack_metrics(summary, metadata)


@pytest.mark.parametrize(("attack", "mode", "targeted", "minimal"), CASES)
def test_every_accepted_combination_summarizes(
    attack: str, mode: str, targeted: bool, minimal: bool, world: World
) -> None:
    audit = audit_for(attack, mode, targeted, minimal)
    rows = rows_of(audit, world)
    for name, subset, params in variants(rows, audit):
        metadata = {"identity": {"params": params, "defenses": [{"repr": "blur"}]}}
        summary = AttackAudit.summarize(subset, metadata)
        check_summary(summary, metadata, f"{attack} {mode} targeted={targeted} minimal={minimal}: {name}")
        main = subset[subset["check_name"].isna() & ~subset["skipped"].astype(bool)]
        if minimal:
            assert len(summary["minimal"]) == main.groupby(["threat", "judged_by"]).ngroups
        else:
            assert sum(c["samples"] for c in summary["curves"]) == len(main)
        if params["threats"] == ["gray"] and params["checks"]:
            # the defect this test guards: checks with no white-box rows to compare with divided by zero
            assert summary["flags"]["gradient_free_beats_gradient"]["flag"] is None or minimal


@pytest.mark.parametrize("mode", ["linf", "l2", "l1"])
def test_autoattack_cannot_run_targeted_or_minimal(mode: str) -> None:
    with pytest.raises(InputError, match="cannot run targeted"):
        AttackAudit(attack=aa(NORM[mode]), eps=EPS[mode], eps_mode=mode, targeted=True)
    with pytest.raises(InputError, match="needs minimization attacks"):
        AttackAudit(attack=aa(NORM[mode]), eps_mode=mode, minimal=True)


def test_gray_box_alone_on_a_defended_model_summarizes(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """End to end, the run that used to end in 'internal error: ZeroDivisionError' after computing everything."""
    result = cli(
        "attack", "--model", "digits_cnn", "--pretrained", "--data", "digits", "--limit", 6,
        "--defense", "blur:sigma=0.5", "--threat", "gray", "--eps", "0.05", "--attack", "pgd:steps=2",
        "--check-samples", 3, "--out", tmp_path, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    flags = result.result["flags"]
    assert flags["gradient_free_beats_gradient"]["flag"] is None
    assert "white threat" in flags["gradient_free_beats_gradient"]["evidence"]
    assert flags["white_weaker_than_transfer"]["flag"] is None
